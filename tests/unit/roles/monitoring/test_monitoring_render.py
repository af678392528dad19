"""Rendering of the monitoring role's files on the controller (no host needed):
the Windows job (windows_exporter) appears exactly when switched on, every
target has its host and tier labels, and each receiver type renders."""

import os
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))


def render(tmp_path, farm_vars=None, mon_vars=None):
    with open(os.path.join(REPO, "roles", "monitoring", "defaults", "main.yml")) as f:
        defaults = yaml.safe_load(f)
    inv = {"all": {"vars": defaults, "children": {"webfarm": {
        "vars": dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                      "webfarm_admin_networks": ["10.0.9.0/24"]}, **(farm_vars or {})),
        "children": {
            "balancers": {"hosts": {"lb1": {"webfarm_address": "10.0.0.3"}}},
            "web": {"children": {"web_linux": {"hosts": {"web1": {"webfarm_address": "10.0.0.11"}}},
                                 "web_windows": {"hosts": {"win1": {"webfarm_address": "10.0.0.51"}}}}},
            "monitoring": {"hosts": {"mon1": {"webfarm_address": "10.0.0.40"}}, "vars": mon_vars or {}},
        }}}}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), os.path.join(HERE, "render.yml"),
                           "-e", "out_dir=%s" % out], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {f: yaml.safe_load((out / f).read_text()) for f in os.listdir(out)}


def jobs(files):
    return {j["job_name"]: j for j in files["prometheus.yml"]["scrape_configs"]}


def test_windows_exporter_scraped_only_when_switched_on(tmp_path):
    off = jobs(render(tmp_path / "a"))
    assert "windows" not in off
    on = jobs(render(tmp_path / "b", farm_vars={"webfarm_monitoring_exporters": {"windows": True}}))
    assert on["windows"]["static_configs"] == [
        {"targets": ["10.0.0.51:9182"], "labels": {"host": "win1", "tier": "web"}}]
    assert on["haproxy"]["static_configs"][0]["targets"] == ["10.0.0.3:8404"]
    assert on["apache"]["static_configs"][0]["targets"] == ["10.0.0.11:9117"]
    # no edge: the balancer is the public TLS endpoint the blackbox exporter probes
    assert on["blackbox_tls"]["static_configs"] == [{"targets": ["10.0.0.3:443"]}]
    assert on["blackbox_tls"]["relabel_configs"][-1]["replacement"] == "127.0.0.1:9115"


@pytest.mark.parametrize("receiver, key", [
    ({"type": "webhook", "url": "http://hook.example.net:8080/x"}, "webhook_configs"),
    ({"type": "email", "to": "ops@example.com", "from": "farm@example.com", "smarthost": "mail.example.com:587"},
     "email_configs"),
    ({"type": "none"}, None),
])
def test_receivers_render(tmp_path, receiver, key):
    files = render(tmp_path, mon_vars={"monitoring_receiver": receiver, "monitoring_threshold_replica_lag_seconds": 45})
    am = files["alertmanager.yml"]
    assert am["route"]["receiver"] == "webfarm"
    (rcv,) = am["receivers"]
    if key is None:
        assert rcv == {"name": "webfarm"}
    else:
        (cfg,) = rcv[key]
        for k, v in receiver.items():
            if k != "type":
                assert cfg[k] == v
    rules = {r["alert"]: r for g in files["webfarm.rules.yml"]["groups"] for r in g["rules"]}
    assert rules["WebfarmReplicaLag"]["expr"] == "mysql_slave_status_seconds_behind_master > 45"


def test_backup_nfs_and_php_fpm_rules_render(tmp_path):
    files = render(tmp_path, mon_vars={"monitoring_threshold_backup_late_minutes": 90})
    rules = {r["alert"]: r for g in files["webfarm.rules.yml"]["groups"] for r in g["rules"]}
    assert rules["WebfarmDbBackupTooOld"]["expr"] == (
        "time() - webfarm_db_backup_newest_timestamp_seconds > webfarm_db_backup_allowed_age_seconds + 90 * 60")
    assert "late by over 90 min" in rules["WebfarmDbBackupTooOld"]["annotations"]["summary"]
    assert rules["WebfarmNfsUnreachable"]["expr"] == "webfarm_nfs_server_up == 0"
    assert rules["WebfarmPhpFpmDown"]["expr"] == "webfarm_phpfpm_up == 0"
    assert rules["WebfarmPhpFpmMaxChildren"]["expr"] == "increase(webfarm_phpfpm_max_children_reached[10m]) > 0"
