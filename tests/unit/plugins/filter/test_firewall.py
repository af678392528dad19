"""Unit tests for the colo.webfarm.nft_rules filter."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.filter import topology as T


def test_sources_split_by_family_and_sorted():
    rules = T.nft_rules([{"name": "mysql", "proto": "tcp", "port": 3306,
                          "sources": ["10.0.0.12/32", "2001:db8::1/128", "10.0.0.11/32"]}], "db1")
    assert rules == [
        {"comment": "mysql", "match": "ip saddr { 10.0.0.11/32, 10.0.0.12/32 } tcp dport 3306"},
        {"comment": "mysql", "match": "ip6 saddr { 2001:db8::1/128 } tcp dport 3306"},
    ]


def test_anywhere_needs_no_source_match():
    assert T.nft_rules([{"name": "https", "proto": "tcp", "port": 443,
                         "sources": ["0.0.0.0/0", "::/0"]}]) == [{"comment": "https", "match": "tcp dport 443"}]
    assert T.nft_rules([{"name": "dns", "proto": "udp", "port": 53, "sources": ["0.0.0.0/0"]}]) == [
        {"comment": "dns", "match": "meta nfproto ipv4 udp dport 53"}]


def test_controller_first():
    rules = T.nft_rules([], "web1", {"address": "192.0.2.9", "port": 2222})
    assert rules == [{"comment": "ansible controller", "match": "ip saddr 192.0.2.9 tcp dport 2222"}]


@pytest.mark.parametrize("flow,needle", [
    ({"name": "x", "proto": "tcp", "port": 70000, "sources": ["10.0.0.0/8"]}, "flows[0].port"),
    ({"name": "x", "proto": "tcp", "port": 0, "sources": ["10.0.0.0/8"]}, "flows[0].port"),
    ({"name": "x", "proto": "sctp", "port": 80, "sources": ["10.0.0.0/8"]}, "flows[0].proto"),
    ({"name": "x", "proto": "tcp", "port": 80, "sources": ["not-a-net"]}, "flows[0].sources"),
    ({"name": "x", "proto": "tcp", "port": 80, "sources": "10.0.0.0/8"}, "flows[0].sources"),
])
def test_bad_flow_names_host_and_variable(flow, needle):
    with pytest.raises(AnsibleFilterError) as err:
        T.nft_rules([flow], "db1")
    assert "host 'db1'" in str(err.value)
    assert needle in str(err.value)


def test_vrrp_flow_is_peer_only_and_portless():
    rules = T.nft_rules([{"name": "vrrp", "proto": "vrrp", "port": None,
                          "sources": ["10.0.0.12/32", "10.0.0.11/32"]}], "edge1")
    assert rules == [{"comment": "vrrp", "match": "ip protocol vrrp ip saddr { 10.0.0.11/32, 10.0.0.12/32 }"}]


def test_vrrp_flow_ipv6_peer_and_no_port_needed():
    rules = T.nft_rules([{"name": "vrrp", "proto": "vrrp", "sources": ["2001:db8::2/128"]}], "edge1")
    assert rules == [{"comment": "vrrp", "match": "ip6 nexthdr vrrp ip6 saddr { 2001:db8::2/128 }"}]


def test_vrrp_flow_from_vrrp_plan_renders_for_each_peer():
    from ansible_collections.colo.webfarm.plugins.module_utils import topology as model
    groups = {"edge": ["edge1", "edge2"], "balancers": ["lb1"], "web": ["web1"]}
    hostvars = {"edge1": {"webfarm_address": "10.0.0.2"}, "edge2": {"webfarm_address": "10.0.0.3"},
                "lb1": {"webfarm_address": "10.0.0.4"}, "web1": {"webfarm_address": "10.0.0.11"}}
    plan = model.vrrp_plan(model.build_topology(groups, hostvars), "10.0.0.100/24")
    assert T.nft_rules(plan["hosts"]["edge1"]["flows"], "edge1") == [
        {"comment": "vrrp", "match": "ip protocol vrrp ip saddr { 10.0.0.3/32 }"}]
    assert T.nft_rules(plan["hosts"]["edge2"]["flows"], "edge2") == [
        {"comment": "vrrp", "match": "ip protocol vrrp ip saddr { 10.0.0.2/32 }"}]


def test_vrrp_flow_bad_sources_name_the_variable():
    with pytest.raises(AnsibleFilterError) as err:
        T.nft_rules([{"name": "vrrp", "proto": "vrrp", "sources": ["peer"]}], "edge1")
    assert "host 'edge1'" in str(err.value) and "flows[0].sources" in str(err.value)
