"""Behaviour of colo.webfarm.apache_balancer (and route_cookie on the web nodes).

Requests come from the client container (not in the admin network) through
the balancer; the X-Served-By header the role adds
(apache_balancer_server_header) carries the route of the member that
answered, which is the web node's inventory name here. Every loop is bounded
in count and time.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

LB = "172.29.13.10"
LB2 = "172.29.13.11"  # the same role on Debian 12 (molecule.yml)
URL = "http://%s/" % LB
MANAGER = "http://%s:8404/balancer-manager" % LB
WEB = ["apache_balancer-web1", "apache_balancer-web2", "apache_balancer-web3"]
WEIGHTS = dict(zip(WEB, (100, 100, 50)))
# byrequests with loadfactors 100:100:50 aims at 120/120/60 of 300 requests;
# Apache's child processes update the shared counters without a lock, so the
# split drifts a little: allowed 6 percentage points per member.
TOLERANCE = 0.06
# hcinterval 1 s x hcfails 2, plus one watchdog round (mod_proxy_hcheck).
DETECTION_BOUND = 3.0
# answers a member's stop may cost with one sequential client (see the
# failover test and roles/apache_balancer/README.md, "Failover")
MAX_LOST_AT_STOP = 2
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check, other, probe, start_probe, wait_probe  # noqa: E402

testinfra_hosts = ["ansible://apache_balancer-client"]


def member_status(host):
    """{route: Status column} from balancer-manager (on the balancer, localhost)."""
    lb = other(host, "apache_balancer-lb1")
    page = lb.check_output("curl -sf http://127.0.0.1:8404/balancer-manager")
    return dict(re.findall(r"</a></td><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td><td>([^<]*)</td>", page))


def playbook(name, **extra):
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           os.path.join(SCENARIO, name), "-e", json.dumps(extra)]
    res = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    res.output = res.stdout + res.stderr
    return res


def cookie_of(raw, name):
    m = re.match(r"%s=([^;]*)" % name, raw)
    return m.group(1) if m else None


def sticky_cookie_for(server):
    """The ROUTEID value the balancer issues for ``server`` (format checked in
    test_balancer_cookie_sticks_and_has_the_expected_format). byrequests counts
    sticky requests too, so waiting for a given node to be picked is unreliable."""
    return "." + server


# ---------------------------------------------------------------- config --

def test_config_is_managed_and_valid(host):
    lb = other(host, "apache_balancer-lb1")
    conf = lb.file("/etc/apache2/webfarm/balancer.conf").content_string
    assert "Ansible managed" in conf[:200]
    for member, weight in WEIGHTS.items():
        assert re.search(r"route=%s loadfactor=%d retry=5 .*hcuri=/health" % (member, weight), conf)
    assert "stickysession=ROUTEID" in conf and "BalancerPersist On" in conf
    assert 'ProxyPass "/balancer-manager" "!"' in conf
    assert lb.run("apachectl configtest").rc == 0
    for mod in ("proxy_balancer", "proxy_hcheck", "lbmethod_bybusyness", "remoteip", "headers"):
        assert lb.file("/etc/apache2/mods-enabled/%s.load" % mod).exists


# ------------------------------------------------------- 1. spread by weight --

def test_check_mode_on_the_converged_farm_completes_changes_nothing_and_hides_the_password():
    """A drift check (--check --diff) of the converged scenario, on both
    releases' balancers and the web nodes: no failure, changed=0, and the
    balancer-manager password never printed."""
    out, recap = drift_check(os.path.join(SCENARIO, "converge.yml"))
    assert set(recap) >= {"apache_balancer-lb1", "apache_balancer-lb2", *WEB}, recap
    assert all(r["changed"] == 0 for r in recap.values()), recap
    assert "molecule-admin-secret" not in out


def test_requests_spread_by_loadfactor(host):
    d = probe(host, URL, "--count 300 --seconds 120")
    assert d["status"] == {"200": 300}, d["status"]
    total = sum(WEIGHTS.values())
    for server, weight in WEIGHTS.items():
        assert abs(d["served"].get(server, 0) / 300.0 - weight / total) <= TOLERANCE, d["served"]


# ----------------------------------------------------------- 2. stickiness --

def test_balancer_cookie_sticks_and_has_the_expected_format(host):
    d = probe(host, URL, "--count 101 --follow ROUTEID")
    raw = [c for c in d["first"]["set_cookie"] if c.startswith("ROUTEID=")]
    assert len(raw) == 1, d["first"]
    assert re.match(r"^ROUTEID=\.(apache_balancer-web[123]); path=/; HttpOnly; Secure; SameSite=Lax$", raw[0]), raw[0]
    route = cookie_of(raw[0], "ROUTEID")[1:]
    assert d["first"]["served"] == route
    assert d["served"] == {route: 101} and d["status"] == {"200": 101}, d
    # BALANCER_ROUTE_CHANGED: once the cookie is right, no new ROUTEID cookie
    # (the web nodes here also set their legacy BALANCEID cookie: route_cookie)
    assert [c for c in d["cookies"] if c.startswith("ROUTEID=")] == raw


def test_the_debian_12_balancer_has_the_same_members_and_stickiness(host):
    # lb2 runs the role on Debian 12, lb1 on Debian 13 (molecule.yml)
    conf = "/etc/apache2/webfarm/balancer.conf"
    members = {n: sorted(re.findall(r"BalancerMember .*", other(host, n).file(conf).content_string))
               for n in ("apache_balancer-lb1", "apache_balancer-lb2")}
    assert len(members["apache_balancer-lb1"]) == 3 and members["apache_balancer-lb2"] == members["apache_balancer-lb1"]
    assert other(host, "apache_balancer-lb2").run("apachectl configtest").rc == 0
    d = probe(host, "http://%s/" % LB2, "--count 51 --follow ROUTEID")
    raw = [c for c in d["first"]["set_cookie"] if c.startswith("ROUTEID=")]
    assert len(raw) == 1 and re.match(r"^ROUTEID=\.(apache_balancer-web[123]); ", raw[0]), d["first"]
    route = cookie_of(raw[0], "ROUTEID")[1:]
    assert d["served"] == {route: 51} and d["status"] == {"200": 51}, d


def test_forwarded_headers(host):
    hdrs = json.loads(probe(host, URL + "cgi-bin/headers", "--count 1")["first"]["body"])
    assert hdrs["x-forwarded-proto"] == "https"
    assert hdrs["x-forwarded-for"] == "172.29.13.50"


# ------------------------------------------------------------- 3. failover --

def test_failover_of_the_sticky_member(host, capsys):
    victim = "apache_balancer-web2"
    cookie = sticky_cookie_for(victim)
    web = other(host, victim)
    lb = other(host, "apache_balancer-lb1")
    lb.run("systemctl reset-failed ab-watch; rm -f /tmp/ab-watch")
    lb.check_output(
        "systemd-run --unit=ab-watch /bin/bash -c 'for i in $(seq 300); do "
        "if curl -sf http://127.0.0.1:8404/balancer-manager | grep -E -q \"<td>%s</td>.*(Err|HcFl)\"; then "
        "date +%%s.%%N > /tmp/ab-watch; exit 0; fi; sleep 0.05; done'" % victim)
    start_probe(host, "ab-failover", URL, "--cookie ROUTEID=%s" % cookie,
                "--seconds 10 --count 2000 --interval 0.02 --timeline")
    time.sleep(1.5)
    try:
        t_stop = float(web.check_output("date +%s.%N; systemctl stop apache2").split()[0])
        d = wait_probe(host, "ab-failover", bound=90)
        deadline = time.time() + 20
        while not lb.file("/tmp/ab-watch").exists and time.time() < deadline:
            time.sleep(0.5)
        t_down = float(lb.file("/tmp/ab-watch").content_string)
    finally:
        web.run("systemctl start apache2")
    detection = t_down - t_stop
    non200 = sum(n for s, n in d["status"].items() if s != "200")
    with capsys.disabled():   # shown in molecule's output even when the test passes
        print("\nfailover: member in error after %.2f s (bound %.1f s), %d of %d answers not 200"
              % (detection, DETECTION_BOUND, non200, d["total"]))
    before = [r for r in d["timeline"] if r["t"] < t_stop - 0.2]
    after = [r for r in d["timeline"] if r["t"] > max(t_stop, t_down) + 0.2]
    assert before and all(r["served"] == victim for r in before)
    assert after and all(r["served"] != victim for r in after)
    assert all(r["status"] == 200 for r in after if r["t"] > t_down)
    new_routes = {cookie_of(c, "ROUTEID") for r in after for c in r["set_cookie"]}
    assert new_routes and ".%s" % victim not in new_routes, new_routes
    assert detection <= DETECTION_BOUND + 1.0, detection
    # Apache has no retry-on: a request sent on a pooled connection at the
    # moment the member's graceful-stop closes it gets a 502 (AH01102); a
    # refused connection is failed over. So the answers lost are the few in
    # flight when the member went away, never any after detection.
    failed = [r for r in d["timeline"] if r["status"] != 200]
    assert len(failed) <= MAX_LOST_AT_STOP, d["status"]
    assert all(t_stop - 0.1 <= r["t"] <= t_down + 0.2 for r in failed), failed
    deadline = time.time() + 30
    while "Ok" not in member_status(host).get(victim, "") or "Err" in member_status(host).get(victim, ""):
        assert time.time() < deadline, member_status(host)
        time.sleep(1)


# ---------------------------------------------------------------- 4. drain --

def test_drain_keeps_sticky_sessions_and_ready_restores(host):
    target = "apache_balancer-web1"
    cookie = sticky_cookie_for(target)
    res = playbook("drain.yml", drain_action="drain", drain_target=target)
    assert res.returncode == 0, res.output[-3000:]
    try:
        assert "Drn" in member_status(host)[target]
        fresh = probe(host, URL, "--count 60")
        assert fresh["status"] == {"200": 60} and target not in fresh["served"], fresh["served"]
        # Apache's drain (+N): requests that carry the node's route still reach it
        sticky = probe(host, URL, "--count 20 --cookie ROUTEID=%s" % cookie)
        assert sticky["served"] == {target: 20}, sticky["served"]
        # BalancerPersist: the flag survives a graceful reload
        other(host, "apache_balancer-lb1").check_output("systemctl reload apache2")
        time.sleep(2)
        assert "Drn" in member_status(host)[target]
        again = playbook("drain.yml", drain_action="drain", drain_target=target)
        assert again.returncode == 0 and "changed=0" in again.output, again.output[-2000:]
    finally:
        res = playbook("drain.yml", drain_action="ready", drain_target=target)
    assert res.returncode == 0, res.output[-3000:]
    assert "Drn" not in member_status(host)[target]
    # back in rotation. byrequests first evens out the counts of the drain
    # period (the sticky requests above count for the target), so its share
    # comes back late: 5 of 60 were seen once; ask for 6 of up to 300.
    back = probe(host, URL, "--count 300 --seconds 90")
    assert back["status"] == {"200": back["total"]} and back["served"].get(target, 0) >= 6, back["served"]


def test_drain_of_an_unknown_host_fails_clearly(host):
    res = playbook("drain.yml", drain_action="drain", drain_target="no-such-node")
    assert res.returncode != 0
    assert "apache_balancer_drain_target" in res.output and "no-such-node" in res.output, res.output[-2000:]
    assert "apache_balancer-web1" in res.output


# ---------------------------------------------------------------- 5. admin --

def test_manager_refuses_the_client(host):
    for url in (MANAGER, "http://%s/balancer-manager" % LB):
        code = host.check_output("curl -s -o /dev/null -w '%%{http_code}' -u admin:molecule-admin-secret %s" % url)
        assert code == "403", url


def test_manager_needs_credentials_from_the_admin_network(host):
    admin = other(host, "apache_balancer-admin")
    assert admin.check_output("curl -s -o /dev/null -w '%%{http_code}' %s" % MANAGER) == "401"
    assert admin.check_output("curl -s -o /dev/null -w '%%{http_code}' -u admin:wrong %s" % MANAGER) == "401"
    page = admin.check_output("curl -sf -u admin:molecule-admin-secret %s" % MANAGER)
    assert "balancer://webfarm" in page and "apache_balancer-web3" in page


# --------------------------------------------------------------- 6. reload --

def test_graceful_reload_during_requests_loses_nothing(host, capsys):
    lb = other(host, "apache_balancer-lb1")
    start_probe(host, "ab-reload", URL, "--count 600 --seconds 15 --interval 0.01")
    time.sleep(1)
    for _ in range(3):
        lb.check_output("systemctl reload apache2")
        time.sleep(1)
    d = wait_probe(host, "ab-reload", bound=60)
    with capsys.disabled():
        print("\nreload: %d requests, status %s, errors %s" % (d["total"], d["status"], d["errors"][:3]))
    assert d["total"] >= 100
    assert d["status"] == {"200": d["total"]}, (d["status"], d["errors"])


# ------------------------------------------------- legacy backend cookie --

def test_route_cookie_config_is_identical_on_every_web_node(host):
    sums = {}
    for name in WEB:
        web = other(host, name)
        blob = "".join(web.file(p).content_string for p in (
            "/etc/apache2/webfarm/route-cookie.conf", "/etc/apache2/webfarm/routemap.txt",
            "/etc/apache2/conf-enabled/webfarm-route-cookie.conf"))
        sums[name] = hashlib.sha256(blob.encode()).hexdigest()
        assert web.run("apachectl configtest").rc == 0
    assert len(set(sums.values())) == 1, sums
    routemap = other(host, WEB[0]).file("/etc/apache2/webfarm/routemap.txt").content_string
    for i, name in enumerate(WEB, start=31):
        assert "172.29.13.%d %s" % (i, name) in routemap


def test_legacy_backend_cookie_mode_end_to_end(host):
    res = playbook("mode.yml", apache_balancer_sticky_mode="legacy_backend_cookie")
    assert res.returncode == 0, res.output[-3000:]
    try:
        conf = other(host, "apache_balancer-lb1").file("/etc/apache2/webfarm/balancer.conf").content_string
        assert "stickysession=BALANCEID" in conf and "ROUTEID" not in conf
        d = probe(host, URL, "--count 101 --follow BALANCEID")
        raw = [c for c in d["first"]["set_cookie"] if c.startswith("BALANCEID=")]
        assert len(raw) == 1, d["first"]
        # set by the web node itself: balancer.<route>
        assert re.match(r"^BALANCEID=balancer\.(apache_balancer-web[123]); path=/; domain=%s; secure; HttpOnly$"
                        % re.escape(LB), raw[0]), raw[0]
        route = cookie_of(raw[0], "BALANCEID").split(".", 1)[1]
        assert d["first"]["served"] == route
        assert d["served"] == {route: 101} and d["status"] == {"200": 101}, d
        # a cookie for another node moves the client there
        other_route = [w for w in WEB if w != route][0]
        moved = probe(host, URL, "--count 10 --cookie BALANCEID=balancer.%s" % other_route)
        assert moved["served"] == {other_route: 10}, moved["served"]
    finally:
        res = playbook("mode.yml")
    assert res.returncode == 0, res.output[-3000:]


# ------------------------------------------------- PROXY protocol (edge) --

def test_proxy_protocol_behind_an_edge(host):
    """Behind stunnel on edge hosts the balancer reads the client address from
    the PROXY v1 header; a connection without it is refused (the admin network
    and localhost are exempt)."""
    lb = other(host, "apache_balancer-lb1")
    fake = "198.51.100.%d" % (int(time.time()) % 200 + 20)
    res = playbook("proxy.yml")
    assert res.returncode == 0, res.output[-3000:]
    try:
        conf = lb.file("/etc/apache2/webfarm/balancer.conf").content_string
        assert "RemoteIPProxyProtocol On" in conf, conf
        # a PROXY v1 header claiming another client: the backend and the
        # balancer's access log see that address
        d = probe(host, URL + "cgi-bin/headers?proxy-check", "--count 1 --proxy-src %s" % fake)
        assert d["status"] == {"200": 1}, d
        assert json.loads(d["first"]["body"])["x-forwarded-for"] == fake
        log = lb.check_output("cat /var/log/apache2/*access.log")
        assert re.search(r"\b%s\b.*GET /cgi-bin/headers\?proxy-check" % re.escape(fake), log), log[-2000:]
        # curl speaks PROXY v1 with its own address
        code = host.check_output("curl -s -o /dev/null -w '%%{http_code}' --haproxy-protocol %s" % URL)
        assert code == "200"
        # without the header the balancer closes the connection without an answer
        plain = probe(host, URL, "--count 5 --seconds 20")
        assert plain["status"] == {"0": 5}, plain
        assert host.run("curl -s -o /dev/null %s" % URL).rc != 0
        # exempt sources talk plain HTTP: the admin host and localhost
        admin = other(host, "apache_balancer-admin")
        assert admin.check_output("curl -s -o /dev/null -w '%%{http_code}' -u admin:molecule-admin-secret %s"
                                  % MANAGER) == "200"
        assert lb.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8404/balancer-manager") == "200"
    finally:
        res = playbook("mode.yml")
    assert res.returncode == 0, res.output[-3000:]
    assert "RemoteIPProxyProtocol" not in lb.file("/etc/apache2/webfarm/balancer.conf").content_string
    assert probe(host, URL, "--count 3")["status"] == {"200": 3}


# ------------------------------------------------------------- bad input --

def test_bad_input_fails_before_writing_config(host):
    res = playbook("bad_input.yml")
    print("\n".join(line for line in res.output.splitlines() if "BADINPUT" in line))
    assert res.returncode == 0, res.output[-4000:]
    assert res.output.count("BADINPUT ") >= 5
