"""Behaviour of colo.webfarm.haproxy: two balancers, three stand-in web nodes.

Requests come from the client container (not in the admin network) through
lb1 (lb2 for what the balancers share: stick tables by peers); the
X-Served-By header the role adds (haproxy_server_header) says which web node
answered. Every loop is bounded in count and time. The node-death tests come
last: they stop and kill web node containers and start them again.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

LB = "172.29.12.10"
LB2 = "172.29.12.11"
WEIGHTS = {"haproxy-web1": 100, "haproxy-web2": 100, "haproxy-web3": 50}
COOKIE = "WEBFARM_LB"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Roundrobin with weights 100:100:50 is deterministic: 300 requests give
# 120/120/60. Allowed: 3 percentage points per backend for cookie/none;
# 'source' hashes 300 random client addresses onto a consistent-hash ring, so
# its spread is statistical: 12 points.
TOLERANCE = {"web": 0.03, "web_none": 0.03, "web_source": 0.12}
URLS = {"web": "http://%s/" % LB, "web_none": "http://%s:8081/" % LB, "web_source": "http://%s:8080/" % LB}
DETECTION_BOUND = 3.0

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check, other, probe, start_probe, wait_probe  # noqa: E402

testinfra_hosts = ["ansible://haproxy-client"]


def lb_stat(host):
    """{(backend, server): status} from the runtime API."""
    lb = other(host, "haproxy-lb1")
    out = lb.check_output("echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")
    rows = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) > 17 and not line.startswith("#") and f[1] not in ("FRONTEND", "BACKEND"):
            rows[(f[0], f[1])] = f[17]
    return rows


def wait_status(host, server, status, bound=20):
    deadline = time.time() + bound
    while time.time() < deadline:
        states = {k: v for k, v in lb_stat(host).items() if k[1] == server}
        if states and all(v.startswith(status) for v in states.values()):
            return
        time.sleep(0.5)
    raise AssertionError("%s did not reach %s within %d s: %s" % (server, status, bound, lb_stat(host)))


def playbook(name, **extra):
    env = dict(os.environ)
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           os.path.join(SCENARIO, name), "-e", json.dumps(extra)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    res.output = res.stdout + res.stderr
    return res


def cookie_route(raw):
    m = re.match(r"%s=([^;|]*)" % COOKIE, raw)
    return m.group(1) if m else None


def sticky_cookie_for(host, server):
    """A real cookie the balancer issued for ``server``."""
    d = probe(host, URLS["web"], "--count 12")
    for raw in d["cookies"]:
        if cookie_route(raw) == server:
            return raw.split(";")[0].split("=", 1)[1]
    raise AssertionError("no cookie for %s in %s" % (server, d["cookies"]))


# ---------------------------------------------------------------- config --


def test_check_mode_on_the_converged_balancer_completes_and_changes_nothing():
    """A drift check (--check --diff) of the converged scenario: no failure, changed=0."""
    out, recap = drift_check(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml"))
    assert all(r["changed"] == 0 for r in recap.values()), recap


def test_config_is_managed_and_valid(host):
    lb = other(host, "haproxy-lb1")
    cfg = lb.file("/etc/haproxy/haproxy.cfg")
    assert cfg.content_string.startswith("#")
    assert "Ansible managed" in cfg.content_string.splitlines()[0] or "Ansible managed" in cfg.content_string[:300]
    assert "http-check send meth GET uri /health" in cfg.content_string
    assert "\\r\\n" not in cfg.content_string
    assert lb.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    assert lb.service("haproxy").is_running


def test_runtime_socket_is_local_admin_only(host):
    lb = other(host, "haproxy-lb1")
    sock = lb.file("/run/haproxy/admin.sock")
    assert sock.is_socket and sock.mode == 0o660
    listening = lb.check_output("ss -Hltn | awk '{print $4}' | grep -v '^127.0.0.11:'")
    ports = sorted({int(a.rsplit(":", 1)[1]) for a in listening.split()})
    # 10000: the peers section (stick tables shared with lb2)
    assert ports == [80, 443, 8080, 8081, 8082, 8083, 8404, 10000], ports


# ------------------------------------------------------- 1. spread by weight --

@pytest.mark.parametrize("backend", ["web", "web_none", "web_source"])
def test_requests_spread_by_weight(host, backend):
    extra = "--proxy-src random" if backend == "web_source" else ""
    d = probe(host, URLS[backend], "--count 300 --seconds 120", extra)
    assert d["status"] == {"200": 300}, d["status"]
    total = sum(WEIGHTS.values())
    for server, weight in WEIGHTS.items():
        share = d["served"].get(server, 0) / 300.0
        assert abs(share - weight / total) <= TOLERANCE[backend], (backend, d["served"])


# ----------------------------------------------------------- 2. stickiness --

def test_cookie_sticks_and_has_the_expected_format(host):
    d = probe(host, URLS["web"], "--count 101 --follow", COOKIE)
    first = d["first"]
    raw = [c for c in first["set_cookie"] if c.startswith(COOKIE + "=")]
    assert len(raw) == 1, first
    # route (the inventory name) then HAProxy's '|' date suffixes from maxidle
    # (and maxlife): 30 bits each in base64, whose alphabet has '+' and '/' ("awI+q")
    assert re.match(r"^%s=(haproxy-web[123])(\|[A-Za-z0-9+/]{5}){0,2}; path=/" % COOKIE, raw[0]), raw[0]
    for attr in ("HttpOnly", "Secure", "SameSite=Lax"):
        assert attr in raw[0], raw[0]
    route = cookie_route(raw[0])
    assert first["served"] == route
    assert d["served"] == {route: 101}, d["served"]
    assert d["status"] == {"200": 101}


def test_source_persistence_sticks(host):
    d = probe(host, URLS["web_source"], "--count 100 --proxy-src 10.77.1.9")
    assert d["status"] == {"200": 100}
    assert len(d["served"]) == 1 and sum(d["served"].values()) == 100, d["served"]
    assert not d["cookies"]


def test_none_persistence_sets_no_cookie(host):
    d = probe(host, URLS["web_none"], "--count 20")
    assert not d["cookies"]
    assert len(d["served"]) == 3


# ------------------------------------------------------------- 3. failover --

def test_failover_of_the_sticky_backend(host):
    victim = "haproxy-web2"
    cookie = sticky_cookie_for(host, victim)
    web = other(host, victim)
    lb = other(host, "haproxy-lb1")
    # watch the runtime API on the balancer itself: time the victim goes DOWN
    lb.run("systemctl reset-failed hx-watch; rm -f /tmp/hx-watch")
    lb.check_output(
        "systemd-run --unit=hx-watch /bin/bash -c 'for i in $(seq 300); do "
        "if echo \"show stat\" | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock "
        "| grep -q \"^web,%s,.*,DOWN\"; then date +%%s.%%N > /tmp/hx-watch; exit 0; fi; sleep 0.05; done'" % victim)
    start_probe(host, "hx-failover", URLS["web"], "--cookie %s=%s" % (COOKIE, cookie),
                "--seconds 10 --count 2000 --interval 0.02 --timeline")
    time.sleep(1.5)
    try:
        t_stop = float(web.check_output("date +%s.%N; systemctl stop standin").split()[0])
        d = wait_probe(host, "hx-failover", bound=90)
        deadline = time.time() + 20
        while not lb.file("/tmp/hx-watch").exists and time.time() < deadline:
            time.sleep(0.5)
        t_down = float(lb.file("/tmp/hx-watch").content_string)
    finally:
        web.run("systemctl start standin")
    detection = t_down - t_stop
    non200 = sum(n for s, n in d["status"].items() if s != "200")
    print("failover: detection %.2f s (bound %.1f s), %d of %d answers not 200"
          % (detection, DETECTION_BOUND, non200, d["total"]))
    before = [r for r in d["timeline"] if r["t"] < t_stop - 0.2]
    after = [r for r in d["timeline"] if r["t"] > max(t_stop, t_down) + 0.2]
    assert before and all(r["served"] == victim for r in before)
    assert after and all(r["served"] != victim for r in after)
    assert all(r["status"] == 200 for r in after if r["t"] > t_down), "non-200 after detection"
    # the balancer moved the session and re-issued the cookie for the new node
    new_routes = {cookie_route(c) for r in after for c in r["set_cookie"]}
    assert new_routes and victim not in new_routes, new_routes
    assert detection <= DETECTION_BOUND + 1.0, detection   # +1 s: shared, loaded CI machine
    # redispatch + retry-on: a stopped node answers 'connection refused', which is retried
    assert non200 == 0, d["status"]
    wait_status(host, victim, "UP")


# ---------------------------------------------------------------- 4. drain --

def test_drain_keeps_sticky_sessions_and_ready_restores(host):
    target = "haproxy-web1"
    cookie = sticky_cookie_for(host, target)
    res = playbook("drain.yml", drain_action="drain", drain_target=target)
    assert res.returncode == 0, res.output[-3000:]
    try:
        wait_status(host, target, "DRAIN", bound=5)
        fresh = probe(host, URLS["web"], "--count 60")
        assert fresh["status"] == {"200": 60} and target not in fresh["served"], fresh["served"]
        sticky = probe(host, URLS["web"], "--count 20 --cookie %s=%s" % (COOKIE, cookie))
        assert sticky["served"] == {target: 20}, sticky["served"]
        # the drain survives a reload (server-state-file)
        other(host, "haproxy-lb1").check_output("systemctl reload haproxy")
        time.sleep(2)
        wait_status(host, target, "DRAIN", bound=5)
        fresh = probe(host, URLS["web"], "--count 30")
        assert target not in fresh["served"], fresh["served"]
    finally:
        res = playbook("drain.yml", drain_action="ready", drain_target=target)
    assert res.returncode == 0, res.output[-3000:]
    wait_status(host, target, "UP", bound=5)
    back = probe(host, URLS["web"], "--count 30")
    assert back["served"].get(target, 0) >= 10, back["served"]


def test_drain_of_an_unknown_host_fails_clearly(host):
    res = playbook("drain.yml", drain_action="drain", drain_target="no-such-node")
    assert res.returncode != 0
    assert "haproxy_drain_target" in res.output and "no-such-node" in res.output, res.output[-2000:]
    assert "haproxy-web1" in res.output   # the message lists the valid targets


# ---------------------------------------------------------------- 5. admin --

def test_stats_refuse_the_client(host):
    code = host.check_output("curl -s -o /dev/null -w '%%{http_code}' -u admin:molecule-stats-secret http://%s:8404/stats" % LB)
    assert code == "403"


def test_stats_need_credentials_from_the_admin_network(host):
    admin = other(host, "haproxy-admin")
    url = "http://%s:8404/stats" % LB
    assert admin.check_output("curl -s -o /dev/null -w '%%{http_code}' %s" % url) == "401"
    assert admin.check_output("curl -s -o /dev/null -w '%%{http_code}' -u admin:wrong %s" % url) == "401"
    page = admin.check_output("curl -sf -u admin:molecule-stats-secret %s" % url)
    assert "Statistics Report" in page and "haproxy-web3" in page


# --------------------------------------------------------------- 6. reload --

def test_reload_during_requests_loses_nothing(host):
    lb = other(host, "haproxy-lb1")
    start_probe(host, "hx-reload", URLS["web"], "--count 600 --seconds 15 --interval 0.01")
    time.sleep(1)
    for _ in range(3):
        lb.check_output("systemctl reload haproxy")
        time.sleep(1)
    d = wait_probe(host, "hx-reload", bound=60)
    print("reload: %d requests, status %s, errors %s" % (d["total"], d["status"], d["errors"][:3]))
    assert d["total"] >= 100
    assert d["status"] == {"200": d["total"]}, (d["status"], d["errors"])


# ---------------------------------------------- client address, TLS, PROXY --

def test_forwarded_headers_from_proxy_protocol(host):
    d = probe(host, "http://%s:8080/headers" % LB, "--count 1 --proxy-src 10.1.2.3")
    assert d["status"] == {"200": 1}
    hdrs = json.loads(d["first"]["body"])
    assert hdrs["x-forwarded-for"] == "10.1.2.3"
    assert hdrs["x-forwarded-proto"] == "https"


def test_accept_proxy_bind_rejects_plain_http(host):
    d = probe(host, URLS["web_source"], "--count 1 --timeout 3")
    assert d["status"] != {"200": 1}


def test_plain_bind_without_proxy_protocol(host):
    hdrs = json.loads(host.check_output("curl -sf http://%s:8081/headers" % LB))
    assert hdrs["x-forwarded-for"] == "172.29.12.50"
    assert hdrs["x-forwarded-proto"] == "http"


def test_native_tls_with_http2_and_hsts(host):
    out = host.check_output("curl -sk --http2 -D - -o /dev/null -w 'VERSION=%%{http_version}' https://%s/" % LB)
    assert "VERSION=2" in out
    assert re.search(r"(?im)^strict-transport-security: max-age=63072000", out)
    assert host.run("curl -sk --tls-max 1.1 https://%s/" % LB).rc != 0
    hdrs = json.loads(host.check_output("curl -sk https://%s/headers" % LB))
    assert hdrs["x-forwarded-proto"] == "https"


def test_plain_http_redirects_to_https(host):
    out = host.check_output("curl -s -D - -o /dev/null http://%s:8082/some/path" % LB)
    assert out.split()[1] == "301"
    assert re.search(r"(?im)^location: https://%s(:8082)?/some/path" % re.escape(LB), out)


# ------------------------------------------------------------- bad input --

def test_bad_input_fails_before_writing_config(host):
    res = playbook("bad_input.yml")
    print("\n".join(line for line in res.output.splitlines() if "BADINPUT" in line))
    assert res.returncode == 0, res.output[-4000:]
    assert res.output.count("BADINPUT ") >= 5


# ------------------------------------------------------ 7. request-rate limits --
# molecule.yml: haproxy_rate_limit_requests 30 per 10 s on the limited frontend
# (8083, PROXY protocol: the key is the address the PROXY header names, so one
# container can be several clients), a /login rule of 5 per 10 s, and
# 10.88.9.0/24 exempt. Each test uses client addresses of its own (10.88.x.y),
# so its counters start at zero; each burst ends within the 10 s window.

RATE, PERIOD, LOGIN_RATE = 30, 10, 5
LIMITED = {"lb1": "http://%s:8083/" % LB, "lb2": "http://%s:8083/" % LB2}


def test_a_client_above_the_rate_gets_429_and_one_below_never(host):
    # both clients come from the same container (172.29.12.50): only the PROXY address tells them apart
    start_probe(host, "hx-rate-below", LIMITED["lb1"], "--proxy-src 10.88.1.2 --count 20 --seconds 9 --interval 0.4")
    # at most 9 s (< the 10 s window) of back-to-back requests
    above = probe(host, LIMITED["lb1"], "--proxy-src 10.88.1.1 --count 60 --seconds 9 --timeline")
    below = wait_probe(host, "hx-rate-below", bound=30)
    print("rate: above %s in %.1f s, below %s in %.1f s"
          % (above["status"], above["seconds"], below["status"], below["seconds"]))
    assert above["total"] > RATE + 5, "too slow to go over the limit within the window: %s" % above["status"]
    # exactly the first RATE requests pass, every later one is refused, saying when to come back
    codes = [r["status"] for r in above["timeline"]]
    assert codes == [200] * RATE + [429] * (len(codes) - RATE), above["status"]
    assert {r["retry_after"] for r in above["timeline"] if r["status"] == 429} == {str(PERIOD)}
    assert below["status"] == {"200": below["total"]} and below["total"] >= 10, below["status"]


def test_the_per_path_rule_limits_only_its_path(host):
    login = probe(host, LIMITED["lb1"] + "login/form", "--proxy-src 10.88.2.1 --count 12 --seconds 8")
    # 12 + 15 requests stay under the overall 30
    other_path = probe(host, LIMITED["lb1"] + "page", "--proxy-src 10.88.2.1 --count 15 --seconds 8")
    print("rate: /login %s, /page %s" % (login["status"], other_path["status"]))
    assert login["status"] == {"200": LOGIN_RATE, "429": 12 - LOGIN_RATE}, login["status"]
    assert other_path["status"] == {"200": 15}, other_path["status"]


def test_exempt_sources_are_never_limited(host):
    d = probe(host, LIMITED["lb1"], "--proxy-src 10.88.9.1 --count 60 --seconds 9")
    print("rate: exempt %s in %.1f s" % (d["status"], d["seconds"]))
    assert d["total"] > RATE + 5, "too slow to go over the limit within the window: %s" % d["status"]
    assert d["status"] == {"200": d["total"]}, d["status"]


def test_the_limit_holds_across_both_balancers(host):
    """Alternating lb1/lb2, up to 50 requests in 9 s: each balancer alone sees
    at most 25 (< 30), so only the shared table (peers) can refuse any."""
    d = probe(host, LIMITED["lb1"], "--also", LIMITED["lb2"], "--proxy-src 10.88.3.1 --count 50 --seconds 9")
    by = {k: d["by_url"].get(v, {}) for k, v in LIMITED.items()}
    passed = sum(n.get("200", 0) for n in by.values())
    print("rate across balancers: %s in %.1f s; %d passed (limit %d)" % (by, d["seconds"], passed, RATE))
    assert d["total"] > RATE + 5, "too slow to go over the limit within the window: %s" % by
    assert set(d["status"]) <= {"200", "429"}, d["status"]
    assert all(n.get("429", 0) > 0 for n in by.values()), by
    # the peers protocol copies the latest counter (last write wins): sequential requests add up exactly,
    # a few updates may cross on the wire
    assert RATE - 2 <= passed <= RATE + 4, (passed, by)
    lb2 = other(host, "haproxy-lb2")
    table = lb2.check_output("echo 'show table ratelimit key ::ffff:10.88.3.1' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")
    assert "http_req_rate(10000)=" in table, table


# ------------------------------------------------------------ 8. node death --
# The sticky user's web node container is stopped (docker stop: systemd halts,
# the stand-in answers 503 for 1 s then exits, the address disappears) and
# killed (docker kill: everything dies at once). Idempotent GETs must all
# succeed and the user must continue on another node; a POST in flight on the
# dying node is not retried. The containers are started again afterwards.

def docker(*args, timeout=60):
    return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)


def container_running(name):
    return docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def restore_node(host, name, bound=90):
    if not container_running(name):
        res = docker("start", name)
        assert res.returncode == 0, res.stderr
    docker("exec", name, "timeout", str(bound), "systemctl", "is-system-running", "--wait", timeout=bound + 10)
    for lb_name in ("haproxy-lb1", "haproxy-lb2"):
        deadline = time.time() + bound
        while time.time() < deadline:
            out = other(host, lb_name).check_output("echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")
            states = [line.split(",")[17] for line in out.splitlines() if line.split(",")[1:2] == [name]]
            if states and all(s.startswith("UP") for s in states):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("%s not UP on %s after its restart within %d s" % (name, lb_name, bound))


def node_death(host, victim, action):
    cookie = sticky_cookie_for(host, victim)
    jar = "%s=%s" % (COOKIE, cookie)
    unit = "hx-death-" + action
    # a sticky user: ~12 s of GETs, taking the new cookie when the balancer re-issues it
    start_probe(host, unit, URLS["web"], "--cookie", jar, "--follow %s --seconds 12 --count 6000 --interval 0.01 --timeline" % COOKIE)
    # a POST in flight on the victim when it dies (the stand-in would answer it after 10 s)
    start_probe(host, unit + "-post", URLS["web"] + "slow?ms=10000", "--method POST --cookie", jar, "--count 1 --timeout 40")
    # act once HAProxy has had the POST on the victim for a second (not before: a POST whose
    # connection fails is rightly retried elsewhere)
    deadline = time.time() + 8
    while not re.search(r"srv=%s .*age=[1-9]" % victim, docker(
            "exec", "haproxy-lb1", "sh", "-c", "echo 'show sess' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock").stdout):
        assert time.time() < deadline, "the POST did not reach %s within 8 s" % victim
        time.sleep(0.2)
    try:
        t_act = time.time()
        res = docker(action, victim)
        t_done = time.time()
        assert res.returncode == 0, res.stderr
        d = wait_probe(host, unit, bound=60)
        post = wait_probe(host, unit + "-post", bound=60)
    finally:
        restore_node(host, victim)
    tl = d["timeline"]
    failed = [r for r in tl if r["status"] != 200]
    before = [r for r in tl if r["t"] + r["ms"] / 1000.0 < t_act]
    after = [r for r in tl if r["t"] > t_act]
    moved = [r for r in after if r["served"] != victim]
    elsewhere = (moved[0]["t"] + moved[0]["ms"] / 1000.0 - t_act) if moved else None
    slowest = max(r["ms"] for r in after) if after else None
    print("node death (docker %s of %s, %.2f s): %d GETs, %d failed %s; served elsewhere %.2f s after; slowest GET "
          "after it %.0f ms; POST in flight: %s %s"
          % (action, victim, t_done - t_act, d["total"], len(failed), d["status"],
             elsewhere if elsewhere is not None else -1, slowest or -1, post["status"], post["errors"][:1]))
    assert before and all(r["served"] == victim for r in before), "the user was not on %s before" % victim
    assert not failed, (d["status"], d["errors"][:5], failed[:5])
    assert moved, "the user was never served by another node after docker %s" % action
    # the user now sticks to one other node: the last answers (the final second) all come from it
    tail = [r for r in tl if r["t"] > tl[-1]["t"] - 1.0]
    assert len({r["served"] for r in tail}) == 1 and tail[0]["served"] != victim, [r["served"] for r in tail]
    assert d["final_cookies"][COOKIE].split("|")[0] == tail[0]["served"], d["final_cookies"]
    # a POST is never retried once sent: the client gets the balancer's error, not another node's answer
    assert post["total"] == 1 and post["status"].get("200", 0) == 0, post
    return post


def test_a_stopped_node_costs_no_get(host):
    post = node_death(host, "haproxy-web1", "stop")
    assert post["status"] == {"502": 1}, post   # the stand-in exits with the POST unanswered


def test_a_killed_node_costs_no_get(host):
    post = node_death(host, "haproxy-web2", "kill")
    assert set(post["status"]) <= {"502", "504"}, post
