"""Grow and shrink the farm under load (issue 18), from the client container
through HAProxy's own TLS (https://172.29.25.20/, sticky cookie WEBFARM_LB,
database sessions).

Four sticky users browse the whole time (bounded lbprobe loops on the
client, one request every 0.1 s) while the tests, in order:

1. add grow-web3 (inventory change + site.yml): 0 failed requests, every
   user stays on its node, new users reach grow-web3 (the second run is
   asserted once, after 2, to keep the scenario short);
2. remove grow-web1, which holds sticky users, with playbooks/remove_node.yml
   (services stopped) and then site.yml without it: 0 failed requests, users
   of grow-web2 stay there, users of grow-web1 continue on other nodes with
   their session counter continuous, grow-web1 is gone from the balancer,
   a second run changes nothing;
3. take grow-web2 out of the inventory WITHOUT remove_node.yml and run
   site.yml: its early retire play on the balancer drains it before the
   firewall and the database grants withdraw what it needs: 0 failed requests.

The bad input cases (unknown name, not a web node, last active node) run
against the final farm: each fails naming the cause, nothing changes.
Timelines: .cache/grow/*.json, plots with `python3 bench/grow.py`.
"""

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from farm_helpers import (Users, derived_inventory, failed, merge, other, playbook, record,  # noqa: E402
                          served_after, servers, wait_up)

BASE = "https://172.29.25.20/"
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.abspath(os.path.join(SCENARIO, "..", ".."))
SITE = os.path.join(REPO, "playbooks", "site.yml")
REMOVE = os.path.join(REPO, "playbooks", "remove_node.yml")
RECORD_DIR = os.path.join(REPO, ".cache", "grow")
LB = "grow-lb1"
USERS_N = 4
SEGMENT = 540                      # seconds; lbprobe stops by itself after 590

testinfra_hosts = ["ansible://grow-client"]

STATE = {}


def farm(*web):
    """An inventory whose web tier is exactly `web` (grow-web3 included or not)."""
    web = list(web)
    spare = [h for h in ("grow-web1", "grow-web2", "grow-web3") if h not in web]
    return derived_inventory({"web": web, "web_linux": web, "grow_spare": spare,
                              "webfarm": [LB, "grow-db1"] + web}, "-".join(web))


def assert_unchanged(inventory):
    """A second site.yml run changes nothing on any host."""
    res = playbook(inventory, SITE)
    assert res.returncode == 0, res.output[-4000:]
    changed = {h: r["changed"] for h, r in res.recap.items() if r.get("changed")}
    assert res.recap and not changed, (changed, res.output[-3000:])


def users_on(host, bound=40):
    """USERS_N fresh sticky users, at least one on each of web1 and web2."""
    users = STATE.setdefault("users", Users(host, BASE, "X-Webfarm-Node", "WEBFARM_LB", "PHPSESSID"))
    for _ in range(bound):
        if len(users.users) >= USERS_N and {"grow-web1", "grow-web2"} <= {u["node"] for u in users.users}:
            return users
        users.new()
    raise AssertionError("no users on both web nodes: %s" % [u["node"] for u in users.users])


def under_load(host, phase, steps):
    """Run steps (name, callable returning a playbook result) in order while
    every user loops; returns the reports and the events (name -> time).
    A loop runs at most SEGMENT seconds; a longer phase restarts it with the
    cookies it reached (a gap of about a second)."""
    users = STATE["users"]
    events, results = {}, []

    def run():
        for name, step in steps:
            events[name + " start"] = time.time()
            res = step()
            events[name + " end"] = time.time()
            results.append(res)
            if res.returncode != 0:
                break

    users.start(phase + ".0", users.users)
    time.sleep(3)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    reports, segment = None, 0
    try:
        while True:
            worker.join(timeout=SEGMENT)
            if not worker.is_alive():
                break
            part = users.stop("%s.%d" % (phase, segment), users.users)
            reports = merge(reports, part) if reports else part
            segment += 1
            users.start("%s.%d" % (phase, segment), users.users)
        time.sleep(3)
    finally:
        part = users.stop("%s.%d" % (phase, segment), users.users)
        reports = merge(reports, part) if reports else part
    record(RECORD_DIR, phase, events, reports)
    for (name, _), res in zip(steps, results):
        assert res.returncode == 0, (name, res.output[-4000:])
    assert len(results) == len(steps)
    total = sum(r["total"] for r in reports)
    print("%s: %d requests from %d users, %d failed; %s" % (
        phase, total, len(reports), failed(reports),
        ", ".join("%s %.1f s" % (n[:-4], events[n] - events[n[:-4] + " start"]) for n in events if n.endswith(" end"))))
    assert total >= 30 * len(reports), [r["total"] for r in reports]
    # the loops ran the whole time
    assert all(r["timeline"][-1]["t"] > max(events.values()) for r in reports), "a loop ended before the playbooks"
    assert failed(reports) == 0, [(r["status"], r["errors"][:3]) for r in reports]
    return reports, events


def check_nodes(users, reports, removed=None, since=0):
    """Users of the kept nodes stayed on their node; users of the removed
    node moved to others, and none was served by it after `since`."""
    for u, r in zip(users.users, reports):
        if u["node"] == removed:
            assert set(r["served"]) - {removed}, r["served"]
            assert removed not in served_after(r, since), r["served"]
        else:
            assert set(r["served"]) == {u["node"]}, (u["node"], r["served"])


def check_counters(users):
    """Every user's session counter went on without a gap: the next answer
    counts every request the user made."""
    for u in users.users:
        body, node = users.session(u)
        assert body["count"] == u["count"], (u["node"], node, body["count"], u["count"])


# ------------------------------------------------------------ 1. add a node --

def test_add_a_node_under_load(host):
    lb = other(host, LB)
    wait_up(lb, ["grow-web1", "grow-web2"])
    assert "grow-web3" not in servers(lb)
    users = users_on(host)
    inv = farm("grow-web1", "grow-web2", "grow-web3")
    reports, _ = under_load(host, "grow_add_node", [("site.yml with grow-web3", lambda: playbook(inv, SITE))])
    check_nodes(users, reports)
    wait_up(lb, ["grow-web1", "grow-web2", "grow-web3"])
    check_counters(users)
    # new users reach the added node (roundrobin over three)
    fresh = [users.new()["node"] for _ in range(6)]
    users.users[USERS_N:] = []
    assert "grow-web3" in fresh, fresh
    STATE["inventory"] = inv
    STATE["passed"] = "add"


def needs(phase):
    """The tests build on each other: skip when the one before did not pass."""
    if STATE.get("passed") != phase:
        pytest.skip("needs %s to pass first" % phase)


def second_run(phase):
    """After `phase`, a second site.yml run changes nothing."""
    needs(phase)
    assert_unchanged(STATE["inventory"])
    STATE["passed"] = phase + " twice"


# ----------------------------------------------- 2. remove_node.yml, site.yml --

def test_remove_a_node_with_sticky_users_under_load(host):
    needs("add")
    lb = other(host, LB)
    users = STATE["users"]
    on_web1 = [u for u in users.users if u["node"] == "grow-web1"]
    assert on_web1, [u["node"] for u in users.users]
    before = STATE["inventory"]
    after = farm("grow-web2", "grow-web3")
    reports, events = under_load(host, "grow_remove_node", [
        ("remove_node.yml", lambda: playbook(before, REMOVE, webfarm_remove_node="grow-web1",
                                             webfarm_remove_node_timeout=5, webfarm_remove_node_stop=True)),
        ("site.yml without grow-web1", lambda: playbook(after, SITE)),
    ])
    # not served by grow-web1 once remove_node.yml has ended
    check_nodes(users, reports, removed="grow-web1", since=events["remove_node.yml end"])
    check_counters(users)
    assert "grow-web1" not in servers(lb)
    assert "grow-web1" not in lb.file("/etc/haproxy/haproxy.cfg").content_string
    web1 = other(host, "grow-web1")
    assert web1.run("systemctl is-active apache2").stdout.strip() != "active"
    STATE["inventory"] = after
    STATE["passed"] = "remove"


def test_removing_twice_changes_nothing(host):
    # `host` keeps this test in file order: pytest groups the tests of
    # testinfra's parametrized host fixture and ran a test without it last
    second_run("remove")


# ------------------------------------- 3. a node simply gone from the inventory --

def test_node_gone_from_the_inventory_is_drained_first(host):
    needs("remove twice")
    lb = other(host, LB)
    users = STATE["users"]
    for u in users.users:
        u["node"] = users.session(u)[1]
    gone = [u for u in users.users if u["node"] == "grow-web2"]
    assert gone, [u["node"] for u in users.users]
    inv = farm("grow-web3")
    res = {}

    def site():
        res["site"] = playbook(inv, SITE)
        return res["site"]
    reports, events = under_load(host, "grow_inventory_removal", [("site.yml without grow-web2", site)])
    assert "taking grow-web2 out of rotation" in res["site"].output, res["site"].output[-3000:]
    check_nodes(users, reports, removed="grow-web2", since=events["site.yml without grow-web2 end"])
    check_counters(users)
    assert list(servers(lb)) == ["grow-web3"], servers(lb)
    STATE["inventory"] = inv
    STATE["passed"] = "inventory removal"


# -------------------------------------------------------------- bad input --

@pytest.mark.parametrize("name,message", [
    ("grow-web9", "which is not a host of this inventory"),
    ("grow-db1", "which is not a web node"),
    ("grow-web3", "is the last active web node"),
])
def test_remove_node_refuses_bad_input_and_changes_nothing(host, name, message):
    needs("inventory removal")
    lb = other(host, LB)
    cfg = lb.file("/etc/haproxy/haproxy.cfg").md5sum
    before = servers(lb)
    res = playbook(STATE["inventory"], REMOVE, webfarm_remove_node=name)
    assert res.returncode != 0
    assert message in " ".join(res.output.split()), res.output[-3000:]
    assert not any(h != "localhost" for h in res.recap), res.recap
    assert lb.file("/etc/haproxy/haproxy.cfg").md5sum == cfg
    assert servers(lb) == before
