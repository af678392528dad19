"""Behaviour of colo.webfarm.firewall: the connection matrix of a whole farm.

The expected matrix comes from the topology model (firewall_flows) of this
scenario's inventory; every (source, destination, port) is then tried for
real from the source container. Listeners run on every port of interest on
every destination, so an allowed flow must connect and a blocked one must
time out (dropped, not refused).
"""

import json
import re
import ipaddress
import os
import subprocess
import sys
import warnings

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, ".collections"))
from ansible_collections.colo.webfarm.plugins.module_utils import topology as T  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import play_recap  # noqa: E402

RUNNER = AnsibleRunner(INVENTORY)
FARM = sorted(RUNNER.get_hosts("webfarm"))
ALL = sorted(RUNNER.get_hosts("all"))
VARS = {h: RUNNER.get_variables(h) for h in ALL}
GROUPS = {g: RUNNER.get_hosts(g) for g in T.GROUPS}
TOPO = T.build_topology(GROUPS, {h: VARS[h] for h in FARM})
FLOWS = T.firewall_flows(TOPO)
ADDR = {h: VARS[h]["webfarm_address"] for h in ALL}
# every TCP port some flow opens, plus two that nothing should open
PORTS = sorted({f["port"] for fl in FLOWS.values() for f in fl if f["proto"] == "tcp"} | {6379, 8080})
LISTEN_SECONDS = 300

testinfra_hosts = ["ansible://firewall-outsider"]


def _host(name):
    return testinfra.get_host("ansible://%s?ansible_inventory=%s" % (name, INVENTORY))


def allowed(src, dst, port):
    ip = ipaddress.ip_address(ADDR[src])
    return any(f["proto"] == "tcp" and f["port"] == port
               and any(ip in ipaddress.ip_network(s) for s in f["sources"])
               for f in FLOWS[dst])


@pytest.fixture(scope="module")
def listeners():
    for dst in FARM:
        h = _host(dst)
        h.run("systemctl stop fw-listen.service 2>/dev/null; systemctl reset-failed fw-listen.service 2>/dev/null")
        h.check_output("systemd-run --unit fw-listen --collect -p RuntimeMaxSec=%d "
                       "/usr/local/bin/fw_listen.py %d %s" % (
                           LISTEN_SECONDS + 30, LISTEN_SECONDS, " ".join(str(p) for p in PORTS)))
    for dst in FARM:   # wait (bounded) until every port listens
        h = _host(dst)
        assert h.run("for i in $(seq 50); do [ $(ss -Hltn | wc -l) -ge %d ] && exit 0; sleep 0.2; done; "
                     "exit 1" % len(PORTS)).rc == 0, dst
    yield
    for dst in FARM:
        _host(dst).run("systemctl stop fw-listen.service")


@pytest.fixture(scope="module")
def matrix(listeners):
    rows = []
    for src in ALL:
        targets = ["%s:%d" % (ADDR[dst], port) for dst in FARM if dst != src for port in PORTS]
        out = _host(src).check_output("/usr/local/bin/fw_probe.py 3 " + " ".join(targets))
        got = json.loads(out)
        for dst in FARM:
            if dst == src:
                continue
            for port in PORTS:
                rows.append((src, dst, port, allowed(src, dst, port), got["%s:%d" % (ADDR[dst], port)]))
    return rows


def test_connection_matrix_matches_the_topology(matrix):
    mismatches = [r for r in matrix if (r[4] == "open") != r[3] or r[4] not in ("open", "timeout")]
    n_allowed = sum(1 for r in matrix if r[3])
    summary = "firewall matrix: %d (source, destination, port) triples, %d allowed, %d blocked, %d mismatches" % (
        len(matrix), n_allowed, len(matrix) - n_allowed, len(mismatches))
    warnings.warn(summary)  # shown in pytest's summary, so molecule's log has the figures
    with open(os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "firewall-matrix.txt"), "w") as f:
        f.write(summary + "\n")
        for r in matrix:
            f.write("%s -> %s:%d expected %s got %s\n" % (r[0], r[1], r[2], "allow" if r[3] else "block", r[4]))
    assert not mismatches, summary + "\n" + "\n".join(
        "%s -> %s:%d expected %s, got %s" % (r[0], r[1], r[2], "allow" if r[3] else "block", r[4]) for r in mismatches)
    # the matrix is not trivial: both outcomes occur
    assert 0 < n_allowed < len(matrix)


@pytest.mark.parametrize("src,dst,port,expect", [
    # independent of the model: what a reader of the topology expects
    ("firewall-outsider", "firewall-edge1", 443, "open"),
    ("firewall-outsider", "firewall-edge1", 80, "open"),
    ("firewall-outsider", "firewall-edge1", 22, "timeout"),
    ("firewall-outsider", "firewall-lb1", 80, "timeout"),
    ("firewall-edge1", "firewall-lb1", 80, "open"),
    ("firewall-lb1", "firewall-web1", 80, "open"),
    ("firewall-edge1", "firewall-web1", 80, "timeout"),
    ("firewall-web1", "firewall-db1", 3306, "open"),
    ("firewall-db2", "firewall-db1", 3306, "open"),
    ("firewall-outsider", "firewall-db1", 3306, "timeout"),
    ("firewall-web1", "firewall-nfs1", 2049, "open"),
    ("firewall-db1", "firewall-nfs1", 2049, "timeout"),
    ("firewall-admin", "firewall-db2", 22, "open"),
    ("firewall-admin", "firewall-lb1", 8404, "open"),
    ("firewall-outsider", "firewall-lb1", 8404, "timeout"),
    ("firewall-admin", "firewall-web1", 9100, "open"),      # group extra flow
    ("firewall-lb1", "firewall-db1", 9100, "open"),         # host extra flow, group source
    ("firewall-admin", "firewall-db1", 9100, "timeout"),
    ("firewall-admin", "firewall-web1", 8080, "timeout"),
])
def test_spot_checks(matrix, src, dst, port, expect):
    got = {(r[0], r[1], r[2]): r[4] for r in matrix}
    assert got[(src, dst, port)] == expect


@pytest.mark.parametrize("name", FARM)
def test_ruleset_loaded_and_managed(name):
    h = _host(name)
    ruleset = h.check_output("nft list table inet webfarm")
    assert "policy drop" in ruleset
    assert "ct state established,related accept" in ruleset
    assert "log prefix" in ruleset and "limit rate 10/minute" in ruleset
    confirmed = h.file("/etc/webfarm/firewall/ruleset.nft").content_string
    assert confirmed.splitlines()[1].startswith("#") and "Ansible managed" in confirmed
    # the confirmed ruleset is the candidate, and what the kernel has is what the role recorded
    assert h.file("/etc/webfarm/firewall/candidate.nft").content_string == confirmed
    assert h.check_output("nft -s list table inet webfarm") + "\n" == \
        h.file("/etc/webfarm/firewall/loaded.nft").content_string
    # the role's own boot unit; the distribution's nftables set-up is left alone
    assert h.service("webfarm-firewall").is_enabled
    assert "webfarm" not in h.file("/etc/nftables.conf").content_string
    assert not h.service("nftables").is_enabled
    # the rollback timer was disarmed after the confirmation
    assert h.run("systemctl is-active webfarm-firewall-rollback.timer").stdout.strip() != "active"


def test_drops_are_counted(matrix):
    # the blocked part of the matrix reached the default-drop rule
    out = _host("firewall-db1").check_output("nft list chain inet webfarm input")
    line = [x for x in out.splitlines() if "default drop" in x][0]
    assert int(line.split("packets")[1].split()[0]) > 0, line


@pytest.mark.parametrize("flow,needle", [
    ({"name": "bad-port", "port": 70000, "sources": ["10.0.0.0/8"]}, "webfarm_extra_flows[0].port"),
    ({"name": "bad-source", "port": 9200, "sources": ["10.0.0.300/8"]}, "webfarm_extra_flows[0].sources"),
])
def test_bad_flow_fails_before_anything_changes(flow, needle):
    before = {h: _host(h).file("/etc/webfarm/firewall/ruleset.nft").sha256sum for h in FARM}
    rules_before = _host("firewall-web1").check_output("nft list table inet webfarm | grep -v packets")
    extra = json.dumps({"webfarm_extra_flows": [flow]})
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, "-e", extra,
         os.path.join(os.path.dirname(__file__), "..", "bad_input.yml")],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert needle in out, out[-3000:]
    assert "host 'firewall-" in out
    assert "Install nftables" not in out
    assert before == {h: _host(h).file("/etc/webfarm/firewall/ruleset.nft").sha256sum for h in FARM}
    assert rules_before == _host("firewall-web1").check_output("nft list table inet webfarm | grep -v packets")


def _converge(*args):
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, os.path.join(os.path.dirname(__file__), "..", "converge.yml")]
        + list(args), capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert run.returncode == 0, run.stdout[-3000:]
    return run.stdout, {h: r["changed"] for h, r in play_recap(run.stdout).items()}


def test_a_rule_added_by_hand_is_drift_check_mode_shows_it_and_a_run_repairs_it():
    web1 = _host("firewall-web1")
    web1.check_output("nft add rule inet webfarm input tcp dport 4444 accept comment hand-made")
    try:
        out, changed = _converge("--check", "--diff")
        assert changed["firewall-web1"] > 0
        assert all(c == 0 for h, c in changed.items() if h != "firewall-web1"), changed
        assert "the loaded table differs from what the role loaded (drift)" in out
        assert re.search(r'^\+\s+tcp dport 4444 accept comment "hand-made"$', out, re.M), out[-3000:]  # the drift's diff
        assert "hand-made" in web1.check_output("nft list chain inet webfarm input")  # check mode changed nothing
        out, changed = _converge()
        assert changed["firewall-web1"] > 0
        assert "hand-made" not in web1.check_output("nft list chain inet webfarm input")
        out, changed = _converge("--check", "--diff")
        assert all(c == 0 for c in changed.values()), changed
    finally:
        web1.run("nft -f /etc/webfarm/firewall/ruleset.nft")
