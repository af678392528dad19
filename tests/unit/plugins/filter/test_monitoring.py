"""Unit tests for the monitoring derivations: targets, flows, settings."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.filter import topology as T


def farm(monitoring=("mon1",), windows=(), cache=(), balancer="haproxy", terminator=None, **farm_vars):
    groups = {
        "edge": ["edge1"],
        "balancers": ["lb1"],
        "web_linux": ["web1", "web2"],
        "web_windows": list(windows),
        "web": ["web1", "web2"] + list(windows),
        "db_primary": ["db1"],
        "db_replicas": ["db2"],
        "db": ["db1", "db2"],
        "nfs": ["nfs1"],
        "cache": list(cache),
        "monitoring": list(monitoring),
    }
    addresses = {"edge1": "10.0.0.2", "lb1": "10.0.0.3", "web1": "10.0.0.11", "web2": "10.0.0.12",
                 "db1": "10.0.0.21", "db2": "10.0.0.22", "nfs1": "10.0.0.31", "mon1": "10.0.0.40",
                 "mon2": "10.0.0.41", "win1": "10.0.0.51", "cache1": "10.0.0.61"}
    names = {h for g in groups.values() for h in g}
    hostvars = {h: {"webfarm_address": addresses[h], "webfarm_admin_networks": ["10.0.9.0/24"]} for h in names}
    hostvars["lb1"]["webfarm_balancer"] = balancer
    for h in hostvars.values():
        h.update(farm_vars)
        if terminator:
            h["webfarm_tls_terminator"] = terminator
    return T.topology(groups, hostvars)


def jobs(t):
    return {j["name"]: [x["target"] for x in j["targets"]] for j in T.monitoring_targets(t)["jobs"]}


def test_targets_cover_every_tier():
    got = jobs(farm(cache=["cache1"]))
    # every Linux host in the topology's natural order, the monitoring host included
    assert got["node"] == ["10.0.0.61:9100", "10.0.0.21:9100", "10.0.0.22:9100", "10.0.0.2:9100",
                           "10.0.0.3:9100", "10.0.0.40:9100", "10.0.0.31:9100", "10.0.0.11:9100",
                           "10.0.0.12:9100"]
    assert got["haproxy"] == ["10.0.0.3:8404"]
    assert got["apache"] == ["10.0.0.11:9117", "10.0.0.12:9117"]
    assert got["mysqld"] == ["10.0.0.21:9104", "10.0.0.22:9104"]
    assert got["redis"] == ["10.0.0.61:9121"]
    assert "windows" not in got
    t = T.monitoring_targets(farm())
    assert t["enabled"] and t["host"] == "mon1" and t["address"] == "10.0.0.40"
    assert t["tls_endpoints"] == ["10.0.0.2:443"]
    assert t["hosts"]["db1"] == ["node", "mysqld"] and t["hosts"]["lb1"] == ["node", "haproxy"]
    assert t["hosts"]["web1"] == ["node", "apache"] and t["hosts"]["mon1"] == ["node"]
    tiers = {x["host"]: x["tier"] for j in t["jobs"] for x in j["targets"]}
    assert tiers["db1"] == "db_primary" and tiers["db2"] == "db_replicas" and tiers["mon1"] == "monitoring"


def test_apache_balancer_and_native_tls():
    t = farm(balancer="apache", terminator="haproxy")
    got = jobs(t)
    assert "haproxy" not in got
    assert got["apache"] == ["10.0.0.3:9117", "10.0.0.11:9117", "10.0.0.12:9117"]
    assert T.monitoring_targets(t)["tls_endpoints"] == ["10.0.0.3:443"]


def test_exporters_can_be_turned_off_and_windows_on():
    t = farm(windows=["win1"], webfarm_monitoring_exporters={"mysqld": False, "windows": True, "node": "no"})
    got = jobs(t)
    assert "mysqld" not in got and "node" not in got
    assert got["windows"] == ["10.0.0.51:9182"]
    flows = T.firewall_flows(t)
    assert not any(f["name"] == "mysqld-exporter" for f in flows["db1"])
    assert [f for f in flows["win1"] if f["name"] == "windows-exporter"] == [
        {"name": "windows-exporter", "proto": "tcp", "port": 9182, "sources": ["10.0.0.40/32"]}]
    assert not any(f["name"] == "node-exporter" for f in flows["win1"])


def test_without_monitoring_host_nothing_changes():
    with_group = farm(monitoring=())
    t = T.monitoring_targets(with_group)
    assert t["enabled"] is False and t["jobs"] == [] and t["tls_endpoints"] == [] and t["hosts"] == {}
    flows = T.firewall_flows(with_group)
    names = {f["name"] for fl in flows.values() for f in fl}
    assert not names & {"node-exporter", "haproxy-metrics", "apache-exporter", "mysqld-exporter",
                        "redis-exporter", "prometheus", "alertmanager"}
    # the same flows as a farm whose inventory has no monitoring group at all
    groups = {"balancers": ["lb1"], "web_linux": ["web1"], "web": ["web1"]}
    hv = {"lb1": {"webfarm_address": "10.0.0.3"}, "web1": {"webfarm_address": "10.0.0.11"}}
    assert T.firewall_flows(T.topology(groups, hv)) == T.firewall_flows(
        T.topology(dict(groups, monitoring=[]), hv))


def test_scrape_flows_come_from_the_monitoring_host_only():
    t = farm(cache=["cache1"])
    flows = T.firewall_flows(t)
    mon = ["10.0.0.40/32"]
    expect = {
        "lb1": {("node-exporter", 9100), ("haproxy-metrics", 8404)},
        "web1": {("node-exporter", 9100), ("apache-exporter", 9117)},
        "db1": {("node-exporter", 9100), ("mysqld-exporter", 9104)},
        "db2": {("node-exporter", 9100), ("mysqld-exporter", 9104)},
        "cache1": {("node-exporter", 9100), ("redis-exporter", 9121)},
        "edge1": {("node-exporter", 9100)},
        "nfs1": {("node-exporter", 9100)},
    }
    exporter_names = {"node-exporter", "haproxy-metrics", "apache-exporter", "mysqld-exporter", "redis-exporter"}
    for host, want in expect.items():
        got = {(f["name"], f["port"]) for f in flows[host] if f["name"] in exporter_names}
        assert got == want, host
        assert all(f["sources"] == mon for f in flows[host] if f["name"] in exporter_names)
    mine = {f["name"]: f for f in flows["mon1"]}
    assert mine["prometheus"]["port"] == 9090 and mine["prometheus"]["sources"] == ["10.0.9.0/24"]
    assert mine["alertmanager"]["port"] == 9093 and mine["alertmanager"]["sources"] == ["10.0.9.0/24"]
    assert "blackbox" not in mine  # loopback only


def test_two_monitoring_hosts_refused():
    with pytest.raises(AnsibleFilterError, match=r"groups.monitoring.*at most one monitoring host.*found 2"):
        farm(monitoring=["mon1", "mon2"])


def test_bad_exporter_switches_refused():
    with pytest.raises(AnsibleFilterError, match=r"webfarm_monitoring_exporters.nginx.*one of the exporters"):
        farm(webfarm_monitoring_exporters={"nginx": True})
    with pytest.raises(AnsibleFilterError, match=r"webfarm_monitoring_exporters.node.*true or false"):
        farm(webfarm_monitoring_exporters={"node": "maybe"})
    with pytest.raises(AnsibleFilterError, match=r"webfarm_monitoring_exporters.*a mapping"):
        farm(webfarm_monitoring_exporters=["node"])


def test_windows_monitoring_host_refused():
    with pytest.raises(AnsibleFilterError, match=r"host 'win1'.*a Linux monitoring host"):
        farm(monitoring=["win1"], windows=["win1"])


def test_settings_accept_good_values():
    got = T.monitoring_settings({
        "monitoring_threshold_replica_lag_seconds": "30", "monitoring_threshold_disk_free_percent": 12.5,
        "monitoring_retention": "15d", "monitoring_scrape_interval": "5s",
        "monitoring_receiver": {"type": "webhook", "url": "http://127.0.0.1:9099/alerts"},
        "monitoring_other": [1]})
    assert got["monitoring_threshold_replica_lag_seconds"] == 30
    assert got["monitoring_threshold_disk_free_percent"] == 12.5
    assert T.monitoring_settings({"monitoring_receiver": {"type": "email", "to": "ops@example.com",
                                  "from": "farm@example.com", "smarthost": "mail.example.com:587"}})


@pytest.mark.parametrize("values, needle", [
    ({"monitoring_threshold_replica_lag_seconds": "thirty"},
     r"'monitoring_threshold_replica_lag_seconds' is 'thirty'; expected a number"),
    ({"monitoring_threshold_cert_expiry_days": True}, r"'monitoring_threshold_cert_expiry_days' is True"),
    ({"monitoring_threshold_disk_free_percent": -1}, r"of 0 or more"),
    ({"monitoring_threshold_disk_free_percent": [10]}, r"expected a number"),
    ({"monitoring_retention": "15 days"}, r"'monitoring_retention' is '15 days'; expected a Prometheus duration"),
    ({"monitoring_scrape_interval": 15}, r"monitoring_scrape_interval"),
    ({"monitoring_receiver": {"type": "pager"}}, r"'monitoring_receiver.type' is 'pager'; expected one of webhook, email, none"),
    ({"monitoring_receiver": "webhook"}, r"'monitoring_receiver' is 'webhook'; expected a mapping"),
    ({"monitoring_receiver": {"type": "webhook", "url": "ftp://x"}}, r"monitoring_receiver.url"),
    ({"monitoring_receiver": {"type": "email", "to": "ops@example.com", "from": "f@example.com"}},
     r"monitoring_receiver.smarthost"),
])
def test_settings_refuse_bad_values(values, needle):
    with pytest.raises(AnsibleFilterError, match=needle):
        T.monitoring_settings(values)


def test_web_state_of_the_linux_web_nodes():
    t = T.monitoring_targets(farm(windows=["win1"]))
    nfs = [{"name": "nfs1", "address": "10.0.0.31", "port": 2049}]
    assert t["web_state"] == {"web1": {"phpfpm": True, "nfs_servers": nfs},
                              "web2": {"phpfpm": True, "nfs_servers": nfs}}
    # the NFS probe off: PHP-FPM only; PHP-FPM needs the apache exporter's status vhost
    t = T.monitoring_targets(farm(webfarm_monitoring_exporters={"nfs": False}))
    assert t["web_state"]["web1"] == {"phpfpm": True, "nfs_servers": []}
    t = T.monitoring_targets(farm(webfarm_monitoring_exporters={"apache": False}))
    assert t["web_state"]["web1"] == {"phpfpm": False, "nfs_servers": nfs}
    # both off, or the node exporter off (the textfile collector): nothing
    assert T.monitoring_targets(farm(webfarm_monitoring_exporters={"phpfpm": False, "nfs": False}))["web_state"] == {}
    assert T.monitoring_targets(farm(webfarm_monitoring_exporters={"node": False}))["web_state"] == {}
    assert T.monitoring_targets(farm(monitoring=()))["web_state"] == {}


def test_textfile_dir_is_a_farm_setting():
    assert farm()["settings"]["metrics_textfile_dir"] == "/var/lib/prometheus/node-exporter"
    assert farm(webfarm_metrics_textfile_dir="/srv/prom")["settings"]["metrics_textfile_dir"] == "/srv/prom"
    with pytest.raises(AnsibleFilterError, match="webfarm_metrics_textfile_dir"):
        farm(webfarm_metrics_textfile_dir="relative/dir")
    with pytest.raises(AnsibleFilterError, match="exporters_textfile_dir.*webfarm_metrics_textfile_dir"):
        farm(exporters_textfile_dir="/srv/prom")
