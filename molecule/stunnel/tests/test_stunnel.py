"""Behaviour of colo.webfarm.stunnel (and tls_cert) seen from an outside client.

Every check is a real TLS or HTTP exchange from stunnel-client to the edge
(172.29.19.10). The refusals are paired with a control: the same client
command against a local `openssl s_server` that allows the old protocol or
cipher, so a refusal cannot come from the client's own settings.
"""

import datetime
import json
import os
import subprocess
import sys

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = AnsibleRunner(INVENTORY)
EDGE = RUNNER.get_variables("stunnel-edge1")["webfarm_address"]
CLIENT = RUNNER.get_variables("stunnel-client")["webfarm_address"]
TLS_FILES = ["webfarm.crt", "webfarm.key", "webfarm.pem", "ca.crt"]
# allow the old protocols and ciphers on the client side: OpenSSL 3's default
# security level would refuse them before the server has a say
LEGACY = "-cipher 'DEFAULT:@SECLEVEL=0'"

testinfra_hosts = ["ansible://stunnel-client"]


def _host(name):
    return testinfra.get_host("ansible://%s?ansible_inventory=%s" % (name, INVENTORY))


def s_client(host, target, opts):
    return host.run("timeout 10 openssl s_client -connect %s -servername www.webfarm.test %s </dev/null 2>&1"
                    % (target, opts))


@pytest.fixture(scope="module")
def control_server(host):
    """A local s_server on the client that accepts TLS 1.0..1.3 and CBC ciphers."""
    host.run("systemctl stop tls-control.service 2>/dev/null; systemctl reset-failed tls-control.service 2>/dev/null")
    host.check_output(
        "cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=control -keyout ctl.key -out ctl.crt "
        "-days 2 2>/dev/null && openssl ecparam -name prime256v1 -genkey -noout -out ctlec.key && "
        "openssl req -x509 -new -key ctlec.key -subj /CN=control -out ctlec.crt -days 2")
    host.check_output(
        "systemd-run --unit tls-control --collect -p RuntimeMaxSec=300 openssl s_server -accept 127.0.0.1:4433 "
        "-cert /tmp/ctl.crt -key /tmp/ctl.key -dcert /tmp/ctlec.crt -dkey /tmp/ctlec.key "
        "-cipher 'ALL:@SECLEVEL=0' -naccept 200 -quiet")
    assert host.run("for i in $(seq 50); do ss -Hltn | grep -q ':4433 ' && exit 0; sleep 0.2; done; exit 1").rc == 0
    yield "127.0.0.1:4433"
    host.run("systemctl stop tls-control.service")


def test_check_mode_on_the_converged_edge_completes_and_changes_nothing():
    """A drift check (--check --diff) of the converged scenario: no failure, changed=0."""
    out, recap = drift_check(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml"))
    assert all(r["changed"] == 0 for r in recap.values()), recap


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_modern_tls_handshakes(host, version):
    out = s_client(host, EDGE + ":443", version)
    assert out.rc == 0, out.stdout
    assert "Protocol  : TLSv1.%s" % version[-1] in out.stdout or "TLSv1.%s" % version[-1] in out.stdout
    assert "Cipher is (NONE)" not in out.stdout


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_refused(host, control_server, version):
    control = s_client(host, control_server, "%s %s" % (version, LEGACY))
    assert control.rc == 0 and "Cipher is (NONE)" not in control.stdout, control.stdout  # the client can
    out = s_client(host, EDGE + ":443", "%s %s" % (version, LEGACY))
    assert out.rc != 0, out.stdout
    assert "alert protocol version" in out.stdout, out.stdout     # the edge said no


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA"])
def test_weak_cipher_refused(host, control_server, cipher):
    opts = "-tls1_2 -cipher '%s:@SECLEVEL=0'" % cipher
    if "RSA" not in cipher:
        control = s_client(host, control_server, opts)
        assert control.rc == 0 and "Cipher is %s" % cipher in control.stdout, control.stdout
    out = s_client(host, EDGE + ":443", opts)
    assert out.rc != 0, out.stdout
    assert "alert handshake failure" in out.stdout, out.stdout    # the edge said no


def test_no_session_tickets(host, control_server):
    control = s_client(host, control_server, "-tls1_2")
    assert "session ticket lifetime hint" in control.stdout.lower(), control.stdout  # s_client shows tickets
    out = s_client(host, EDGE + ":443", "-tls1_2")
    assert out.rc == 0
    assert "session ticket lifetime hint" not in out.stdout.lower(), out.stdout


def test_certificate_verifies_against_the_farm_ca(host):
    ca = _host("stunnel-edge1").file("/etc/ssl/webfarm/ca.crt").content_string
    host.check_output("cat > /tmp/farm-ca.crt <<'EOF'\n%sEOF" % ca)
    out = host.run("curl -sS --max-time 10 --cacert /tmp/farm-ca.crt --resolve www.webfarm.test:443:%s "
                   "https://www.webfarm.test/verify" % EDGE)
    assert out.rc == 0, out.stderr
    assert json.loads(out.stdout)["path"] == "/verify"


def test_backend_sees_the_client_address(host):
    seen = json.loads(host.check_output("curl -sk --max-time 10 https://%s/who" % EDGE))
    assert seen["x_forwarded_for"] == CLIENT, seen     # PROXY protocol carried it through
    assert seen["remote_addr"] != CLIENT               # the backend talks to a balancer
    assert seen["x_forwarded_proto"] == "https"


def test_port_80_redirects_to_https(host):
    out = host.check_output("curl -s --max-time 10 -o /dev/null -w '%%{http_code} %%{redirect_url}' "
                            "'http://%s/some/page?x=1'" % EDGE)
    assert out == "301 https://%s/some/page?x=1" % EDGE
    out = host.check_output("curl -s --max-time 10 -o /dev/null -w '%%{http_code} %%{redirect_url}' "
                            "-H 'Host: www.webfarm.test:80' http://%s/" % EDGE)
    assert out == "301 https://www.webfarm.test/"


def _balancers_seen(host, n):
    seen = []
    for _ in range(n):
        r = host.run("curl -sk --max-time 10 https://%s/lb" % EDGE)
        seen.append(json.loads(r.stdout)["balancer"] if r.rc == 0 else "error")
    return seen


def test_failover_between_balancers(host):
    lb1 = _host("stunnel-lb1")
    assert set(_balancers_seen(host, 6)) == {"stunnel-lb1", "stunnel-lb2"}   # round robin uses both
    lb1.check_output("systemctl stop haproxy")
    try:
        assert _balancers_seen(host, 6) == ["stunnel-lb2"] * 6          # no error while lb1 is down
    finally:
        lb1.check_output("systemctl start haproxy")
    assert "stunnel-lb1" in _balancers_seen(host, 6)                  # and it is used again


def test_reload_keeps_open_connections(host):
    edge = _host("stunnel-edge1")
    script = (
        "import http.client, ssl, subprocess, sys, time\n"
        "c = http.client.HTTPSConnection('%s', 443, timeout=10, context=ssl._create_unverified_context())\n"
        "c.request('GET', '/one'); r = c.getresponse(); r.read(); print(r.status)\n"
        "sys.stdout.flush(); open('/tmp/reload-go', 'w').close()\n"
        "for _ in range(100):\n"
        "    time.sleep(0.1)\n"
        "    try: open('/tmp/reload-done')\n"
        "    except OSError: continue\n"
        "    break\n"
        "c.request('GET', '/two'); r = c.getresponse(); r.read(); print(r.status)\n" % EDGE)
    host.run("rm -f /tmp/reload-go /tmp/reload-done")
    host.check_output("cat > /tmp/keepalive.py <<'EOF'\n%sEOF" % script)
    host.check_output("systemd-run --unit keepalive-probe --collect -p RuntimeMaxSec=60 "
                      "sh -c 'python3 /tmp/keepalive.py > /tmp/keepalive.out 2>&1'")
    assert host.run("for i in $(seq 100); do [ -e /tmp/reload-go ] && exit 0; sleep 0.1; done; exit 1").rc == 0
    pid_before = edge.check_output("systemctl show -p MainPID --value stunnel@webfarm")
    edge.check_output("systemctl reload stunnel@webfarm")
    host.check_output("touch /tmp/reload-done")
    assert host.run("for i in $(seq 100); do [ $(wc -l < /tmp/keepalive.out) -ge 2 ] && exit 0; sleep 0.1; done; "
                    "exit 1").rc == 0
    assert host.file("/tmp/keepalive.out").content_string.split() == ["200", "200"]
    assert edge.check_output("systemctl show -p MainPID --value stunnel@webfarm") == pid_before


SLOW_CLIENTS = r"""
import http.client, json, socket, ssl, sys, time
edge, n, bound = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t0 = time.time()
# n clients that connect to the TLS port and never send their handshake,
# n that trickle a request to port 80 a byte per second
idle = [socket.create_connection((edge, 443), timeout=5) for _ in range(n)]
trickle = [socket.create_connection((edge, 80), timeout=5) for _ in range(n)]
closed = {"tls": {}, "http": {}}
normal = {"ok": 0, "failed": 0}
ctx = ssl._create_unverified_context()
last_byte = 0
while time.time() - t0 < bound and (len(closed["tls"]) < n or len(closed["http"]) < n):
    send = time.time() - last_byte >= 1
    last_byte = time.time() if send else last_byte
    for kind, socks in (("tls", idle), ("http", trickle)):
        for i, s in enumerate(socks):
            if i in closed[kind]:
                continue
            try:
                if kind == "http" and send:
                    s.send(b"G")
                s.settimeout(0.01)
                if s.recv(4096) == b"":
                    closed[kind][i] = time.time() - t0
            except socket.timeout:
                pass
            except OSError:
                closed[kind][i] = time.time() - t0
    # normal clients meanwhile: one HTTPS request and one port-80 request
    for port in (443, 80):
        try:
            c = (http.client.HTTPSConnection(edge, 443, timeout=5, context=ctx) if port == 443
                 else http.client.HTTPConnection(edge, 80, timeout=5))
            c.request("GET", "/normal")
            r = c.getresponse(); r.read(); c.close()
            normal["ok" if r.status in (200, 301) else "failed"] += 1
        except Exception:
            normal["failed"] += 1
    time.sleep(0.2)
print(json.dumps({"closed": closed, "normal": normal}))
"""


def test_slow_clients_are_cut_at_their_timeouts_and_normal_clients_are_served(host):
    """A slowloris-style load (bounded: 20 connections per kind, 30 s): TLS
    clients that never send a handshake are cut by stunnel after
    stunnel_timeout_busy, port-80 clients trickling a byte a second are cut by
    the redirector after stunnel_redirect_timeout, and HTTPS and port-80
    requests made meanwhile are all answered."""
    edge_vars = RUNNER.get_variables("stunnel-edge1")
    busy, redirect = int(edge_vars["stunnel_timeout_busy"]), int(edge_vars["stunnel_redirect_timeout"])
    host.check_output("cat > /tmp/slow_clients.py <<'EOF'\n%sEOF" % SLOW_CLIENTS)
    got = json.loads(host.check_output("timeout 60 python3 /tmp/slow_clients.py %s 20 30" % EDGE))
    tls, http = got["closed"]["tls"].values(), got["closed"]["http"].values()
    assert len(tls) == 20 and len(http) == 20, got
    # cut at the timeout: not before it (minus the connect spread), within 3 s after it
    assert busy - 1.5 <= min(tls) and max(tls) <= busy + 3, got
    assert redirect - 1.5 <= min(http) and max(http) <= redirect + 3, got
    assert got["normal"]["failed"] == 0 and got["normal"]["ok"] >= 10, got
    conf = _host("stunnel-edge1").file("/etc/stunnel/webfarm.conf").content_string
    assert "TIMEOUTbusy = %d" % busy in conf and "TIMEOUTidle = 300" in conf and "TIMEOUTclose = 5" in conf


@pytest.mark.parametrize("path", ["/etc/stunnel/webfarm.conf", "/usr/local/sbin/webfarm-stunnel-check",
                                  "/usr/local/libexec/webfarm-https-redirect"])
def test_managed_files(path):
    assert "Ansible managed" in _host("stunnel-edge1").file(path).content_string


def test_key_files_private_and_owned_by_stunnel():
    edge = _host("stunnel-edge1")
    for name in ("webfarm.key", "webfarm.pem"):
        f = edge.file("/etc/ssl/webfarm/" + name)
        assert (f.mode, f.user, f.group) == (0o600, "stunnel4", "stunnel4"), name
    assert edge.file("/etc/ssl/webfarm/webfarm.crt").mode == 0o644


def test_a_broken_config_is_not_applied():
    edge = _host("stunnel-edge1")
    bad = edge.run("sed 's/^ciphers = .*/ciphers = NO-SUCH-CIPHER/' /etc/stunnel/webfarm.conf > /tmp/bad.conf && "
                   "/usr/local/sbin/webfarm-stunnel-check /tmp/bad.conf")
    assert bad.rc != 0
    assert edge.run("/usr/local/sbin/webfarm-stunnel-check /etc/stunnel/webfarm.conf").rc == 0


# ------------------------------------------------------------- bad input --

def _pem_pair(days_from, days_to, key=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.webfarm.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_from))
            .not_valid_after(now + datetime.timedelta(days=days_to))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def _bad_material(kind):
    if kind == "expired":
        return _pem_pair(-30, -1)
    cert, _ = _pem_pair(-1, 30)
    _, other_key = _pem_pair(-1, 30)
    return cert, other_key


@pytest.mark.parametrize("kind,needle", [
    ("expired", "variable 'tls_cert_certificate'"),
    ("mismatch", "variable 'tls_cert_private_key' does not match"),
])
def test_bad_tls_material_fails_before_anything_changes(tmp_path, kind, needle):
    edge = _host("stunnel-edge1")
    paths = ["/etc/ssl/webfarm/" + f for f in TLS_FILES] + ["/etc/stunnel/webfarm.conf"]
    before = {p: edge.file(p).sha256sum for p in paths}
    pid_before = edge.check_output("systemctl show -p MainPID --value stunnel@webfarm")
    cert, key = _bad_material(kind)
    extra = tmp_path / "bad.json"
    extra.write_text(json.dumps({"tls_cert_source": "provided", "tls_cert_certificate": cert,
                                 "tls_cert_private_key": key}))
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, "-e", "@%s" % extra,
         os.path.join(os.path.dirname(__file__), "..", "bad_input.yml")],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert needle in out, out[-3000:]
    assert "host 'stunnel-edge1'" in out
    assert "BEGIN PRIVATE KEY" not in out            # the key never reaches the log
    assert before == {p: edge.file(p).sha256sum for p in paths}
    assert edge.check_output("systemctl show -p MainPID --value stunnel@webfarm") == pid_before
