"""ACME certificates on every TLS endpoint (colo.webfarm.tls_cert with
tls_cert_source: acme, stunnel, haproxy), against pebble in edge-acme.

Clients run on the controller and talk only to this scenario's containers;
every loop is bounded in count and time. A handshake verifies the chain
against pebble's root (its management API, /roots/0) and the name, so a
certificate that is not pebble's, or not for the name, fails it.
"""

import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

from cryptography import x509

EDGE = "172.29.27.10"       # stunnel on edge-edge1
LB = "172.29.27.20"         # HAProxy native TLS on edge-lb1
ACME = "172.29.27.5"        # pebble
NAME = "www.edge.test"
SNI_NAME = "api.edge.test"          # tls_cert_sni, stunnel_sni_names, haproxy_tls_sni_pems
ENDPOINTS = {"stunnel": EDGE, "haproxy": LB}
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PKI = os.path.join(EPHEMERAL, "pki", NAME)
CHALLENGE_DIR = "/var/lib/webfarm/acme-challenge"

# the load during the forced renewal: one client per endpoint, a new TLS
# connection per request, at most LOAD_MAX requests each and LOAD_SECONDS
LOAD_INTERVAL = 0.75
LOAD_MAX = 300
LOAD_SECONDS = 300

testinfra_hosts = ["ansible://edge-edge1"]


def pebble_root():
    """PEM of pebble's current root (its management API, over its own HTTPS)."""
    ctx = ssl.create_default_context(cafile=os.path.join(EPHEMERAL, "pebble-https-ca.pem"))
    with urllib.request.urlopen("https://%s:15000/roots/0" % ACME, context=ctx, timeout=10) as r:
        return r.read().decode()


def request(ip, root, name=NAME, check_name=True):
    """One HTTPS GET / on a new connection with SNI ``name``, verified against
    ``root`` (and for ``name`` unless check_name is false); returns (serial,
    status) of the certificate served."""
    ctx = ssl.create_default_context(cadata=root)
    ctx.check_hostname = check_name
    with socket.create_connection((ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return x509.load_der_x509_certificate(der).serial_number, status


def subject_cn(ip, root, name, check_name=True):
    ctx = ssl.create_default_context(cadata=root)
    ctx.check_hostname = check_name
    with socket.create_connection((ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value, cert.serial_number


def serials(root):
    return {label: request(ip, root)[0] for label, ip in ENDPOINTS.items()}


def playbook(name, *args, timeout=900):
    res = subprocess.run(["ansible-playbook", "-i", INVENTORY, os.path.join(SCENARIO, name)] + list(args),
                         env=dict(os.environ), capture_output=True, text=True, timeout=timeout)
    res.output = res.stdout + res.stderr
    return res


def recap(output):
    """{host: changed count} from a PLAY RECAP."""
    return {h: int(c) for h, c in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


class Load(threading.Thread):
    def __init__(self, ip, root):
        super().__init__(daemon=True)
        self.ip, self.root = ip, root
        self.stop = threading.Event()
        self.seen, self.failures, self.count = [], [], 0

    def run(self):
        end = time.monotonic() + LOAD_SECONDS
        while not self.stop.is_set() and self.count < LOAD_MAX and time.monotonic() < end:
            self.count += 1
            try:
                serial, status = request(self.ip, self.root)
                if status != 200:
                    self.failures.append("status %d" % status)
                elif not self.seen or self.seen[-1] != serial:
                    self.seen.append(serial)
            except (OSError, ssl.SSLError) as e:
                self.failures.append(repr(e))
            self.stop.wait(LOAD_INTERVAL)


def test_first_issuance_is_pebbles_and_the_same_everywhere(host):
    root = pebble_root()
    got = serials(root)                       # raises unless the chain verifies to pebble's root for NAME
    assert got["stunnel"] == got["haproxy"], got
    with open(os.path.join(PKI, "acme.crt"), "rb") as f:
        issued = x509.load_pem_x509_certificate(f.read())
    assert issued.serial_number == got["stunnel"]
    assert "Pebble" in issued.issuer.rfc4514_string()
    # the key and chain on the hosts are the controller's, byte for byte
    lb = host.get_host("ansible://edge-lb1", ansible_inventory=host.backend.ansible_inventory)
    with open(os.path.join(PKI, "acme-fullchain.crt")) as f:
        fullchain = f.read().strip() + "\n"
    for h in (host, lb):
        assert h.file("/etc/ssl/webfarm/webfarm.crt").content_string == fullchain


def test_haproxy_records_the_pem_it_loaded(host):
    lb = host.get_host("ansible://edge-lb1", ansible_inventory=host.backend.ansible_inventory)
    marker = lb.file("/etc/haproxy/webfarm-tls.sha256").content_string
    assert "%s  /etc/ssl/webfarm/webfarm.pem" % lb.file("/etc/ssl/webfarm/webfarm.pem").sha256sum in marker


def test_redirector_serves_challenges_and_redirects_the_rest(host):
    token = "molecule-" + hashlib.sha1(str(time.time()).encode()).hexdigest()
    host.run_expect([0], "install -d -m 0755 %s && printf '%%s' %s.key > %s/%s" % (CHALLENGE_DIR, token, CHALLENGE_DIR, token))
    try:
        with urllib.request.urlopen("http://%s/.well-known/acme-challenge/%s" % (EDGE, token), timeout=10) as r:
            assert r.status == 200 and r.read() == (token + ".key").encode()
    finally:
        host.run_expect([0], "rm -f %s/%s" % (CHALLENGE_DIR, token))
    for path in ("/.well-known/acme-challenge/%s" % token, "/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd"):
        try:
            urllib.request.urlopen("http://%s%s" % (EDGE, path), timeout=10)
            raise AssertionError("expected 404 for " + path)
        except urllib.error.HTTPError as e:
            assert e.code == 404
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    try:
        opener.open("http://%s/some/page" % EDGE, timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 301 and e.headers["Location"] == "https://%s/some/page" % EDGE
    # no challenge file stays behind after the issuance
    assert host.run("ls -A %s" % CHALLENGE_DIR).stdout.strip() == ""


def test_each_sni_name_gets_its_own_certificate_and_an_unknown_name_the_default(host):
    root = pebble_root()
    got = {}
    for label, ip in ENDPOINTS.items():
        www = subject_cn(ip, root, NAME)                          # verified for the name
        api = subject_cn(ip, root, SNI_NAME)
        unknown = subject_cn(ip, root, "unknown.edge.test", check_name=False)
        assert www[0] == NAME and api[0] == SNI_NAME, (label, www, api)
        assert unknown == www, (label, unknown, www)              # no match: the default certificate
        assert api[1] != www[1]
        got[label] = (www, api)
    assert got["stunnel"] == got["haproxy"], got                  # the same certificates on both


def test_forced_renewal_under_load_reaches_every_endpoint_without_a_failed_request(host):
    root = pebble_root()
    before = serials(root)
    sni_before = subject_cn(EDGE, root, SNI_NAME)
    loads = {label: Load(ip, root) for label, ip in ENDPOINTS.items()}
    for load in loads.values():
        load.start()
    try:
        res = playbook("converge.yml", "-e", json.dumps({"tls_cert_acme_force": True}))
        time.sleep(3)                          # a few requests after the last reload
    finally:
        for load in loads.values():
            load.stop.set()
        for load in loads.values():
            load.join(30)
    assert res.returncode == 0, res.output[-4000:]
    after = serials(root)
    assert after["stunnel"] == after["haproxy"], after
    assert after["stunnel"] != before["stunnel"], (before, after)
    for label, load in loads.items():
        assert load.failures == [], (label, load.count, load.failures[:10])
        # the switch happened while this client was requesting: it saw the
        # old serial, then the new one, and nothing else
        assert load.seen == [before[label], after[label]], (label, load.count, load.seen)
        assert load.count >= 10, (label, load.count)
    # the SNI certificate was renewed too, the same on both endpoints
    assert subject_cn(EDGE, root, SNI_NAME) == subject_cn(LB, root, SNI_NAME) != sni_before
    # renewed once in the run: the balancer play reused the edge play's
    # certificate (same serial as the controller's copy)
    with open(os.path.join(PKI, "acme.crt"), "rb") as f:
        assert x509.load_pem_x509_certificate(f.read()).serial_number == after["haproxy"]


def test_a_second_run_without_force_changes_nothing(host):
    root = pebble_root()
    before = serials(root)
    res = playbook("converge.yml")
    assert res.returncode == 0, res.output[-4000:]
    assert recap(res.output) == {"edge-edge1": 0, "edge-lb1": 0}, res.output[-3000:]
    assert serials(root) == before


def test_check_mode_reports_no_change(host):
    res = playbook("converge.yml", "--check")
    assert res.returncode == 0, res.output[-4000:]
    assert recap(res.output) == {"edge-edge1": 0, "edge-lb1": 0}, res.output[-3000:]


def test_acme_without_a_directory_url_stops_naming_host_variable_and_value(host):
    crt = host.file("/etc/ssl/webfarm/webfarm.pem").sha256sum
    res = playbook("bad_input.yml", "-e", json.dumps({"tls_cert_acme_directory": ""}), timeout=300)
    assert res.returncode != 0
    assert "host 'edge-edge1'" in res.output
    assert "tls_cert_acme_directory is ''" in res.output, res.output[-3000:]
    assert host.file("/etc/ssl/webfarm/webfarm.pem").sha256sum == crt
