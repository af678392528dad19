"""Unit tests for the VRRP derivation (colo.webfarm.vrrp_plan)."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.filter import topology as T
from ansible_collections.colo.webfarm.plugins.module_utils import topology as core


def farm(edge=("edge2", "edge1"), balancers=("lb1", "lb2"), terminator="stunnel", **settings):
    groups = {"edge": list(edge), "balancers": list(balancers), "web": ["web1", "web2"]}
    addresses = {"edge1": "10.0.0.2", "edge2": "10.0.0.4", "edge10": "10.0.0.5", "lb1": "10.0.0.3",
                 "lb2": "10.0.0.6", "lb3": "10.0.1.7", "web1": "10.0.0.11", "web2": "10.0.0.12"}
    hostvars = {h: dict(settings, webfarm_address=a, webfarm_tls_terminator=terminator) for h, a in addresses.items()}
    return T.topology(groups, hostvars)


def test_priority_function():
    assert [core.vrrp_priority(i, 3) for i in range(3)] == [200, 190, 180]
    assert core.vrrp_priority(19, 20) == 10
    for bad in [(2, 2), (-1, 2), (0, 1), (0, 21), (True, 2)]:
        with pytest.raises(core.TopologyError):
            core.vrrp_priority(*bad)


def test_plan_edge_with_stunnel_in_natural_order():
    plan = T.vrrp_plan(farm(edge=("edge10", "edge2", "edge1")), "10.0.0.100/24")
    assert plan["group"] == "edge"
    assert [(p["name"], p["priority"]) for p in plan["peers"]] == [("edge1", 200), ("edge2", 190), ("edge10", 180)]
    assert plan["instances"] == [{"name": "web", "address": "10.0.0.100", "prefix": 24, "cidr": "10.0.0.100/24",
                                  "network": "10.0.0.0/24", "virtual_router_id": 51}]
    assert plan["hosts"]["edge2"]["unicast_peers"] == ["10.0.0.2", "10.0.0.5"]
    assert plan["hosts"]["edge2"]["address"] == "10.0.0.4"
    assert plan["hosts"]["edge1"]["flows"] == [
        {"name": "vrrp", "proto": "vrrp", "port": None, "sources": ["10.0.0.4/32", "10.0.0.5/32"]}]
    assert set(plan["hosts"]) == {"edge1", "edge2", "edge10"}


@pytest.mark.parametrize("kwargs", [{"terminator": "haproxy"}, {"edge": ()}])
def test_plan_balancers_when_tls_on_haproxy_or_no_edge(kwargs):
    plan = T.vrrp_plan(farm(**kwargs), "10.0.0.100/24")
    assert plan["group"] == "balancers"
    assert [p["name"] for p in plan["peers"]] == ["lb1", "lb2"]


def test_plan_priorities_independent_of_inventory_order():
    a = T.vrrp_plan(farm(edge=("edge1", "edge2")), "10.0.0.100/24")
    b = T.vrrp_plan(farm(edge=("edge2", "edge1")), "10.0.0.100/24")
    assert a == b


def test_plan_several_vips_and_router_ids():
    vips = ["10.0.0.100/24", {"name": "api", "address": "10.0.0.101/24", "virtual_router_id": 7},
            {"address": "10.0.0.102/24"}]
    plan = T.vrrp_plan(farm(), vips, "", 60)
    assert [(i["name"], i["virtual_router_id"]) for i in plan["instances"]] == [("web", 60), ("api", 7), ("vip2", 62)]


def test_plan_explicit_group():
    assert T.vrrp_plan(farm(), "10.0.0.100/24", "balancers")["group"] == "balancers"


@pytest.mark.parametrize("vips,var", [
    ("10.9.0.100/24", "webfarm_vip[0].address"),              # outside the peers' subnet
    ("10.0.0.100", "webfarm_vip[0].address"),                 # no prefix
    ("10.0.0.100/31", "webfarm_vip[0].address"),
    ("10.0.0.0/24", "webfarm_vip[0].address"),                # network address
    ("2001:db8::10/64", "webfarm_vip[0].address"),            # IPv6
    ("10.0.0.3/24", "webfarm_vip[0].address"),                # lb1's own address
    ("not-an-ip/24", "webfarm_vip[0].address"),
    ([], "webfarm_vip"),
    (42, "webfarm_vip"),
    ([{"address": "10.0.0.100/24", "virtual_router_id": 9},
      {"address": "10.0.0.101/24", "virtual_router_id": 9}], "webfarm_vip[1].virtual_router_id"),
    ([{"address": "10.0.0.100/24", "virtual_router_id": 256}], "webfarm_vip[0].virtual_router_id"),
    (["10.0.0.100/24", "10.0.0.100/24"], "webfarm_vip[1].address"),
    ([{"name": "a b", "address": "10.0.0.100/24"}], "webfarm_vip[0].name"),
    ([{"name": "x", "address": "10.0.0.100/24"}, {"name": "x", "address": "10.0.0.101/24"}], "webfarm_vip[1].name"),
])
def test_plan_bad_vips_name_the_variable(vips, var):
    with pytest.raises(AnsibleFilterError) as exc:
        T.vrrp_plan(farm(), vips)
    assert "colo.webfarm.vrrp_plan" in str(exc.value)
    assert "variable '%s'" % var in str(exc.value)


def test_plan_vip_outside_subnet_names_the_peer():
    # lb3 sits in 10.0.1.0/24: the address cannot move to it
    with pytest.raises(AnsibleFilterError, match=r"host 'lb3'.*webfarm_vip\[0\]\.address.*10\.0\.1\.7"):
        T.vrrp_plan(farm(edge=(), balancers=("lb1", "lb3")), "10.0.0.100/24")


def test_plan_one_peer_fails():
    with pytest.raises(AnsibleFilterError, match=r"groups\.edge \(the VRRP peers\).*\['edge1'\].*at least two"):
        T.vrrp_plan(farm(edge=("edge1",)), "10.0.0.100/24")


def test_plan_bad_group_and_base():
    with pytest.raises(AnsibleFilterError, match="webfarm_vrrp_group"):
        T.vrrp_plan(farm(), "10.0.0.100/24", "web")
    with pytest.raises(AnsibleFilterError, match="webfarm_vrrp_router_id_base"):
        T.vrrp_plan(farm(), "10.0.0.100/24", "", 0)
    with pytest.raises(AnsibleFilterError, match="topology"):
        T.vrrp_plan({}, "10.0.0.100/24")


# ------------------------------------------------ the VRRP farm settings --

def test_vrrp_settings_default_to_no_address_automatic_group_and_51():
    settings = farm()["settings"]
    assert (settings["vip"], settings["vrrp_group"], settings["vrrp_router_id_base"]) == ("", "", 51)


def test_plan_reads_the_farm_settings_when_called_without_arguments():
    t = farm(webfarm_vip=["10.0.0.100/24", {"name": "api", "address": "10.0.0.101/24"}],
             webfarm_vrrp_group="balancers", webfarm_vrrp_router_id_base=70)
    plan = T.vrrp_plan(t)
    assert plan["group"] == "balancers"
    assert [(i["name"], i["virtual_router_id"]) for i in plan["instances"]] == [("web", 70), ("api", 71)]
    # an explicit argument still wins (the filter's documented options)
    assert T.vrrp_plan(t, "10.0.0.100/24", "edge", 51)["group"] == "edge"
    assert T.vrrp_plan(t) == T.vrrp_plan(t, t["settings"]["vip"], "balancers", 70)


@pytest.mark.parametrize("var,value,expect", [
    ("webfarm_vrrp_group", "web", "one of edge, balancers, or empty"),
    ("webfarm_vrrp_router_id_base", 0, "a whole number from 1 to 255"),
    ("webfarm_vrrp_router_id_base", "x", "a whole number from 1 to 255"),
    ("webfarm_vip", 10, "an address with its prefix"),
    ("webfarm_vip", [], "an address with its prefix"),
])
def test_bad_vrrp_settings_name_host_variable_and_value(var, value, expect):
    with pytest.raises(AnsibleFilterError) as e:
        farm(**{var: value})
    assert "variable '%s' is %r" % (var, value) in str(e.value) and expect in str(e.value), str(e.value)
    assert "host '" in str(e.value)


def test_a_vrrp_setting_differing_between_hosts_is_refused():
    groups = {"edge": ["edge1", "edge2"], "balancers": ["lb1"], "web": ["web1"]}
    hostvars = {"edge1": {"webfarm_address": "10.0.0.2", "webfarm_vip": "10.0.0.100/24"},
                "edge2": {"webfarm_address": "10.0.0.4", "webfarm_vip": "10.0.0.101/24"},
                "lb1": {"webfarm_address": "10.0.0.3"}, "web1": {"webfarm_address": "10.0.0.11"}}
    with pytest.raises(AnsibleFilterError, match="farm setting 'webfarm_vip' is '10.0.0.100/24' on host 'edge1' "
                                                 "but '10.0.0.101/24' on host 'edge2'"):
        T.topology(groups, hostvars)


@pytest.mark.parametrize("old,new", [
    ("keepalived_vip", "webfarm_vip"), ("firewall_vrrp_vip", "webfarm_vip"),
    ("keepalived_group", "webfarm_vrrp_group"), ("firewall_vrrp_group", "webfarm_vrrp_group"),
    ("keepalived_router_id_base", "webfarm_vrrp_router_id_base"),
])
def test_the_old_role_variables_are_refused_naming_the_farm_setting(old, new):
    groups = {"edge": ["edge1", "edge2"], "web": ["web1"]}
    hostvars = {"edge1": {"webfarm_address": "10.0.0.2", old: "x"}, "edge2": {"webfarm_address": "10.0.0.4"},
                "web1": {"webfarm_address": "10.0.0.11"}}
    with pytest.raises(AnsibleFilterError, match="host 'edge1': variable '%s'.*replaced by the farm setting '%s'"
                       % (old, new)):
        T.topology(groups, hostvars)


def test_plan_does_not_mutate_inputs():
    t = farm()
    vips = [{"name": "web", "address": "10.0.0.100/24"}]
    before = copy.deepcopy((t, vips))
    T.vrrp_plan(t, vips)
    assert (t, vips) == before


def test_filter_registered():
    assert T.FilterModule().filters()["vrrp_plan"] is T.vrrp_plan


# ------------------------------------------------------------ haproxy peers --

def _lb_farm(balancers, extra=None):
    groups = {"balancers": [b for b, _ in balancers], "web": ["web1"]}
    hostvars = {"web1": {"webfarm_address": "10.0.0.11"}}
    for i, (name, kind) in enumerate(balancers):
        hostvars[name] = {"webfarm_address": "10.0.0.%d" % (20 + i), "webfarm_balancer": kind}
        hostvars[name].update((extra or {}).get(name, {}))
    return T.topology(groups, hostvars)


def test_haproxy_peers_two_or_more_in_natural_order():
    topo = _lb_farm([("lb10", "haproxy"), ("lb2", "haproxy"), ("lb3", "apache")])
    assert T.haproxy_peers(topo) == [{"name": "lb2", "address": "10.0.0.21", "port": 10000},
                                     {"name": "lb10", "address": "10.0.0.20", "port": 10000}]
    flows = core.firewall_flows(topo)
    assert {"name": "haproxy-peers", "proto": "tcp", "port": 10000, "sources": ["10.0.0.20/32"]} in flows["lb2"]
    assert {"name": "haproxy-peers", "proto": "tcp", "port": 10000, "sources": ["10.0.0.21/32"]} in flows["lb10"]
    assert not [f for f in flows["lb3"] if f["name"] == "haproxy-peers"]  # Apache has no peers


def test_haproxy_peers_none_with_one_haproxy_balancer():
    for balancers in ([("lb1", "haproxy")], [("lb1", "haproxy"), ("lb2", "apache")]):
        topo = _lb_farm(balancers)
        assert T.haproxy_peers(topo) == []
        assert not [f for flows in core.firewall_flows(topo).values() for f in flows if f["name"] == "haproxy-peers"]


def test_haproxy_peers_port_is_the_farm_setting_and_checked():
    topo = _lb_farm([("lb1", "haproxy"), ("lb2", "haproxy")],
                    {"lb1": {"webfarm_haproxy_peers_port": 10001}, "lb2": {"webfarm_haproxy_peers_port": 10001}})
    assert [p["port"] for p in T.haproxy_peers(topo)] == [10001, 10001]
    assert {"name": "haproxy-peers", "proto": "tcp", "port": 10001, "sources": ["10.0.0.20/32"]} in \
        core.firewall_flows(topo)["lb2"]
    with pytest.raises(AnsibleFilterError) as err:
        _lb_farm([("lb1", "haproxy"), ("lb2", "haproxy")], {"lb1": {"webfarm_haproxy_peers_port": 70000}})
    assert "host 'lb1'" in str(err.value) and "webfarm_haproxy_peers_port" in str(err.value)
    # The old per-host role variable is refused, naming its replacement.
    with pytest.raises(AnsibleFilterError) as err:
        _lb_farm([("lb1", "haproxy"), ("lb2", "haproxy")], {"lb2": {"haproxy_peers_port": 10001}})
    assert "host 'lb2'" in str(err.value) and "'webfarm_haproxy_peers_port'" in str(err.value)


def test_haproxy_peers_filter_registered():
    assert T.FilterModule().filters()["haproxy_peers"] is T.haproxy_peers
