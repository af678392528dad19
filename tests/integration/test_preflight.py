"""Bad inventories fail in preflight, with a clear message, and touch no host.

Each case writes an inventory (the lab topology with one mistake), runs the
real preflight play followed by a play that touches every host, and checks
the exit code, the message and that no host was touched. A valid inventory
is the control: it passes and touches every host.
"""

from __future__ import annotations

import copy
import os
import subprocess

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GATE = os.path.join(REPO, "tests", "integration", "preflight_gate.yml")

BASE = {
    "webfarm": {
        "vars": {"ansible_connection": "local", "webfarm_admin_networks": ["10.0.9.0/24"],
                 "webfarm_db_password": "s3cret-from-vault", "tls_cert_source": "selfsigned",
                 "webfarm_health_path": "/health"},
        "children": {
            "edge": {"hosts": {"edge1": {"webfarm_address": "10.0.0.2"}}},
            "balancers": {"hosts": {"lb1": {"webfarm_address": "10.0.0.3"}}},
            "web": {"children": {
                "web_linux": {"hosts": {"web1": {"webfarm_address": "10.0.0.11"},
                                        "web2": {"webfarm_address": "10.0.0.12"},
                                        "web3": {"webfarm_address": "10.0.0.13"}}},
                "web_windows": {"hosts": {}}}},
            "db": {"children": {
                "db_primary": {"hosts": {"db1": {"webfarm_address": "10.0.0.21"}}},
                "db_replicas": {"hosts": {"db2": {"webfarm_address": "10.0.0.22"}}}}},
            "nfs": {"hosts": {"nfs1": {"webfarm_address": "10.0.0.31"}}},
        },
    }
}
ALL_HOSTS = {"edge1", "lb1", "web1", "web2", "web3", "db1", "db2", "nfs1"}


def _host(inv, name):
    def walk(node):
        if name in (node.get("hosts") or {}):
            return node["hosts"][name]
        for child in (node.get("children") or {}).values():
            found = walk(child)
            if found is not None:
                return found
        return None
    return walk(inv["webfarm"])


def _group(inv, path):
    node = inv["webfarm"]
    for part in path:
        node = node["children"][part]
    return node


def set_host(name, **values):
    def mutate(inv):
        _host(inv, name).update(values)
    return mutate


def del_host_var(name, var):
    def mutate(inv):
        del _host(inv, name)[var]
    return mutate


def move_host(name, from_path, to_path):
    def mutate(inv):
        hv = _group(inv, from_path)["hosts"].pop(name)
        _group(inv, to_path).setdefault("hosts", {})[name] = hv
    return mutate


def add_host(path, name, **values):
    def mutate(inv):
        _group(inv, path).setdefault("hosts", {})[name] = values
    return mutate


def set_farm(**values):
    def mutate(inv):
        inv["webfarm"]["vars"].update(values)
    return mutate


def del_farm_var(var):
    def mutate(inv):
        inv["webfarm"]["vars"].pop(var, None)
    return mutate


def monitoring(*names, **values):
    """A 'monitoring' group (child of webfarm) with these hosts and variables."""
    def mutate(inv):
        hosts = {n: {"webfarm_address": "10.0.0.%d" % (40 + i)} for i, n in enumerate(names)}
        inv["webfarm"]["children"]["monitoring"] = {"hosts": hosts, "vars": dict(values)}
    return mutate


def empty_group(path):
    def mutate(inv):
        _group(inv, path)["hosts"] = {}
    return mutate


CASES = {
    "duplicate-route": (set_host("web2", webfarm_route="web1"),
                        "'web1' and 'web2' have the same route 'web1'"),
    "route-with-dot": (set_host("web3", webfarm_route="www.3"),
                       "host 'web3': variable 'webfarm_route' is 'www.3'"),
    "weight-zero": (set_host("web1", webfarm_weight=0),
                    "host 'web1': variable 'webfarm_weight' is 0; expected a whole number from 1 to 100"),
    "weight-not-number": (set_host("web2", webfarm_weight="heavy"),
                          "host 'web2': variable 'webfarm_weight' is 'heavy'"),
    "web-node-without-address": (del_host_var("web3", "webfarm_address"),
                                 "host 'web3': variable 'webfarm_address' is None"),
    "same-address-twice": (set_host("db2", webfarm_address="10.0.0.21"),
                           "hosts 'db1' and 'db2' both have address 10.0.0.21"),
    "zero-db-primaries": (move_host("db1", ["db", "db_primary"], ["db", "db_replicas"]),
                          "exactly one host in group 'db_primary' when the farm has database hosts (found 0)"),
    "two-db-primaries": (add_host(["db", "db_primary"], "db3", webfarm_address="10.0.0.23"),
                         "exactly one host in group 'db_primary' when the farm has database hosts (found 2)"),
    "admin-network-not-cidr": (set_farm(webfarm_admin_networks=["10.0.9.0/33"]),
                               "variable 'webfarm_admin_networks' is '10.0.9.0/33'; expected a list of CIDR networks"),
    "unknown-balancer": (set_host("lb1", webfarm_balancer="nginx"),
                         "host 'lb1': variable 'webfarm_balancer' is 'nginx'; expected one of haproxy, apache"),
    "duplicate-server-id": (lambda inv: (set_host("db1", webfarm_server_id=5)(inv), set_host("db2", webfarm_server_id=5)(inv)),
                            "hosts 'db1' and 'db2' have the same MySQL server_id 5"),
    "two-nfs-servers": (add_host(["nfs"], "nfs2", webfarm_address="10.0.0.32"),
                        "at most one NFS server in group 'nfs'"),
    "placeholder-secret": (set_farm(webfarm_db_password="CHANGE_ME"),
                           "secrets still hold a placeholder value (db1: webfarm_db_password"),
    "placeholder-secret-long": (set_farm(webfarm_db_password="CHANGE_ME_BEFORE_GOING_LIVE"),
                                "secrets still hold a placeholder value (db1: webfarm_db_password"),
    "placeholder-apache-admin-password": (set_host("lb1", apache_balancer_admin_password="changeme-please"),
                                          "secrets still hold a placeholder value (lb1: apache_balancer_admin_password)"),
    "tls-source-not-chosen": (del_farm_var("tls_cert_source"),
                              "host 'edge1': variable 'tls_cert_source' is not set"),
    "tls-source-not-chosen-native": (lambda inv: (del_farm_var("tls_cert_source")(inv),
                                                  set_farm(webfarm_tls_terminator="haproxy")(inv)),
                                     "host 'lb1': variable 'tls_cert_source' is not set"),
    "acme-without-directory": (set_farm(tls_cert_source="acme", tls_cert_acme_terms_agreed=True),
                               "host 'edge1': tls_cert_source is acme but variable 'tls_cert_acme_directory' is ''"),
    "acme-terms-not-agreed": (set_farm(tls_cert_source="acme", tls_cert_acme_directory="https://acme.example.test/dir",
                                       tls_cert_acme_terms_agreed=False),
                              "'tls_cert_acme_terms_agreed' is 'False'; expected the ACME server's directory URL"),
    "ansible-port-not-number": (set_host("db2", ansible_port="twentytwo"),
                                "host 'db2': variable 'ansible_port' is 'twentytwo'; expected a whole number"),
    "unknown-tls-terminator": (set_farm(webfarm_tls_terminator="nginx"),
                               "variable 'webfarm_tls_terminator' is 'nginx'; expected one of stunnel, haproxy"),
    "unknown-session-store": (set_farm(webfarm_session_store="memcached"),
                              "variable 'webfarm_session_store' is 'memcached'; expected one of database, redis, files"),
    "redis-sessions-without-cache": (set_farm(webfarm_session_store="redis"),
                                     "variable 'webfarm_session_store' is 'redis'; expected a 'cache' group"),
    "relative-files-path": (set_farm(webfarm_files_path="srv/files"),
                            "variable 'webfarm_files_path' is 'srv/files'; expected an absolute path other than '/'"),
    "export-path-root": (set_farm(webfarm_nfs_export_path="/"),
                         "variable 'webfarm_nfs_export_path' is '/'; expected an absolute path other than '/'"),
    "every-web-node-a-backup": (lambda inv: [set_host(n, webfarm_backup=True)(inv) for n in ("web1", "web2", "web3")],
                                "host 'web1': variable 'webfarm_backup' is True; expected at least one web node"),
    "setting-differs-between-hosts": (set_host("lb1", webfarm_health_path="/healthz"),
                                      "farm setting 'webfarm_health_path' is '/health' on host"),
    "replaced-role-port-variable": (set_host("db1", mysql_port=3307),
                                    "host 'db1': variable 'mysql_port' is 3307; expected nothing: it is replaced by "
                                    "the farm setting 'webfarm_db_port'"),
    "session-name-not-a-cookie-name": (set_farm(webfarm_session_name="PHP-SESS"),
                                       "variable 'webfarm_session_name' is 'PHP-SESS'; expected a cookie name of 1 to 64 "
                                       "letters and digits"),
    "session-lifetime-too-short": (set_farm(webfarm_session_lifetime=10),
                                   "variable 'webfarm_session_lifetime' is 10; expected a whole number from 60 to 2592000"),
    "replaced-session-variable": (set_host("web2", web_linux_session_name="SHOPSESS"),
                                  "host 'web2': variable 'web_linux_session_name' is 'SHOPSESS'; expected nothing: it is "
                                  "replaced by the farm setting 'webfarm_session_name'"),
    "port-not-a-port": (set_farm(webfarm_redis_port="6379/tcp"),
                        "variable 'webfarm_redis_port' is '6379/tcp'; expected a whole number from 1 to 65535"),
    "port-differs-between-hosts": (lambda inv: (set_host("lb1", webfarm_balancer_admin_port=9000)(inv),
                                                set_host("web1", webfarm_balancer_admin_port=9001)(inv)),
                                   "farm setting 'webfarm_balancer_admin_port' is 9000 on host 'lb1' but 9001 on host 'web1'"),
    "no-balancers": (empty_group(["balancers"]),
                     "inventory group 'balancers' has no hosts"),
    "extra-flow-bad-port": (set_host("db1", webfarm_extra_flows=[{"name": "exporter", "port": 70000}]),
                            "host 'db1': variable 'webfarm_extra_flows[0].port' is 70000"),
    "address-not-ip": (set_host("nfs1", webfarm_address="nfs1.internal"),
                       "host 'nfs1': variable 'webfarm_address' is 'nfs1.internal'; expected an IP address"),
    # virtual address (keepalived): checked against the VRRP peers (the edge)
    "vip-outside-peers-subnet": (lambda inv: (add_host(["edge"], "edge2", webfarm_address="10.0.0.4")(inv),
                                              set_farm(webfarm_vip="10.99.0.100/24")(inv)),
                                 "host 'edge1': variable 'webfarm_vip[0].address' is '10.99.0.100/24'; "
                                 "expected an address in the subnet of every VRRP peer"),
    "vip-same-router-id": (lambda inv: (add_host(["edge"], "edge2", webfarm_address="10.0.0.4")(inv),
                                        set_farm(webfarm_vip=[
                                            {"address": "10.0.0.100/24", "virtual_router_id": 7},
                                            {"name": "api", "address": "10.0.0.101/24", "virtual_router_id": 7}])(inv)),
                           "variable 'webfarm_vip[1].virtual_router_id' is 7; expected a virtual_router_id (1..255) "
                           "no other VRRP group on the network uses"),
    "vip-one-peer": (set_farm(webfarm_vip="10.0.0.100/24"),
                     "variable 'groups.edge (the VRRP peers)' is ['edge1']; expected at least two hosts"),
    "vip-group-on-balancers-with-one": (lambda inv: (add_host(["edge"], "edge2", webfarm_address="10.0.0.4")(inv),
                                                     set_farm(webfarm_vip="10.0.0.100/24",
                                                              webfarm_vrrp_group="balancers")(inv)),
                                        "variable 'groups.balancers (the VRRP peers)' is ['lb1']; expected at least "
                                        "two hosts"),
    "vip-differs-between-peers": (lambda inv: (add_host(["edge"], "edge2", webfarm_address="10.0.0.4",
                                                        webfarm_vip="10.0.0.101/24")(inv),
                                               set_host("edge1", webfarm_vip="10.0.0.100/24")(inv)),
                                  "farm setting 'webfarm_vip' is '10.0.0.100/24' on host 'edge1' but '10.0.0.101/24' "
                                  "on host 'edge2'"),
    "replaced-keepalived-variable": (set_host("edge1", keepalived_router_id_base=60),
                                     "host 'edge1': variable 'keepalived_router_id_base' is 60; expected nothing: it is "
                                     "replaced by the farm setting 'webfarm_vrrp_router_id_base'"),
    # monitoring (Prometheus + Alertmanager on one host)
    "two-monitoring-hosts": (monitoring("mon1", "mon2"),
                             "variable 'groups.monitoring' is ['mon1', 'mon2']; expected at most one monitoring host"),
    "monitoring-unknown-receiver": (monitoring("mon1", monitoring_receiver={"type": "pager", "url": "http://x"}),
                                    "variable 'monitoring_receiver.type' is 'pager'; expected one of webhook, email, none"),
    "monitoring-webhook-without-url": (monitoring("mon1", monitoring_receiver={"type": "webhook"}),
                                       "variable 'monitoring_receiver.url' is None; expected an http:// or https:// URL"),
    "monitoring-threshold-not-number": (monitoring("mon1", monitoring_threshold_replica_lag_seconds="thirty"),
                                        "variable 'monitoring_threshold_replica_lag_seconds' is 'thirty'; "
                                        "expected a number"),
    "monitoring-backup-late-not-number": (monitoring("mon1", monitoring_threshold_backup_late_minutes="an hour"),
                                          "variable 'monitoring_threshold_backup_late_minutes' is 'an hour'; "
                                          "expected a number"),
    "exporters-web-state-interval-not-number": (lambda inv: (monitoring("mon1")(inv),
                                                             set_host("web1", exporters_web_state_interval="2s")(inv)),
                                                "host 'web1': variable 'exporters_web_state_interval' is '2s'; "
                                                "expected a whole number of seconds"),
    "textfile-dir-not-absolute": (set_farm(webfarm_metrics_textfile_dir="prometheus/textfile"),
                                  "variable 'webfarm_metrics_textfile_dir' is 'prometheus/textfile'; "
                                  "expected an absolute path"),
    "exporters-textfile-dir-replaced": (set_farm(exporters_textfile_dir="/srv/prom"),
                                        "webfarm_metrics_textfile_dir"),
    "monitoring-retention-not-duration": (monitoring("mon1", monitoring_retention="two weeks"),
                                          "variable 'monitoring_retention' is 'two weeks'; expected a Prometheus duration"),
    "monitoring-unknown-exporter": (lambda inv: (monitoring("mon1")(inv),
                                                 set_farm(webfarm_monitoring_exporters={"nginx": True})(inv)),
                                    "variable 'webfarm_monitoring_exporters.nginx' is True; expected one of the exporters"),
}


def run_gate(tmp_path, inventory):
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    markers = tmp_path / "markers"
    markers.mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv), GATE, "-e", "marker_dir=%s" % markers],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return proc, set(os.listdir(markers))


def test_valid_inventory_passes_and_touches_every_host(tmp_path):
    proc, touched = run_gate(tmp_path, copy.deepcopy(BASE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert touched == ALL_HOSTS


def test_valid_inventory_with_a_virtual_address_passes(tmp_path):
    inventory = copy.deepcopy(BASE)
    add_host(["edge"], "edge2", webfarm_address="10.0.0.4")(inventory)
    set_farm(webfarm_vip="10.0.0.100/24")(inventory)
    proc, touched = run_gate(tmp_path, inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert touched == ALL_HOSTS | {"edge2"}


def test_valid_inventory_with_a_monitoring_host_passes(tmp_path):
    inventory = copy.deepcopy(BASE)
    monitoring("mon1", monitoring_threshold_replica_lag_seconds=45,
               monitoring_receiver={"type": "email", "to": "ops@example.com", "from": "farm@example.com",
                                    "smarthost": "mail.example.com:587"})(inventory)
    proc, touched = run_gate(tmp_path, inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert touched == ALL_HOSTS | {"mon1"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_inventory_fails_in_preflight_and_touches_nothing(tmp_path, case):
    mutate, message = CASES[case]
    inventory = copy.deepcopy(BASE)
    mutate(inventory)
    proc, touched = run_gate(tmp_path, inventory)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, out
    assert message in out, out[-3000:]
    assert "s3cret-from-vault" not in out  # secrets never logged
    assert touched == set(), "preflight let the run reach %s" % sorted(touched)


def test_roles_read_the_model_preflight_stored_until_the_run_changes_the_primary(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(copy.deepcopy(BASE)))
    markers = tmp_path / "markers"
    markers.mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv), os.path.join(REPO, "tests", "integration", "model_shared.yml"),
         "-e", "marker_dir=%s" % markers], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for host in ALL_HOSTS:
        assert (markers / (host + ".before")).read_text().strip() == "stored", host
        # after the promotion the stored model no longer describes the run: recomputed, db2 primary
        assert (markers / (host + ".after")).read_text().split() == ["recomputed", "db2"], host
