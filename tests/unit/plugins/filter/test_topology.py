"""Unit and property tests for the colo.webfarm topology filters."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.colo.webfarm.plugins.filter import topology as T
from ansible_collections.colo.webfarm.plugins.module_utils import topology as core


def lab(**overrides):
    """The lab topology as Ansible would hand it to the filters."""
    groups = {
        "edge": ["edge1"],
        "balancers": ["lb1"],
        "web_linux": ["web1", "web2", "web3"],
        "web_windows": [],
        "web": ["web1", "web2", "web3"],
        "db_primary": ["db1"],
        "db_replicas": ["db2"],
        "db": ["db1", "db2"],
        "nfs": ["nfs1"],
    }
    addresses = {"edge1": "10.0.0.2", "lb1": "10.0.0.3", "web1": "10.0.0.11", "web2": "10.0.0.12",
                 "web3": "10.0.0.13", "db1": "10.0.0.21", "db2": "10.0.0.22", "nfs1": "10.0.0.31"}
    hostvars = {h: {"webfarm_address": a, "webfarm_admin_networks": ["10.0.9.0/24"]}
                for h, a in addresses.items()}
    for key, value in overrides.items():
        host, var = key.split("__", 1)
        hostvars[host][var] = value
    return groups, hostvars


def topo(**overrides):
    groups, hostvars = lab(**overrides)
    return T.topology(groups, hostvars)


def test_lab_topology_shape():
    t = topo()
    assert t["groups"]["web"] == ["web1", "web2", "web3"]
    assert t["hosts"]["web1"]["route"] == "web1"
    assert t["hosts"]["db1"]["server_id"] != t["hosts"]["db2"]["server_id"]
    assert t["hosts"]["web2"]["os"] == "linux"
    assert t["nfs_v3"] is False


def test_members_haproxy_and_apache():
    t = topo(web2__webfarm_weight=50, web3__webfarm_backup=True, web1__webfarm_route="alpha")
    m = T.members(t, "haproxy")
    assert [x["name"] for x in m] == ["web1", "web2", "web3"]
    assert m[0] == {"name": "web1", "address": "10.0.0.11", "port": 80, "route": "alpha",
                    "weight": 100, "lb_weight": 100, "backup": False, "cookie": "alpha", "os": "linux"}
    assert m[1]["lb_weight"] == 50
    assert m[2]["backup"] is True
    a = T.members(t, "apache")
    assert a[0]["cookie"] == ".alpha"


def test_members_sorted_naturally():
    groups = {"web": ["web10", "web2", "web1"]}
    hv = {h: {"webfarm_address": "10.1.0.%d" % i} for i, h in enumerate(["web10", "web2", "web1"], 1)}
    assert [m["name"] for m in T.members(T.topology(groups, hv))] == ["web1", "web2", "web10"]


def test_address_defaults_to_ansible_host():
    groups = {"web": ["w"]}
    assert T.topology(groups, {"w": {"ansible_host": "192.0.2.5"}})["hosts"]["w"]["address"] == "192.0.2.5"


@pytest.mark.parametrize("name,expected", [
    ("web1", "web1"),
    ("web1.example.com", "web1-example-com"),
    ("a;b,c~d|e", "a-b-c-d-e"),
    ("x" * 63, "x" * 63),
])
def test_route_id_derivation(name, expected):
    assert T.route_id(name) == expected


def test_route_id_long_name_is_short_and_distinct():
    a, b = T.route_id("n" * 80 + "a"), T.route_id("n" * 80 + "b")
    assert len(a) < 64 and len(b) < 64 and a != b


@pytest.mark.parametrize("route", ["a.b", "a;b", "a,b", "a~b", "a|b", "", "x" * 64, 7])
def test_route_id_rejects_bad_explicit_route(route):
    with pytest.raises(AnsibleFilterError, match="webfarm_route"):
        T.route_id("web1", route)


@pytest.mark.parametrize("mode,value", [
    ("haproxy", "web1"), ("apache", ".web1"), ("apache_legacy", "balancer.web1")])
def test_cookie_value_and_parse_back(mode, value):
    assert T.cookie_value("web1", mode) == value
    assert T.cookie_route(value, mode) == "web1"


def test_cookie_route_apache_parser_rules():
    assert T.cookie_route("abc", "apache") == ""           # no '.', no route
    assert T.cookie_route("sid.web2;x", "apache") == "web2"  # cut at ';'
    assert T.cookie_route("sid.web2,y", "apache") == "web2"  # cut at ','
    assert T.cookie_route("a.b.c", "apache") == ""           # 'b.c' is no valid route


def test_cookie_value_unknown_mode():
    with pytest.raises(AnsibleFilterError, match="mode"):
        T.cookie_value("web1", "nginx")


def test_route_map_lines():
    assert T.route_map(topo()) == ["10.0.0.11 web1", "10.0.0.12 web2", "10.0.0.13 web3"]


@pytest.mark.parametrize("weight,expected", [(1, 1), (50, 50), (100, 100), ("40", 40)])
def test_balancer_weight_keeps_proportions(weight, expected):
    assert T.balancer_weight(weight, "haproxy") == expected
    assert T.balancer_weight(weight, "apache") == expected


@pytest.mark.parametrize("weight", [0, 101, -1, "heavy", 1.5, True, None])
def test_balancer_weight_rejects(weight):
    with pytest.raises(AnsibleFilterError, match="webfarm_weight"):
        T.balancer_weight(weight)


def test_firewall_flows_follow_topology():
    flows = T.firewall_flows(topo())
    by = {h: {(f["name"], f["port"]): f["sources"] for f in fl} for h, fl in flows.items()}
    assert by["edge1"][("https", 443)] == ["0.0.0.0/0", "::/0"]
    assert by["lb1"][("http", 80)] == ["10.0.0.2/32"]
    assert by["lb1"][("balancer-admin", 8404)] == ["10.0.9.0/24"]
    assert by["web1"][("http", 80)] == ["10.0.0.3/32"]
    assert by["db1"][("mysql", 3306)] == ["10.0.0.11/32", "10.0.0.12/32", "10.0.0.13/32", "10.0.0.22/32"]
    assert by["db2"][("mysql", 3306)] == ["10.0.0.11/32", "10.0.0.12/32", "10.0.0.13/32", "10.0.0.21/32"]
    assert by["nfs1"] == {("ssh", 22): ["10.0.9.0/24"],
                          ("nfs", 2049): ["10.0.0.11/32", "10.0.0.12/32", "10.0.0.13/32"]}
    assert all(("https", 443) not in by[h] for h in ("lb1", "web1", "db1", "nfs1"))


def test_firewall_flows_native_tls_and_nfs_v3():
    groups, hv = lab()
    groups["edge"] = []
    for h in hv.values():
        h["webfarm_nfs_v3"] = True
    flows = T.firewall_flows(T.topology(groups, hv))
    lb = {(f["name"], f["port"], f["proto"]) for f in flows["lb1"]}
    assert ("https", 443, "tcp") in lb and ("http", 80, "tcp") in lb
    nfs = {(f["name"], f["port"], f["proto"]) for f in flows["nfs1"]}
    assert {("mountd", 20048, "tcp"), ("statd", 32765, "udp"), ("lockd", 32768, "tcp"),
            ("rpcbind", 111, "udp")} <= nfs


def test_windows_nodes_turn_on_nfs_v3():
    groups, hv = lab()
    groups["web_windows"] = ["win1"]
    hv["win1"] = {"webfarm_address": "10.0.0.41"}
    t = T.topology(groups, hv)
    assert t["nfs_v3"] and t["hosts"]["win1"]["os"] == "windows"
    assert "ssh" not in {f["name"] for f in T.firewall_flows(t)["win1"]}


def test_extra_flows_by_group_and_cidr():
    t = topo(db1__webfarm_extra_flows=[{"name": "exporter", "port": 9104, "sources": ["balancers", "192.0.2.0/24"]}])
    extra = [f for f in T.firewall_flows(t)["db1"] if f["name"] == "exporter"]
    assert extra == [{"name": "exporter", "proto": "tcp", "port": 9104,
                      "sources": ["10.0.0.3/32", "192.0.2.0/24"]}]


@pytest.mark.parametrize("flow,var", [
    ({"port": 70000}, "port"), ({"port": 0}, "port"), ({"port": 80, "sources": ["10.0.0.0/33"]}, "sources"),
    ({"port": 80, "proto": "icmp"}, "proto")])
def test_extra_flows_rejected(flow, var):
    t = topo(web1__webfarm_extra_flows=[flow])
    with pytest.raises(AnsibleFilterError, match=r"host 'web1'.*webfarm_extra_flows\[0\]\.%s" % var):
        T.firewall_flows(t)


def test_nfs_exports():
    ex = T.nfs_exports(topo(), "/srv/webfarm/files")
    assert [e["client"] for e in ex] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert ex[0]["options"] == ["rw", "sync", "no_subtree_check", "root_squash"]


@pytest.mark.parametrize("path", ["/", "relative/path", "", None, "//"])
def test_nfs_exports_rejects_bad_path(path):
    with pytest.raises(AnsibleFilterError, match="nfs_server_export_path"):
        T.nfs_exports(topo(), path)


def test_server_ids_stable_and_unique():
    ids = T.server_ids(topo())
    groups, hv = lab()
    groups["db_replicas"].append("db3")
    hv["db3"] = {"webfarm_address": "10.0.0.23"}
    ids2 = T.server_ids(T.topology(groups, hv))
    assert ids2["db1"] == ids["db1"] and ids2["db2"] == ids["db2"]
    assert len(set(ids2.values())) == 3
    assert all(1 <= v < 2 ** 32 for v in ids2.values())


def test_farm_addresses():
    assert T.farm_addresses(topo(), "balancers") == ["10.0.0.3"]


# ----------------------------------------------------------- bad inputs --

def _bad(groups_hv, match):
    groups, hv = groups_hv
    with pytest.raises(AnsibleFilterError, match=match):
        T.topology(groups, hv)


def test_bad_duplicate_route():
    _bad(lab(web2__webfarm_route="web1"), r"'web1' and 'web2' have the same route 'web1'")


def test_bad_route_char():
    _bad(lab(web3__webfarm_route="web.3"), r"host 'web3': variable 'webfarm_route' is 'web.3'")


def test_bad_weight():
    _bad(lab(web1__webfarm_weight=0), r"host 'web1': variable 'webfarm_weight' is 0; expected a whole number from 1 to 100")
    _bad(lab(web1__webfarm_weight="heavy"), r"host 'web1': variable 'webfarm_weight' is 'heavy'")


def test_bad_missing_address():
    groups, hv = lab()
    del hv["web2"]["webfarm_address"]
    _bad((groups, hv), r"host 'web2': variable 'webfarm_address' is None")


def test_bad_address_not_ip():
    _bad(lab(web2__webfarm_address="web2.internal"), r"host 'web2'.*'web2.internal'; expected an IP address")


def test_bad_duplicate_address():
    _bad(lab(web2__webfarm_address="10.0.0.11"), r"'web1' and 'web2' both have address 10.0.0.11")


def test_bad_zero_or_two_primaries():
    groups, hv = lab()
    groups["db_primary"] = []
    _bad((groups, hv), r"db_primary.*exactly one host.*found 0")
    groups["db_primary"] = ["db1", "db3"]
    hv["db3"] = {"webfarm_address": "10.0.0.23"}
    _bad((groups, hv), r"exactly one host.*found 2")


def test_bad_admin_network():
    _bad(lab(lb1__webfarm_admin_networks=["10.0.0.0/40"]), r"host 'lb1': variable 'webfarm_admin_networks' is '10.0.0.0/40'")
    _bad(lab(lb1__webfarm_admin_networks="10.0.0.0/8"), r"host 'lb1': variable 'webfarm_admin_networks'")


def test_bad_balancer_kind():
    _bad(lab(lb1__webfarm_balancer="nginx"), r"host 'lb1': variable 'webfarm_balancer' is 'nginx'; expected one of haproxy, apache")


def test_bad_duplicate_server_id():
    _bad(lab(db1__webfarm_server_id=7, db2__webfarm_server_id=7), r"'db1' and 'db2' have the same MySQL server_id 7")


def test_bad_two_nfs_servers():
    groups, hv = lab()
    groups["nfs"].append("nfs2")
    hv["nfs2"] = {"webfarm_address": "10.0.0.32"}
    _bad((groups, hv), r"groups.nfs.*at most one NFS server")


def test_bad_backup_flag():
    _bad(lab(web1__webfarm_backup="maybe"), r"host 'web1': variable 'webfarm_backup' is 'maybe'; expected true or false")


def test_bad_v3_without_pinned_ports():
    groups, hv = lab()
    for h in hv.values():
        h["webfarm_nfs_v3"] = True
        h["webfarm_nfs_v3_ports"] = {"mountd": 20048}
    _bad((groups, hv), r"webfarm_nfs_v3_ports.*pinned ports")


def test_bad_topology_input_to_derivations():
    with pytest.raises(AnsibleFilterError, match="groups \\| colo.webfarm.topology"):
        T.members({"web": []})


# ------------------------------------------------------------ properties --

NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=90)


@given(NAMES)
def test_property_derived_routes_are_valid_for_both_balancers(name):
    r = core.route_id(name)
    assert core.ROUTE_RE.match(r)
    for bad in ".;,~|":
        assert bad not in r
    # the Apache cookie parses back to the same route
    assert core.cookie_route(core.cookie_value(r, "apache"), "apache") == r
    assert core.cookie_route(core.cookie_value(r, "apache_legacy"), "apache_legacy") == r


@settings(max_examples=50, deadline=None)
@given(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True), min_size=2, max_size=40, unique=True),
       st.data())
def test_property_routes_stable_when_nodes_come_and_go(names, data):
    def build(hosts):
        groups = {"web": hosts}
        hv = {h: {"webfarm_address": "10.%d.%d.%d" % (i // 65536, (i // 256) % 256, i % 256 + 1)}
              for i, h in enumerate(names) if h in hosts}
        return {m["name"]: m["route"] for m in core.members(core.build_topology(groups, hv))}

    removed = data.draw(st.sampled_from(names))
    full = build(names)
    less = build([n for n in names if n != removed])
    assert all(full[n] == less[n] for n in less)


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=100))
def test_property_weight_ratio_preserved(a, b):
    for balancer in ("haproxy", "apache"):
        wa, wb = core.balancer_weight(a, balancer), core.balancer_weight(b, balancer)
        assert wa * b == wb * a
        assert (1 <= wa <= 256) if balancer == "haproxy" else (1 <= wa <= 100)


def test_inputs_not_mutated():
    groups, hv = lab()
    g2, h2 = copy.deepcopy(groups), copy.deepcopy(hv)
    T.firewall_flows(T.topology(groups, hv))
    assert (groups, hv) == (g2, h2)


def test_secret_placeholders_names_without_values():
    from ansible_collections.colo.webfarm.plugins.filter.topology import secret_placeholders
    hv = {"a": {"pw": "CHANGE_ME", "other": "x"}, "b": {"pw": "real-secret"}, "c": {}}
    found = secret_placeholders(hv, ["a", "b", "c"], ["pw", "other"], ["CHANGE_ME", ""])
    assert found == ["a: pw"]
    with pytest.raises(AnsibleFilterError, match="'variables' must be a list"):
        secret_placeholders(hv, ["a"], "pw", [])


def test_secret_placeholders_pattern_catches_long_change_me_values():
    from ansible_collections.colo.webfarm.plugins.filter.topology import secret_placeholders
    hv = {"a": {"pw": "CHANGE_ME_BEFORE_PRODUCTION"}, "b": {"pw": "please-changeme-now"},
          "c": {"pw": "a-real-long-secret"}, "d": {"pw": 12345678}}
    found = secret_placeholders(hv, ["a", "b", "c", "d"], ["pw"], ["CHANGE_ME"], "(?i)change[-_ ]?me")
    assert found == ["a: pw", "b: pw"]
    with pytest.raises(AnsibleFilterError, match="not a regular expression"):
        secret_placeholders(hv, ["a"], ["pw"], [], "(")


# ------------------------------------------- farm-level primary override --

def _with_db_primary(value):
    groups, hv = lab()
    for h in hv:
        hv[h]["webfarm_db_primary"] = value
    return groups, hv


def test_db_primary_override_swaps_primary_and_replicas():
    t = T.topology(*_with_db_primary("db2"))
    assert t["groups"]["db_primary"] == ["db2"] and t["groups"]["db_replicas"] == ["db1"]
    assert T.farm_addresses(t, "db_primary") == ["10.0.0.22"]
    assert "db_primary" in t["hosts"]["db2"]["groups"] and "db_replicas" in t["hosts"]["db1"]["groups"]
    # server ids belong to the host, not to its role
    assert T.server_ids(t) == T.server_ids(topo())


def test_db_primary_override_empty_keeps_the_groups():
    t = T.topology(*_with_db_primary(""))
    assert t["groups"]["db_primary"] == ["db1"]


def test_db_primary_override_must_be_a_db_host():
    with pytest.raises(AnsibleFilterError, match="webfarm_db_primary.*'web1'.*db1, db2"):
        T.topology(*_with_db_primary("web1"))


def test_ssh_flow_is_on_the_port_ansible_reaches_the_host_on():
    flows = T.firewall_flows(topo(nfs1__ansible_port=2222, db1__ansible_port="2200"))
    ssh = {h: [f["port"] for f in fl if f["name"] == "ssh"] for h, fl in flows.items()}
    assert ssh["nfs1"] == [2222]
    assert ssh["db1"] == [2200]  # INI inventories give strings
    assert ssh["web1"] == [22]


@pytest.mark.parametrize("port", ["ssh", 0, 70000, True, "22a"])
def test_ansible_port_that_is_no_port_is_refused_naming_host_and_variable(port):
    with pytest.raises(AnsibleFilterError) as err:
        topo(lb1__ansible_port=port)
    assert "host 'lb1'" in str(err.value) and "'ansible_port'" in str(err.value)


# --------------------------------------------------------- farm settings --

def _settings(**farm):
    groups, hv = lab()
    for h in hv:
        hv[h].update(farm)
    return T.farm_settings(T.topology(groups, hv), hv)


def test_farm_settings_defaults_and_overrides():
    s = _settings()
    assert s == {"tls_terminator": "stunnel", "session_store": "database", "files_path": "/srv/webfarm/files",
                 "nfs_export_path": "/srv/webfarm/export", "health_path": "/health", "db_name": "webfarm",
                 "db_user": "webfarm", "web_uid": 33, "web_gid": 33, "legacy_route_cookie": False, "nfs_v3": False,
                 "nfs_v3_ports": {"mountd": 20048, "statd": 32765, "lockd": 32768},
                 "http_port": 80, "https_port": 443, "db_port": 3306, "redis_port": 6379,
                 "balancer_admin_port": 8404, "haproxy_peers_port": 10000, "db_primary": None,
                 "db_use_replicas": True, "db_timeout": 3,
                 "session_name": "PHPSESSID", "session_lifetime": 1440,
                 "vip": "", "vrrp_group": "", "vrrp_router_id_base": 51,
                 "metrics_textfile_dir": "/var/lib/prometheus/node-exporter",
                 "acme_challenge_dir": "/var/lib/webfarm/acme-challenge"}
    s = _settings(webfarm_files_path="/data/files/", webfarm_web_uid="48", webfarm_nfs_v3="yes")
    assert (s["files_path"], s["web_uid"], s["nfs_v3"]) == ("/data/files", 48, True)
    s = _settings(webfarm_session_name="SHOPSESS2", webfarm_session_lifetime="7200")
    assert (s["session_name"], s["session_lifetime"]) == ("SHOPSESS2", 7200)


@pytest.mark.parametrize("var,value,expected", [
    ("webfarm_tls_terminator", "nginx", "one of stunnel, haproxy"),
    ("webfarm_session_store", "memcached", "one of database, redis, files"),
    ("webfarm_files_path", "srv/files", "an absolute path other than '/'"),
    ("webfarm_files_path", "/srv/../etc", "an absolute path other than '/'"),
    ("webfarm_nfs_export_path", "/", "an absolute path other than '/'"),
    ("webfarm_health_path", "health", "a URL path such as /health"),
    ("webfarm_db_name", "web-farm", "a name of 1 to 64 letters, digits or underscores"),
    ("webfarm_web_uid", -1, "a whole number from 0 to"),
    ("webfarm_legacy_route_cookie", "maybe", "true or false"),
    ("webfarm_db_port", 0, "a whole number from 1 to 65535"),
    ("webfarm_redis_port", "6379x", "a whole number from 1 to 65535"),
    ("webfarm_balancer_admin_port", 70000, "a whole number from 1 to 65535"),
    ("webfarm_https_port", True, "a whole number from 1 to 65535"),
    ("webfarm_nfs_v3_ports", {"mountd": 1}, "a mapping with pinned ports for lockd, mountd, statd"),
    ("webfarm_session_name", "12345", "a cookie name of 1 to 64 letters and digits with at least one letter"),
    ("webfarm_session_name", "PHP-SESS", "a cookie name of 1 to 64 letters and digits"),
    ("webfarm_session_name", "", "a cookie name of 1 to 64 letters and digits"),
    ("webfarm_session_name", "S" * 65, "a cookie name of 1 to 64 letters and digits"),
    ("webfarm_session_name", 42, "a cookie name of 1 to 64 letters and digits"),
    ("webfarm_session_lifetime", 59, "a whole number from 60 to 2592000"),
    ("webfarm_session_lifetime", 2592001, "a whole number from 60 to 2592000"),
    ("webfarm_session_lifetime", "1h", "a whole number from 60 to 2592000"),
    ("webfarm_acme_challenge_dir", "acme", "an absolute path other than '/'"),
    ("webfarm_acme_challenge_dir", "/", "an absolute path other than '/'"),
])
def test_bad_farm_setting_names_host_variable_value_and_rule(var, value, expected):
    with pytest.raises(AnsibleFilterError) as err:
        _settings(**{var: value})
    msg = str(err.value)
    assert "variable '%s' is %r" % (var, value) in msg and expected in msg and "host '" in msg


def test_farm_setting_that_differs_between_hosts_is_an_error_not_first_host_wins():
    groups, hv = lab()
    hv["lb1"]["webfarm_session_store"] = "files"
    hv["web2"]["webfarm_session_store"] = "database"
    with pytest.raises(AnsibleFilterError, match="farm setting 'webfarm_session_store' is 'files' on host 'lb1' "
                                                 "but 'database' on host 'web2'"):
        T.farm_settings(T.topology(groups, hv), hv)


def test_session_cookie_that_differs_between_web_nodes_is_an_error():
    # Linux and Windows nodes share sessions only under one cookie name
    groups, hv = lab()
    hv["web1"]["webfarm_session_name"] = "SHOPSESS"
    hv["web3"]["webfarm_session_name"] = "PHPSESSID"
    with pytest.raises(AnsibleFilterError, match="farm setting 'webfarm_session_name' is 'SHOPSESS' on host 'web1' "
                                                 "but 'PHPSESSID' on host 'web3'"):
        T.topology(groups, hv)
    groups, hv = lab()
    hv["web1"]["webfarm_session_lifetime"] = 600
    hv["web2"]["webfarm_session_lifetime"] = 900
    with pytest.raises(AnsibleFilterError, match="farm setting 'webfarm_session_lifetime' is 600 on host 'web1' "
                                                 "but 900 on host 'web2'"):
        T.topology(groups, hv)


def test_farm_cross_checks_redis_without_cache_and_only_backup_nodes():
    with pytest.raises(AnsibleFilterError, match="expected a 'cache' group"):
        _settings(webfarm_session_store="redis")
    groups, hv = lab()
    for n in groups["web"]:
        hv[n]["webfarm_backup"] = True
    with pytest.raises(AnsibleFilterError, match="at least one web node that is not a backup"):
        T.farm_settings(T.topology(groups, hv), hv)


# ------------------------------------------------- one source for the ports --

def test_every_port_setting_moves_its_firewall_flow():
    """Changing a port in the inventory moves the service's firewall flow too."""
    ports = {"webfarm_http_port": 8080, "webfarm_https_port": 8443, "webfarm_db_port": 3307,
             "webfarm_redis_port": 6380, "webfarm_balancer_admin_port": 9404}
    groups, hv = lab()
    groups["cache"] = ["db1"]
    for h in hv:
        hv[h].update(ports)
    model = T.topology(groups, hv)
    assert {k: model["settings"][k[len("webfarm_"):]] for k in ports} == ports
    flows = core.firewall_flows(model)
    got = {(h, f["name"]): f["port"] for h, fl in flows.items() for f in fl}
    assert got[("edge1", "https")] == 8443 and got[("edge1", "http")] == 8080
    assert got[("lb1", "http")] == 8080 and got[("lb1", "balancer-admin")] == 9404
    assert got[("db1", "mysql")] == 3307 and got[("db2", "mysql")] == 3307
    assert got[("db1", "redis")] == 6380
    old = {3306, 6379, 8404, 443}
    assert not [k for k, v in got.items() if v in old], "an old port is still open"


@pytest.mark.parametrize("old,new", sorted(core.REPLACED_VARIABLES.items()))
def test_replaced_role_variable_is_refused_naming_the_farm_setting(old, new):
    groups, hv = lab()
    hv["web2"][old] = 1234
    with pytest.raises(AnsibleFilterError) as err:
        T.topology(groups, hv)
    msg = str(err.value)
    assert "host 'web2'" in msg and "'%s'" % old in msg and "'%s'" % new in msg


def test_replaced_variables_name_existing_farm_settings():
    assert set(core.REPLACED_VARIABLES.values()) <= set(core.FARM_SETTINGS)


def test_port_setting_that_differs_between_hosts_is_an_error():
    groups, hv = lab()
    hv["db1"]["webfarm_db_port"] = 3307
    hv["web1"]["webfarm_db_port"] = 3306
    with pytest.raises(AnsibleFilterError, match="farm setting 'webfarm_db_port' is 3307 on host 'db1' but 3306 on host 'web1'"):
        T.topology(groups, hv)


# ------------------------------------------------------ model once per run --

class _HostVars(dict):
    """hostvars stand-in that counts how many hosts' variables are read."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)


def test_model_uses_the_stored_model_while_it_describes_the_inventory():
    groups, hv = lab()
    stored = T.topology(groups, hv)
    counting = _HostVars(hv)
    counting["localhost"] = {"webfarm_model": stored}
    assert T.model(groups, counting) is stored
    assert counting.reads <= 1  # the controller's variables, no farm host's


def test_model_recomputes_when_groups_or_the_primary_changed():
    groups, hv = lab()
    stored = T.topology(groups, hv)
    # a host added to the inventory
    grown = {k: list(v) for k, v in groups.items()}
    grown["web"] = grown["web"] + ["web9"]
    grown["web_linux"] = grown["web_linux"] + ["web9"]
    hv2 = dict(hv, web9={"ansible_host": "10.0.0.99"}, localhost={"webfarm_model": stored})
    fresh = T.model(grown, hv2)
    assert fresh is not stored and "web9" in fresh["hosts"]
    # a promotion during the run (webfarm_db_primary set on every host)
    # (the mysql role and db_promote set webfarm_db_primary on every host and the controller)
    hv3 = {h: dict(v, webfarm_db_primary="db2") for h, v in hv.items()}
    hv3["localhost"] = {"webfarm_model": stored, "webfarm_db_primary": "db2"}
    fresh = T.model(groups, hv3)
    assert fresh["groups"]["db_primary"] == ["db2"] and stored["groups"]["db_primary"] == ["db1"]
    # a stored model computed with that primary is current again
    hv3["localhost"]["webfarm_model"] = fresh
    assert T.model(groups, hv3) is fresh


def test_model_without_a_stored_model_computes_it():
    groups, hv = lab()
    assert T.model(groups, hv) == T.topology(groups, hv)


class _LazyGroups(dict):
    """Ansible's lazy ``groups`` stand-in: not a plain dict, and reading it is counted."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reads = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)


class _RawHostVars(_HostVars):
    """hostvars with raw_get, as Ansible's HostVars: the controller's raw variables."""

    def raw_get(self, key):
        return self[key]


def test_model_reads_group_sizes_from_the_controllers_raw_groups():
    groups, hv = lab()
    stored = T.topology(groups, hv)
    lazy = _LazyGroups(groups)
    counting = _RawHostVars(hv, localhost={"webfarm_model": stored, "groups": dict(groups)})
    assert T.model(lazy, counting) is stored
    assert lazy.reads == 0 and counting.reads == 1
    # the raw groups are what the currency check compares: a host added there
    # (add_host during the run) makes the stored model out of date
    grown = {k: list(v) for k, v in groups.items()}
    grown["web"] = grown["web"] + ["web9"]
    grown["web_linux"] = grown["web_linux"] + ["web9"]
    hv2 = _RawHostVars(hv, web9={"ansible_host": "10.0.0.99"},
                       localhost={"webfarm_model": stored, "groups": grown})
    fresh = T.model(_LazyGroups(grown), hv2)
    assert fresh is not stored and "web9" in fresh["hosts"]


def test_model_checks_plain_dict_groups_it_is_given():
    # a plain dict is read as given, not replaced by the controller's groups
    groups, hv = lab()
    stored = T.topology(groups, hv)
    grown = {k: list(v) for k, v in groups.items()}
    grown["web"] = grown["web"] + ["web9"]
    grown["web_linux"] = grown["web_linux"] + ["web9"]
    hv2 = dict(hv, web9={"ansible_host": "10.0.0.99"}, localhost={"webfarm_model": stored, "groups": groups})
    assert "web9" in T.model(grown, hv2)["hosts"]


def test_model_is_kept_for_the_rest_of_a_worker_process(monkeypatch):
    groups, hv = lab()
    stored = T.topology(groups, hv)
    counting = _RawHostVars(hv, localhost={"webfarm_model": stored})
    monkeypatch.setattr(T, "_WORKER_MODELS", {})
    monkeypatch.setattr(T, "_in_worker", lambda: True)
    assert T.model(groups, counting) is stored
    assert T.model(groups, counting) is stored
    assert counting.reads == 1  # the second call read nothing
    # another process (a new worker forked for the next task) reads again
    monkeypatch.setattr(T.os, "getpid", lambda: -1)
    assert T.model(groups, counting) is stored and counting.reads == 2


def test_model_outside_a_worker_reads_on_every_call(monkeypatch):
    # ansible-playbook's main process lives across tasks: nothing is kept there
    groups, hv = lab()
    stored = T.topology(groups, hv)
    counting = _RawHostVars(hv, localhost={"webfarm_model": stored})
    monkeypatch.setattr(T, "_WORKER_MODELS", {})
    monkeypatch.setattr(T, "_in_worker", lambda: False)
    T.model(groups, counting)
    T.model(groups, counting)
    assert counting.reads == 2 and T._WORKER_MODELS == {}


def test_in_worker_is_false_in_the_test_process():
    assert T._in_worker() is False


# ------------------------------------------------ one app configuration --

def test_app_settings_is_the_farm_seen_by_one_web_node():
    groups, hv = lab()
    groups["cache"] = ["db2"]
    for h in hv:
        hv[h].update(webfarm_db_port=3307, webfarm_redis_port=6380, webfarm_db_name="shop", webfarm_db_timeout=5,
                     webfarm_session_name="SHOPSESS", webfarm_session_lifetime=3600)
    app = T.app_settings(T.topology(groups, hv), "web2")
    assert app == {
        "node": "web2", "route": "web2", "health_path": "/health",
        "db": {"host": "10.0.0.21", "port": 3307, "name": "shop", "user": "webfarm", "timeout": 5,
               "replicas": [{"host": "10.0.0.22", "port": 3307}]},
        "session": {"store": "database", "name": "SHOPSESS", "lifetime": 3600,
                    "redis_host": "10.0.0.22", "redis_port": 6380},
        "proxies": {"balancers": ["10.0.0.3"], "edge": ["10.0.0.2"]},
    }


def test_app_settings_replicas_off_by_the_farm_or_the_caller():
    groups, hv = lab()
    for h in hv:
        hv[h]["webfarm_db_use_replicas"] = False
    model = T.topology(groups, hv)
    assert T.app_settings(model, "web1")["db"]["replicas"] == []
    assert T.app_settings(model, "web1", True)["db"]["replicas"] == [{"host": "10.0.0.22", "port": 3306}]


def test_app_settings_follows_the_promoted_primary():
    groups, hv = lab()
    for h in hv:
        hv[h]["webfarm_db_primary"] = "db2"
    app = T.app_settings(T.topology(groups, hv), "web1")
    assert app["db"]["host"] == "10.0.0.22" and app["db"]["replicas"] == [{"host": "10.0.0.21", "port": 3306}]


def test_app_settings_for_a_host_outside_the_farm_names_it():
    with pytest.raises(AnsibleFilterError, match="host 'nope'"):
        T.app_settings(topo(), "nope")


# ------------------------------- the controller's variables, from the caches --

def _ansible_run_state(tmp_path, groups, hv):
    """Ansible's own inventory, variable manager and hostvars for a farm (the
    objects a task's ``hostvars`` is made of), with localhost in it."""
    import json

    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    children = {g: {"hosts": {h: hv.get(h, {}) for h in hosts}} for g, hosts in groups.items() if hosts}
    inv = tmp_path / "hosts.json"
    inv.write_text(json.dumps({"all": {"hosts": {"localhost": {"ansible_connection": "local"}},
                                       "children": children}}))
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(inv)])
    manager = VariableManager(loader=loader, inventory=inventory)
    return inventory, manager, HostVars(inventory=inventory, variable_manager=manager, loader=loader)


def test_the_controllers_run_time_variables_match_ansibles_own(tmp_path):
    """The fast path reads ansible-core's caches; with the pinned ansible-core
    it must see what raw_get('localhost') sees, or this fails (and the model
    would silently fall back to raw_get)."""
    groups, hv = lab()
    inventory, manager, hostvars = _ansible_run_state(tmp_path, groups, hv)
    assert T._controller_runtime_vars(hostvars) is None  # no stored model yet: the caller reads raw_get
    stored = T.topology(inventory.get_groups_dict(), hostvars)
    manager.set_nonpersistent_facts("localhost", {"webfarm_model": stored})
    fast = T._controller_runtime_vars(hostvars)
    slow = hostvars.raw_get("localhost")
    assert fast["webfarm_model"] == slow["webfarm_model"]
    assert fast["groups"] == slow["groups"]
    assert "webfarm_db_primary" not in fast and "webfarm_db_primary" not in slow
    assert T.model(inventory.get_groups_dict(), hostvars) is fast["webfarm_model"]
    # a promotion during the run: set_fact on the controller, then an extra var over it
    manager.set_host_variable("localhost", "webfarm_db_primary", "db3")  # include_vars
    assert T._controller_runtime_vars(hostvars)["webfarm_db_primary"] == hostvars.raw_get("localhost")["webfarm_db_primary"] == "db3"
    # as the mysql role does: on every host and the controller
    for host in list(inventory.hosts):
        manager.set_nonpersistent_facts(host, {"webfarm_db_primary": "db2"})
    assert T._controller_runtime_vars(hostvars)["webfarm_db_primary"] == hostvars.raw_get("localhost")["webfarm_db_primary"] == "db2"
    fresh = T.model(inventory.get_groups_dict(), hostvars)
    assert fresh is not stored and fresh["groups"]["db_primary"] == ["db2"]
    manager._extra_vars = {"webfarm_db_primary": "db1"}  # what -e sets
    assert T._controller_runtime_vars(hostvars)["webfarm_db_primary"] == hostvars.raw_get("localhost")["webfarm_db_primary"] == "db1"


def test_without_ansibles_caches_the_model_reads_the_controllers_variables():
    groups, hv = lab()
    stored = T.topology(groups, hv)
    counting = _HostVars(hv)
    counting["localhost"] = {"webfarm_model": stored}
    assert T._controller_runtime_vars(counting) is None  # a plain mapping has no variable manager
    assert T.model(groups, counting) is stored


def test_every_filter_lives_in_one_file_with_its_doc():
    # ansible-core 2.19 loads every Python file of plugins/filter/ for each
    # collection filter a task names, in every forked worker: one file keeps
    # that to one (plugins/filter/topology.py's docstring, bench/README.md).
    import os
    here = os.path.dirname(T.__file__)
    assert sorted(f for f in os.listdir(here) if f.endswith(".py")) == ["topology.py"]
    docs = {f[:-4] for f in os.listdir(here) if f.endswith(".yml")}
    assert docs == set(T.FilterModule().filters())
