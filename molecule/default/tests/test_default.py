"""The full stack, tested from the client container through the TLS edge.

edge1 (stunnel, https) -> lb1 (HAProxy, sticky cookie WEBFARM_LB) -> web1..3
(Apache + PHP-FPM + the reference app, database sessions) -> db1 (primary)
-> db2 (replica); shared files on nfs1's export volume. The client is outside
webfarm_admin_networks. Every loop is bounded in count and time, and every
request goes to this scenario's own containers.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

EDGE = "172.29.30.10"
LB = "172.29.30.20"
WEB = {"default-web1": "172.29.30.31", "default-web2": "172.29.30.32", "default-web3": "172.29.30.33"}
DB1, DB2, NFS1 = "172.29.30.41", "172.29.30.42", "172.29.30.51"
NAME = "www.webfarm.test"          # the lab certificate's name (tls_cert_common_name)
BASE = "https://%s/" % EDGE
LB_COOKIE = "WEBFARM_LB"
APP_COOKIE = "PHPSESSID"
SOCK = "/run/haproxy/admin.sock"
DETECTION_BOUND = 3.0              # HAProxy checks: inter 1s + timeout 0.5s + fastinter 0.25s + 0.5s = 2.25 s
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOKS = os.path.join(SCENARIO, "..", "..", "playbooks")
# the probes' timelines of tests 6 and 7, for `bench/fullstack.py --plots`
RECORD_DIR = os.path.join(SCENARIO, "..", "..", ".cache", "fullstack")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import other, start_probe, stop_probe, wait_probe  # noqa: E402

testinfra_hosts = ["ansible://default-client"]


# ------------------------------------------------------------- helpers --

@pytest.fixture(scope="module")
def ca(host):
    """The lab CA (made by tls_cert on the controller), copied from the edge."""
    pem = other(host, "default-edge1").file("/etc/ssl/webfarm/ca.crt").content_string
    assert "BEGIN CERTIFICATE" in pem
    host.check_output("cat > /tmp/webfarm-ca.crt <<'EOF'\n%s\nEOF" % pem.strip())
    return "/tmp/webfarm-ca.crt"


def curl(host, ca, path, *opts, jar=None):
    """One verified HTTPS request through the edge; returns (status, body, headers)."""
    cmd = ["curl", "-s", "--max-time", "10", "--cacert", ca,
           "--resolve", "%s:443:%s" % (NAME, EDGE), "-D", "/tmp/hdr"] + list(opts)
    if jar:
        cmd += ["-b", jar, "-c", jar]
    cmd += ["-w", "\\n%{http_code}", "https://%s%s" % (NAME, path)]
    out = host.run(" ".join(shlex.quote(c) for c in cmd)).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body, host.file("/tmp/hdr").content_string


def lb_stat(host):
    """{server: (status, current sessions)} of backend 'web' from the runtime API."""
    out = other(host, "default-lb1").check_output("echo 'show stat' | socat -t 5 stdio UNIX-CONNECT:%s" % SOCK)
    rows = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == "web" and f[1] in WEB:
            rows[f[1]] = (f[17], int(f[4] or 0))
    return rows


def wait_status(host, server, status, bound=30):
    deadline = time.time() + bound
    while time.time() < deadline:
        if lb_stat(host).get(server, ("",))[0].startswith(status):
            return
        time.sleep(0.5)
    raise AssertionError("%s not %s within %d s: %s" % (server, status, bound, lb_stat(host)))


def all_up(host):
    for server in WEB:
        wait_status(host, server, "UP")


def new_session(host, ca, jar):
    """A fresh user: returns the node that served the first /session request."""
    host.run("rm -f %s" % jar)
    code, body, _ = curl(host, ca, "/session", jar=jar)
    assert code == 200, body
    return json.loads(body)["node"]


def session_loop(host, ca, jar, n):
    """n /session requests with the user's cookies, in one shell loop (bounded)."""
    out = host.check_output(
        "for i in $(seq %d); do curl -s --max-time 10 --cacert %s --resolve %s:443:%s -b %s -c %s "
        "https://%s/session; echo; done" % (n, ca, NAME, EDGE, jar, jar, NAME))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def jar_cookies(host, jar):
    """{name: value} from a curl cookie jar."""
    cookies = {}
    for line in host.file(jar).content_string.splitlines():
        f = line.split("\t")
        if len(f) == 7:
            cookies[f[5]] = f[6]
    return cookies


def can_connect(src, ip, port, bound=3):
    """True when src opens a TCP connection to ip:port within bound seconds."""
    cmd = "timeout %d bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null" % (bound, ip, port)
    return src.run(cmd).rc == 0


def playbook(path, **extra):
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], path, "-e", json.dumps(extra)]
    res = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    res.output = res.stdout + res.stderr
    return res


# ------------------------------------------------- 1. sticky + sessions --

def test_session_sticks_and_survives_its_node(host, ca):
    jar = "/tmp/jar-sticky"
    first = new_session(host, ca, jar)
    answers = session_loop(host, ca, jar, 50)
    assert len(answers) == 50
    assert {a["node"] for a in answers} == {first}, [a["node"] for a in answers]
    assert [a["count"] for a in answers] == list(range(2, 52))
    assert all(a["store"] == "database" for a in answers)
    node = other(host, first)
    node.check_output("systemctl stop apache2")
    try:
        code, body, _ = curl(host, ca, "/session", jar=jar)
        assert code == 200, body
        after = json.loads(body)
        # another node answered, with the counter from the database session
        assert after["node"] != first and after["count"] == 52, after
    finally:
        node.check_output("systemctl start apache2")
    wait_status(host, first, "UP")


# -------------------------------------------------------- 2. shared files --

def test_file_put_through_one_node_is_read_through_another(host, ca):
    name = "molecule-%d.txt" % int(time.time())
    payload = "shared across nodes %s" % name
    jar = "/tmp/jar-files"
    writer = new_session(host, ca, jar)
    code, body, _ = curl(host, ca, "/files/put?name=%s" % name, "-X", "POST", "--data-binary", payload, jar=jar)
    assert code == 200 and json.loads(body)["node"] == writer, body
    # a fresh user per try lands on the next node (roundrobin): find another one
    for i in range(12):
        jar2 = "/tmp/jar-files-%d" % i
        reader = new_session(host, ca, jar2)
        if reader != writer:
            break
    assert reader != writer
    code, body, hdr = curl(host, ca, "/files/get?name=%s" % name, jar=jar2)
    assert code == 200 and body == payload, (code, body)
    assert re.search(r"(?im)^x-webfarm-node: %s\r?$" % re.escape(reader), hdr), hdr


# ---------------------------------------------------------- 3. replication --

def test_row_written_on_the_primary_is_read_from_the_replica(host, ca):
    value = "row-%d" % int(time.time() * 1000)
    code, body, _ = curl(host, ca, "/db/write", "-X", "POST", "--data-urlencode", "value=%s" % value)
    assert code == 200, body
    written = json.loads(body)
    assert written["primary"] == DB1, written
    db2 = other(host, "default-db2")
    deadline = time.time() + 20
    seen = ""
    while time.time() < deadline:
        seen = db2.run("mariadb -N -B -e 'SELECT payload FROM webfarm.webfarm_rows WHERE id = %d'"
                       % written["id"]).stdout.strip()
        if seen:
            break
        time.sleep(0.5)
    assert seen == value
    assert db2.check_output("mariadb -N -B -e 'SELECT @@read_only'") == "1"
    code, body, _ = curl(host, ca, "/db/read?id=%d" % written["id"])
    read = json.loads(body)
    assert code == 200 and read["answered_by"] == "replica" and read["server"].startswith(DB2), read
    assert read["row"]["payload"] == value


# -------------------------------------------------------- 4. firewall --

ALLOWED = [
    ("default-client", EDGE, 443),
    ("default-edge1", LB, 80),
    ("default-lb1", WEB["default-web1"], 80),
    ("default-web1", DB1, 3306),
    ("default-web2", DB2, 3306),
    ("default-db2", DB1, 3306),
    ("default-web3", NFS1, 2049),
]
# Every port here listens (the allowed flows above prove it): a failure is the firewall.
FORBIDDEN = [
    ("default-client", WEB["default-web1"], 80),
    ("default-client", LB, 80),
    ("default-client", DB1, 3306),
    ("default-client", NFS1, 2049),
    ("default-client", LB, 8404),       # balancer admin: admin networks only
    ("default-edge1", WEB["default-web1"], 80),
    ("default-edge1", DB1, 3306),
    ("default-lb1", DB1, 3306),
    ("default-web1", WEB["default-web2"], 80),
    ("default-lb1", NFS1, 2049),
]


@pytest.mark.parametrize("src,ip,port", ALLOWED)
def test_firewall_allows(host, src, ip, port):
    assert can_connect(other(host, src), ip, port), "%s -> %s:%d should connect" % (src, ip, port)


@pytest.mark.parametrize("src,ip,port", FORBIDDEN)
def test_firewall_blocks(host, src, ip, port):
    assert not can_connect(other(host, src), ip, port), "%s -> %s:%d should be blocked" % (src, ip, port)


def test_balancer_admin_listens_for_admins_only(host):
    # from the balancer itself the admin port answers: the refusal above is the firewall's
    lb = other(host, "default-lb1")
    assert lb.check_output("curl -s -o /dev/null -w '%%{http_code}' --max-time 5 http://%s:8404/stats" % LB) in ("401", "403")


# ------------------------------------------------------------ 5. TLS --

def s_client(host, *opts):
    cmd = "echo | timeout 10 openssl s_client -connect %s:443 -servername %s %s 2>&1" % (EDGE, NAME, " ".join(opts))
    return host.run(cmd).stdout


def negotiated(out):
    m = re.search(r"New, (TLSv[\d.]+), Cipher is (\S+)", out)
    return m.groups() if m and m.group(2) != "(NONE)" else None


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_tls_modern_versions_accepted_and_verified(host, ca, version):
    out = s_client(host, version, "-CAfile", ca, "-verify_return_error")
    got = negotiated(out)
    assert got and got[0] == {"-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}[version], out[-1500:]
    assert "Verify return code: 0 (ok)" in out


def test_tls_1_1_refused(host):
    # SECLEVEL=0: this client is willing to speak TLS 1.1, so a refusal is the edge's
    assert negotiated(s_client(host, "-tls1_2", "-cipher", "'DEFAULT:@SECLEVEL=0'"))
    out = s_client(host, "-tls1_1", "-cipher", "'DEFAULT:@SECLEVEL=0'")
    assert negotiated(out) is None, out[-1500:]


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-NULL-SHA"])
def test_tls_weak_ciphers_refused(host, cipher):
    # control: the same client options with a strong cipher work
    assert negotiated(s_client(host, "-tls1_2", "-cipher", "'ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0'"))
    out = s_client(host, "-tls1_2", "-cipher", "'%s:@SECLEVEL=0'" % cipher)
    assert negotiated(out) is None, out[-1500:]


def test_certificate_verifies_against_the_lab_ca(host, ca):
    code, body, _ = curl(host, ca, "/whoami")
    assert code == 200, body
    who = json.loads(body)
    assert who["scheme"] == "https", who
    # without the CA the certificate is not trusted
    rc = host.run("curl -s -o /dev/null --max-time 10 --resolve %s:443:%s https://%s/health" % (NAME, EDGE, NAME)).rc
    assert rc == 60, rc


def test_http_redirects_to_https(host):
    out = host.check_output("curl -s -o /dev/null --max-time 10 -w '%%{http_code} %%{redirect_url}' "
                            "-H 'Host: %s' http://%s/session?x=1" % (NAME, EDGE))
    code, url = out.split(" ", 1)
    assert code in ("301", "302", "307", "308"), out
    assert url.startswith("https://%s/session" % NAME), out


# -------------------------------------------------- 6. rolling update --

def user_cookies(host, ca, i):
    """A fresh user's cookies (app session + sticky cookie) for lbprobe."""
    jar = "/tmp/jar-roll-%d" % i
    new_session(host, ca, jar)
    c = jar_cookies(host, jar)
    assert APP_COOKIE in c and LB_COOKIE in c, c
    return c


def service_pids(host):
    """{(node, service): main PID} of the web services on every web node."""
    pids = {}
    for n in WEB:
        node = other(host, n)
        for svc in ("apache2", "php%s-fpm" % php_version(node)):
            pids[(n, svc)] = node.check_output("systemctl show -P MainPID %s" % svc)
    return pids


def php_version(h):
    """The PHP release the node runs ("8.2" on Debian 12, "8.4" on Debian 13)."""
    return h.check_output("php -r 'echo PHP_MAJOR_VERSION, \".\", PHP_MINOR_VERSION;'")



def record(name, events, reports):
    """Keep what the probes saw (time, latency, status, node) with the times
    of the events, for the latency-over-time plots of bench/fullstack.py."""
    os.makedirs(RECORD_DIR, exist_ok=True)
    with open(os.path.join(RECORD_DIR, name + ".json"), "w") as f:
        json.dump({"events": events,
                   "timelines": [[{k: r.get(k) for k in ("t", "ms", "status", "served")} for r in rep["timeline"]]
                                 for rep in reports]}, f)


def test_rolling_update_under_load_fails_no_request(host, ca):
    all_up(host)
    pids = service_pids(host)
    units = []
    for i in range(3):
        c = user_cookies(host, ca, i)
        unit = "roll-probe-%d" % i
        start_probe(host, unit, BASE + "session", "--cookie %s=%s" % (APP_COOKIE, c[APP_COOKIE]),
                    "--cookie %s=%s" % (LB_COOKIE, c[LB_COOKIE]), "--follow %s" % LB_COOKIE,
                    "--served-header X-Webfarm-Node --count 20000 --seconds 500 --interval 0.05 --timeout 10 --timeline")
        units.append(unit)
    time.sleep(2)
    t0 = time.time()
    try:
        res = playbook(os.path.join(PLAYBOOKS, "rolling_update.yml"),
                       rolling_update_tasks=os.path.join(SCENARIO, "tasks", "restart_services.yml"),
                       rolling_update_drain_timeout=5)
    finally:
        reports = [stop_probe(host, u, bound=60) for u in units]
    roll = time.time() - t0
    record("rolling_update", {"roll start": t0, "roll end": t0 + roll}, reports)
    assert res.returncode == 0, res.output[-4000:]
    # the roll did real work: every node's web services were restarted
    after = service_pids(host)
    assert all(after[k] != pids[k] and after[k] != "0" for k in pids), (pids, after)
    total = sum(r["total"] for r in reports)
    failed = sum(n for r in reports for s, n in r["status"].items() if s != "200")
    print("rolling update: %.1f s, %d requests from 3 users, %d failed; served %s"
          % (roll, total, failed, [r["served"] for r in reports]))
    assert total >= 300, reports
    assert failed == 0, [(r["status"], r["errors"][:3]) for r in reports]
    # the roll moved every user to another node (MAINT + redispatch) ...
    for r in reports:
        assert len(r["served"]) >= 2, r["served"]
    # ... and the session went along: no request was lost from the counter
    all_up(host)
    for i, r in enumerate(reports):
        code, body, _ = curl(host, ca, "/session", jar="/tmp/jar-roll-%d" % i)
        assert code == 200 and json.loads(body)["count"] == r["total"] + 2, (body, r["total"])


# ------------------------------------------ 7. a web node stopped under load --

def test_stopping_a_web_node_under_load(host, ca):
    all_up(host)
    victim = "default-web3"
    lb = other(host, "default-lb1")
    web = other(host, victim)
    lb.run("systemctl reset-failed down-watch; rm -f /tmp/down-watch")
    lb.check_output(
        "systemd-run --unit=down-watch /bin/bash -c 'for i in $(seq 600); do "
        "if echo \"show stat\" | socat -t 2 stdio UNIX-CONNECT:%s "
        "| grep -q \"^web,%s,.*,DOWN\"; then date +%%s.%%N > /tmp/down-watch; exit 0; fi; sleep 0.05; done'"
        % (SOCK, victim))
    units = []
    for i in range(3):
        unit = "stop-probe-%d" % i
        # new users (no cookies) spread over all nodes; GET /whoami is idempotent
        start_probe(host, unit, BASE + "whoami", "--served-header X-Webfarm-Node",
                    "--count 3000 --seconds 12 --interval 0.02 --timeline")
        units.append(unit)
    time.sleep(2)
    try:
        t_stop = float(web.check_output("date +%s.%N; systemctl stop apache2").split()[0])
        reports = [wait_probe(host, u, bound=90) for u in units]
        deadline = time.time() + 20
        while not lb.file("/tmp/down-watch").exists and time.time() < deadline:
            time.sleep(0.5)
        assert lb.file("/tmp/down-watch").exists, "HAProxy never marked %s DOWN" % victim
        t_down = float(lb.file("/tmp/down-watch").content_string)
    finally:
        web.run("systemctl start apache2")
    detection = t_down - t_stop
    record("node_stop", {"apache2 stopped": t_stop, "HAProxy marks it DOWN": t_down}, reports)
    # the last answer the victim gave (the balancer stopped sending to it after that)
    last_served = max([r["t"] for rep in reports for r in rep["timeline"] if r["served"] == victim] or [t_stop])
    total = sum(r["total"] for r in reports)
    failed = sum(n for r in reports for s, n in r["status"].items() if s != "200")
    print("node stop under load: %d requests, %d failed; DOWN after %.2f s (bound %.1f + 1 s); "
          "last answer from the node %.2f s after the stop"
          % (total, failed, detection, DETECTION_BOUND, last_served - t_stop))
    before = [r for rep in reports for r in rep["timeline"] if r["t"] < t_stop - 0.5]
    after = [r for rep in reports for r in rep["timeline"] if r["t"] > t_down + 0.2]
    assert any(r["served"] == victim for r in before), "the victim served nothing before the stop"
    assert after and not any(r["served"] == victim for r in after)
    assert detection <= DETECTION_BOUND + 1.0, detection
    assert failed == 0, [(r["status"], r["errors"][:3]) for r in reports]
    wait_status(host, victim, "UP")
