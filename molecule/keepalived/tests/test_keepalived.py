"""Behaviour of colo.webfarm.keepalived: two HAProxy balancers share 172.29.21.100.

Requests come from the client container through the virtual address; the
X-Served-By header (haproxy_server_header) names the web node that answered.
The failover tests stop containers and services and restore them at the end
(molecule runs verify after idempotence). Every loop is bounded.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

VIP = "172.29.21.100"
URL = "http://%s/" % VIP
LBS = ["keepalived-lb1", "keepalived-lb2"]
PRIORITY = {"keepalived-lb1": 200, "keepalived-lb2": 190}
ADDRESS = {"keepalived-lb1": "172.29.21.11", "keepalived-lb2": "172.29.21.12"}
CLIENT = "172.29.21.50"
MOVE_BOUND = 3.0
# the balancer scenarios' margin for a shared, loaded CI machine (2 cores, two
# scenarios at a time); bench/vip.py records the figures on their own
LOAD_MARGIN = 1.0
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check, wait_probe  # noqa: E402

testinfra_hosts = ["ansible://keepalived-client"]


def docker(*args, timeout=60):
    return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)


def running(name):
    return docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def holds_vip(name):
    res = docker("exec", name, "ip", "-4", "-o", "addr", "show", "dev", "eth0", timeout=10)
    if res.returncode != 0:  # container stopped
        return False
    out = res.stdout
    return (" %s/" % VIP) in out


def holders():
    return [n for n in LBS if holds_vip(n)]


def wait_holder(name, bound, t0=None):
    """Seconds from t0 until ``name`` holds the address (poll every 0.1 s)."""
    t0 = t0 or time.time()
    while time.time() - t0 < bound:
        if holds_vip(name):
            return time.time() - t0
        time.sleep(0.1)
    raise AssertionError("%s did not take %s within %.0f s (holders: %s)" % (name, VIP, bound, holders()))


def lb_exec(name, cmd, timeout=30):
    return docker("exec", name, "bash", "-c", cmd, timeout=timeout)


def vrrp_state(name):
    """The instance's last state since keepalived started (BACKUP/MASTER/FAULT; "" = none yet)."""
    # the journal survives a container restart: only lines after the last start count
    out = lb_exec(name, "journalctl -u keepalived --no-pager -o cat | awk '/Starting Keepalived/ {s=\"\"} "
                        "match($0, /Entering [A-Z]+ STATE/) {s=substr($0, RSTART+9, RLENGTH-15)} END {print s}'").stdout
    return out.strip()


def wait_ready(name, bound=90):
    """Container running, haproxy answering, keepalived in BACKUP or MASTER."""
    deadline = time.time() + bound
    while time.time() < deadline:
        if running(name) and lb_exec(name, "systemctl is-active haproxy keepalived").returncode == 0 \
                and vrrp_state(name) in ("BACKUP", "MASTER"):
            return
        time.sleep(1)
    raise AssertionError("%s not ready within %d s: state %r" % (name, bound, vrrp_state(name)))


def restore():
    for name in LBS:
        if not running(name):
            docker("start", name)
        lb_exec(name, "systemctl unmask --runtime haproxy; systemctl reset-failed haproxy; systemctl start haproxy")
    for name in LBS:
        wait_ready(name)


@pytest.fixture(scope="module", autouse=True)
def restored_at_end():
    yield
    restore()


def start_probe(host, unit, count, seconds, cookie=""):
    host.run("systemctl reset-failed %s; rm -f /tmp/%s.json" % (unit, unit))
    args = "--count %d --seconds %d --interval 50 --timeout 0.5" % (count, seconds)
    if cookie:
        args += " --cookie '%s'" % cookie
    host.check_output("systemd-run --unit=%s /usr/local/bin/vipprobe %s %s --out /tmp/%s.json" % (unit, URL, args, unit))


def sticky_cookie(host):
    d = json.loads(host.check_output("vipprobe %s --count 5 --seconds 10" % URL))
    assert d["failed"] == 0, d["failures"]
    assert d["cookie"].startswith("WEBFARM_LB=keepalived-web"), d["cookie"]
    assert len(set(d["backends"][1:])) == 1, d["backends"]
    return d["cookie"], d["backends"][-1]


def failover(host, report, unit, action, cookie, backend):
    """Run ``action`` (which fails the holder) under a request loop; report and check."""
    active = holders()
    assert len(active) == 1, active
    active = active[0]
    other = [n for n in LBS if n != active][0]
    start_probe(host, unit, 400, 20, cookie)
    time.sleep(2)
    t0 = action(active)  # when the failure happened
    wait_holder(other, 30, t0)
    # precise: when the survivor's keepalived logged the takeover (polling
    # with docker exec lags behind under load)
    out = lb_exec(other, "journalctl -u keepalived --no-pager -o short-unix | grep 'Entering MASTER STATE' | tail -1")
    moved = float(out.stdout.split()[0]) - t0
    probe = wait_probe(host, unit, bound=90)
    fails = probe["failures"]
    after = [r for r in probe["requests"] if r["t"] > t0]
    ok_after = [r for r in after if r["status"] == 200]
    if fails:
        last_fail = max(f["t"] for f in fails)
        recovered = min([r["t"] for r in ok_after if r["t"] > last_fail] or [t0 + 99]) - t0
    else:
        recovered = 0.0
    errors = sorted({f.get("error", "").split(":")[0] for f in fails})
    report("FAILOVER %s: %s -> %s, address moved after %.2f s, client served again after %.2f s, "
           "failed requests %d of %d (%s)" % (unit, active, other, moved, recovered, len(fails), probe["total"],
                                             ", ".join(errors) or "none"))
    assert moved <= MOVE_BOUND + LOAD_MARGIN, moved
    assert recovered <= MOVE_BOUND + LOAD_MARGIN, recovered
    # only requests in flight while the address moved may fail (50 ms apart)
    assert len(fails) <= (MOVE_BOUND + LOAD_MARGIN) / 0.05, fails
    assert all(t0 - 0.1 <= f["t"] <= t0 + MOVE_BOUND + LOAD_MARGIN for f in fails), fails
    # the client's cookie is honoured by the other balancer: same backend throughout
    assert set(probe["backends"]) == {backend}, set(probe["backends"])
    assert len(ok_after) > 20
    assert holders() == [other]
    return active, other


def test_check_mode_on_the_converged_pair_completes_and_changes_nothing():
    """A drift check (--check --diff) of the converged scenario: no failure, changed=0."""
    out, recap = drift_check(os.path.join(SCENARIO, "converge.yml"))
    assert all(r["changed"] == 0 for r in recap.values()), recap


def test_exactly_one_balancer_holds_the_address():
    restore()
    held = holders()
    assert len(held) == 1, held
    # and for a while (no flapping)
    for _ in range(10):
        time.sleep(0.3)
        assert holders() == held


@pytest.mark.parametrize("name", LBS)
def test_config_priorities_peers_and_nopreempt(name):
    conf = lb_exec(name, "cat /etc/keepalived/keepalived.conf").stdout
    other = [n for n in LBS if n != name][0]
    assert "priority %d\n" % PRIORITY[name] in conf
    assert "state BACKUP" in conf and "nopreempt" in conf
    assert "unicast_src_ip %s" % ADDRESS[name] in conf
    assert "unicast_peer {\n        %s\n" % ADDRESS[other] in conf
    assert "%s/24 dev eth0" % VIP in conf
    # the scenario runs VRRPv3 with half-second adverts (no VRRP authentication in v3)
    assert "vrrp_version 3" in conf and "advert_int 0.5\n" in conf and "auth_pass" not in conf
    assert lb_exec(name, "stat -c %a /etc/keepalived/keepalived.conf").stdout.strip() == "600"
    assert lb_exec(name, "keepalived --config-test -f /etc/keepalived/keepalived.conf").returncode == 0


def test_requests_through_the_address_are_sticky(host):
    cookie, backend = sticky_cookie(host)
    d = json.loads(host.check_output("vipprobe %s --count 20 --seconds 10 --cookie '%s'" % (URL, cookie)))
    assert d["failed"] == 0 and set(d["backends"]) == {backend}


def test_stopping_the_active_container_moves_the_address(host, report):
    restore()
    cookie, backend = sticky_cookie(host)
    stops = []

    def stop(name):
        # in the background: `docker stop` returns once the container is down,
        # the address should move before that
        t0 = time.time()
        stops.append(subprocess.Popen(["docker", "stop", name], stdout=subprocess.DEVNULL))
        return t0

    stopped, survivor = failover(host, report, "vip-stop", stop, cookie, backend)
    stops[0].wait(timeout=60)
    assert not running(stopped)
    # the recovered node comes back as BACKUP and does not take the address back
    docker("start", stopped)
    wait_ready(stopped)
    time.sleep(5)  # > master down interval (3 x advert_int + skew)
    assert holders() == [survivor]
    assert vrrp_state(stopped) == "BACKUP"


def test_killing_haproxy_moves_the_address(host, report):
    restore()
    cookie, backend = sticky_cookie(host)

    def kill_haproxy(name):
        # masked, so systemd's Restart=always cannot bring it back: a dead service
        # the container's clock is the host's: the time right before the kill
        out = lb_exec(name, "systemctl mask --runtime haproxy; date +%s.%N; systemctl kill -s KILL haproxy")
        return float(out.stdout.split()[-1])

    failed_node, survivor = failover(host, report, "vip-kill", kill_haproxy, cookie, backend)
    assert running(failed_node)
    assert vrrp_state(failed_node) == "FAULT"
    lb_exec(failed_node, "systemctl unmask --runtime haproxy; systemctl reset-failed haproxy; systemctl start haproxy")
    wait_ready(failed_node)
    time.sleep(5)
    assert holders() == [survivor]


# Raw IP sockets get a packet only after netfilter's input hook accepted it:
# what this listener counts is what the firewall let through.
RAW_LISTEN = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.settimeout(0.2)
end, seen = time.time() + float(sys.argv[1]), {}
while time.time() < end:
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    seen[addr[0]] = seen.get(addr[0], 0) + 1
print(json.dumps(seen))
"""
# A VRRPv2 advert for a router id nobody uses (200), so even if it got
# through it would not disturb the real instance.
RAW_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
pkt = bytes([0x21, 200, 1, 1, 1, 1, 0, 0]) + socket.inet_aton("172.29.21.200") + b"\0" * 8
for _ in range(int(sys.argv[2])):
    s.sendto(pkt, (sys.argv[1], 0))
    time.sleep(0.1)
"""


@pytest.mark.parametrize("name", LBS)
def test_firewall_accepts_vrrp_from_the_peer_only(name):
    other = [n for n in LBS if n != name][0]
    rules = lb_exec(name, "nft list chain inet webfarm input").stdout
    vrrp = [line.strip() for line in rules.splitlines() if "vrrp" in line]
    assert vrrp == ['ip protocol vrrp ip saddr %s accept comment "vrrp"' % ADDRESS[other]], vrrp
    peers = [line.strip() for line in rules.splitlines() if "haproxy-peers" in line]
    assert peers == ['ip saddr %s tcp dport 10000 accept comment "haproxy-peers"' % ADDRESS[other]], peers


def test_vrrp_from_a_non_peer_is_dropped_and_the_peer_gets_through(host):
    restore()
    master = holders()
    assert len(master) == 1, master
    backup = [n for n in LBS if n != master[0]][0]
    listen = subprocess.Popen(["docker", "exec", backup, "python3", "-c", RAW_LISTEN, "4"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    host.check_output("python3 -c %s %s 20" % (shlex.quote(RAW_SEND), ADDRESS[backup]))
    seen = json.loads(listen.communicate(timeout=30)[0])
    client = CLIENT
    assert seen.get(ADDRESS[master[0]], 0) >= 2, seen  # the master's adverts arrive
    assert client not in seen, seen  # 20 forged adverts from the client: none arrive
    assert holders() == master  # and nothing moved


def runtime(name, command):
    """One command on HAProxy's runtime API (admin socket) of a balancer."""
    py = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
          "s.sendall(sys.argv[1].encode() + b'\\n'); out = b''\n"
          "while True:\n    d = s.recv(65536)\n    if not d: break\n    out += d\n"
          "sys.stdout.write(out.decode())")
    res = docker("exec", name, "python3", "-c", py, command, timeout=20)
    assert res.returncode == 0, res.stderr
    return res.stdout


def table_entry(name, address):
    """The web_source stick-table line for ``address`` on balancer ``name`` ('' if none)."""
    for line in runtime(name, "show table web_source").splitlines():
        if "key=" in line and line.split("key=")[1].split()[0].endswith(address):
            return line
    return ""


def test_stick_table_entries_sync_between_balancers(host):
    restore()
    for name in LBS:  # the peers connection is up on both sides
        other = [n for n in LBS if n != name][0]
        deadline = time.time() + 20
        while time.time() < deadline:
            out = runtime(name, "show peers")
            if "id=%s(remote" % other in out and "status=ESTA" in out:
                break
            time.sleep(0.5)
        assert "id=%s(remote" % other in out and "status=ESTA" in out, out
    for name in LBS:
        runtime(name, "clear table web_source")
    holder = holders()[0]
    other = [n for n in LBS if n != holder][0]
    client = CLIENT
    assert table_entry(other, client) == ""
    served = host.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://%s:8080/', timeout=5)"
        ".headers['X-Served-By'])\"" % VIP).strip()
    assert served.startswith("keepalived-web"), served
    mine = table_entry(holder, client)
    assert mine, runtime(holder, "show table web_source")
    deadline = time.time() + 5
    synced = ""
    while time.time() < deadline and not synced:
        synced = table_entry(other, client)
        time.sleep(0.2)
    assert synced, "entry created on %s never reached %s" % (holder, other)
    sid = [w for w in mine.split() if w.startswith("server_id=")]
    assert sid and sid == [w for w in synced.split() if w.startswith("server_id=")], (mine, synced)


def playbook(name, *extra_inventories, **extra):
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    for inv in extra_inventories:
        cmd += ["-i", inv]
    cmd += [os.path.join(SCENARIO, name), "-e", json.dumps(extra)]
    res = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    res.output = res.stdout + res.stderr
    return res


@pytest.mark.parametrize("case,extra,inventories,expect", [
    ("address outside the peers' subnet", {"webfarm_vip": "10.99.0.100/24"}, [],
     ["webfarm_vip[0].address", "10.99.0.100/24", "subnet"]),
    ("two VRRP groups with the same router id",
     {"webfarm_vip": [{"address": "172.29.21.100/24", "virtual_router_id": 7},
                  {"address": "172.29.21.101/24", "virtual_router_id": 7}]}, [],
     ["webfarm_vip[1].virtual_router_id", "7", "no other VRRP group"]),
    ("a peer list with one node", {}, ["one_edge_peer.ini"],
     ["groups.edge (the VRRP peers)", "keepalived-lb1", "at least two hosts"]),
])
def test_bad_input_fails_before_touching_hosts(case, extra, inventories, expect):
    before = {n: lb_exec(n, "md5sum /etc/keepalived/keepalived.conf").stdout for n in LBS}
    res = playbook("bad_input.yml", *[os.path.join(SCENARIO, i) for i in inventories], **extra)
    print("\n".join(line for line in res.output.splitlines() if "BADINPUT" in line))
    assert res.returncode == 0, res.output[-3000:]
    msgs = [line for line in res.output.splitlines() if "BADINPUT " in line]
    assert msgs, res.output[-3000:]
    for m in msgs:
        for word in expect:
            assert word in m, (case, word, m)
    assert "NOT REJECTED" not in res.output
    assert {n: lb_exec(n, "md5sum /etc/keepalived/keepalived.conf").stdout for n in LBS} == before
