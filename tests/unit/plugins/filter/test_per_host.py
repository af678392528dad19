"""The per-host accessors (firewall_flows(host), monitoring_host, farm_host)
give exactly the part of the farm-wide result each host reads, and a web
node's part does not depend on the size of the web tier (what keeps a run's
model cost linear in hosts: bench/filters.py --ansible)."""

from __future__ import annotations

import pytest

from ansible_collections.colo.webfarm.plugins.filter import topology as T
from ansible_collections.colo.webfarm.plugins.module_utils import topology as core


def farm(n_web=4, windows=1, terminator=None, monitoring=True, nfs_v3=False, peers=True, **extra):
    web = ["web%d" % i for i in range(1, n_web + 1)]
    win = ["win%d" % i for i in range(1, windows + 1)]
    groups = {"edge": ["edge1", "edge2"], "balancers": ["lb1", "lb2"] if peers else ["lb1"],
              "web_linux": web, "web_windows": win, "web": web + win,
              "db_primary": ["db1"], "db_replicas": ["db2"], "db": ["db1", "db2"], "nfs": ["nfs1"],
              "cache": ["cache1"], "monitoring": ["mon1"] if monitoring else []}
    names = sorted({h for g in groups.values() for h in g})
    hostvars = {h: {"webfarm_address": "10.0.%d.%d" % divmod(i + 10, 250), "webfarm_admin_networks": ["10.9.0.0/24"]}
                for i, h in enumerate(names)}
    for hv in hostvars.values():
        hv.update(extra)
        if terminator:
            hv["webfarm_tls_terminator"] = terminator
        if nfs_v3:
            hv["webfarm_nfs_v3"] = True
    hostvars["web1"]["webfarm_extra_flows"] = [{"name": "debug", "port": 8080, "sources": ["balancers"]}]
    return T.topology(groups, hostvars)


FARMS = {
    "stunnel edge, monitoring": farm(),
    "haproxy terminates TLS": farm(terminator="haproxy"),
    "no monitoring, one balancer": farm(monitoring=False, peers=False),
    "nfs v3": farm(nfs_v3=True, windows=0),
}


@pytest.mark.parametrize("name", sorted(FARMS))
def test_one_hosts_flows_are_its_part_of_the_farms(name):
    t = FARMS[name]
    every = T.firewall_flows(t)
    assert set(every) == set(t["hosts"])
    for host in t["hosts"]:
        assert T.firewall_flows(t, host) == every[host], host
    assert T.firewall_flows(t, "not-in-the-farm") == []


@pytest.mark.parametrize("name", sorted(FARMS))
def test_monitoring_host_is_the_hosts_part_of_the_targets(name):
    t = FARMS[name]
    targets = T.monitoring_targets(t)
    for host in t["hosts"]:
        part = T.monitoring_host(t, host)
        assert part["enabled"] is targets["enabled"]
        assert part["jobs"] == targets["hosts"].get(host, []), host
        assert part["web_state"] == targets["web_state"].get(host), host
    assert T.monitoring_host(t, "not-in-the-farm")["jobs"] == []


def test_farm_host_is_the_hosts_entry():
    t = FARMS["stunnel edge, monitoring"]
    for host, entry in t["hosts"].items():
        assert T.farm_host(t, host) == entry
    assert T.farm_host(t, "not-in-the-farm") == {}
    with pytest.raises(Exception, match="topology"):
        T.farm_host({"hosts": {}}, "web1")


class _Untouchable(list):
    """A group list that fails when read: what must not be read."""

    def __iter__(self):
        raise AssertionError("the web tier was read")

    def __len__(self):
        raise AssertionError("the web tier was read")


def test_a_web_nodes_part_does_not_read_the_web_tier():
    t = farm(n_web=50)
    expected_flows = T.firewall_flows(t, "web7")
    expected_part = T.monitoring_host(t, "web7")
    hosts = dict(t["hosts"])
    t = dict(t, groups=dict(t["groups"], web=_Untouchable(t["groups"]["web"]),
                            web_linux=_Untouchable(t["groups"]["web_linux"])))
    assert core.firewall_flows(t, "web7") == expected_flows
    assert core.monitoring_host(t, "web7") == expected_part
    assert core.farm_host(t, "web7") == hosts["web7"]
    # the database primary's flows do list every web node
    with pytest.raises(AssertionError, match="web tier"):
        core.firewall_flows(t, "db1")
