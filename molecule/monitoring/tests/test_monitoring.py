"""Behaviour of colo.webfarm.monitoring and colo.webfarm.exporters.

The controller is the farm's admin network (172.29.26.1), so it queries
Prometheus (172.29.26.5:9090) and Alertmanager (:9093) directly. Failures are
caused in containers with docker exec and undone at the end of each test.
Every wait is bounded.
"""

import calendar
import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check  # noqa: E402

MON = "172.29.26.5"
PROM = "http://%s:9090" % MON
AM = "http://%s:9093" % MON
LB = "172.29.26.20"
WAIT = 120  # seconds, for any alert (scrape 2 s, evaluation 2 s, for 4 s, HAProxy's detection)

# what the scenario's topology must give (molecule.yml): job -> hosts
EXPECTED = {
    "node": {"monitoring-mon1", "monitoring-lb1", "monitoring-web1", "monitoring-web2",
             "monitoring-db1", "monitoring-db2", "monitoring-nfs1"},
    "haproxy": {"monitoring-lb1"},
    "apache": {"monitoring-web1", "monitoring-web2"},
    "mysqld": {"monitoring-db1", "monitoring-db2"},
    "redis": {"monitoring-db2"},
    "prometheus": {"monitoring-mon1"},
    "alertmanager": {"monitoring-mon1"},
}
# every port an exporter or the monitoring services listen on: (address, port)
EXPORTER_PORTS = (
    [(a, 9100) for a in ("172.29.26.5", "172.29.26.20", "172.29.26.31", "172.29.26.32",
                         "172.29.26.41", "172.29.26.42", "172.29.26.50")]
    + [("172.29.26.20", 8404), ("172.29.26.31", 9117), ("172.29.26.32", 9117),
       ("172.29.26.41", 9104), ("172.29.26.42", 9104), ("172.29.26.42", 9121),
       (MON, 9090), (MON, 9093), (MON, 9115), (MON, 9094)]
    # the loopback status virtual host and PHP-FPM's status listener of the web nodes
    + [(a, p) for a in ("172.29.26.31", "172.29.26.32") for p in (9180, 9181)]
)

# every alert rule the role deploys (roles/monitoring/README.md, Alerts)
RULES = ("WebfarmTargetDown", "WebfarmBackendDown", "WebfarmBackendAllDown", "WebfarmWebServerDown",
         "WebfarmPhpFpmDown", "WebfarmPhpFpmMaxChildren", "WebfarmNfsUnreachable",
         "WebfarmReplicaIOThreadStopped", "WebfarmReplicaSQLThreadStopped", "WebfarmReplicaNotReplicating",
         "WebfarmReplicaLag", "WebfarmSemiSyncFellBackToAsync", "WebfarmVipNoHolder", "WebfarmVipSplitBrain",
         "WebfarmCertificateExpiring", "WebfarmTLSProbeFailed", "WebfarmDbBackupTooOld", "WebfarmDbDiskFilling")

testinfra_hosts = ["ansible://monitoring-outsider"]


def docker(*args, timeout=60, check=False):
    res = subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def query(expr):
    return get(PROM + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]


def active_targets():
    return get(PROM + "/api/v1/targets?state=active")["data"]["activeTargets"]


def am_alerts():
    return get(AM + "/api/v2/alerts?active=true&silenced=false&inhibited=false")


def webhook_alerts():
    out = docker("exec", "monitoring-mon1", "cat", "/var/lib/webhook-recorder/alerts.jsonl", timeout=10).stdout
    alerts = []
    for line in out.splitlines():
        if line.strip():
            doc = json.loads(line)
            alerts.extend(a for a in doc.get("alerts", []) if a.get("status") == "firing")
    return alerts


def matches(alert, labels):
    return all(alert.get("labels", {}).get(k) == v for k, v in labels.items())


def wait_alert(labels, bound=WAIT):
    """Seconds until an alert with these labels is active in Alertmanager AND
    recorded by the webhook receiver; fails after ``bound`` seconds."""
    t0 = time.time()
    in_am = in_hook = False
    while time.time() - t0 < bound:
        in_am = in_am or any(matches(a, labels) for a in am_alerts())
        in_hook = in_hook or any(matches(a, labels) for a in webhook_alerts())
        if in_am and in_hook:
            return time.time() - t0
        time.sleep(1)
    pytest.fail("alert %s within %d s: in Alertmanager %s, at the webhook %s; firing now: %s"
                % (labels, bound, in_am, in_hook,
                   sorted({a["labels"]["alertname"] for a in am_alerts()})))


def wait_until(check, bound, what):
    t0 = time.time()
    last = None
    while time.time() - t0 < bound:
        ok, last = check()
        if ok:
            return
        time.sleep(1)
    pytest.fail("%s within %d s; last: %s" % (what, bound, last))


def test_every_expected_target_is_up():
    def check():
        seen = {}
        for t in active_targets():
            seen.setdefault(t["labels"]["job"], {})[t["labels"].get("host", t["labels"]["instance"])] = t["health"]
        missing = {j: sorted(h - set(seen.get(j, {}))) for j, h in EXPECTED.items() if h - set(seen.get(j, {}))}
        down = {(j, h): s for j, hs in seen.items() for h, s in hs.items() if s != "up"}
        return not missing and not down, {"missing": missing, "not up": down}
    wait_until(check, 90, "every expected target up")
    # the blackbox probe of the public TLS endpoint (HAProxy terminates TLS on lb1)
    probe = query('probe_success{job="blackbox_tls"}')
    assert [(p["metric"]["instance"], p["value"][1]) for p in probe] == [("%s:443" % LB, "1")]
    # no more jobs than the topology gives
    assert {t["labels"]["job"] for t in active_targets()} == set(EXPECTED) | {"blackbox_tls"}


def test_check_mode_on_the_converged_farm_changes_nothing_and_prints_no_secret():
    """site.yml --check --diff with the monitoring play: no failure, changed=0
    on every host (monitoring host and exporters included), no secret of the
    scenario in the output (the exporter's database password among them)."""
    out, recap = drift_check(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"))
    assert set(EXPECTED["node"]) <= set(recap), recap
    assert all(r["changed"] == 0 for r in recap.values()), recap
    for secret in ("molecule-monitoring-app-password", "molecule-monitoring-redis-password",
                   "molecule-monitoring-exporter-password", "molecule-monitoring-replication-password",
                   "molecule-monitoring-stats-password"):
        assert secret not in out, secret


def test_exporters_report_what_the_alerts_need():
    def value(expr):
        r = query(expr)
        return r[0]["value"][1] if r else None
    assert value('mysql_slave_status_slave_io_running{host="monitoring-db2"}') == "1"
    assert value('mysql_slave_status_slave_sql_running{host="monitoring-db2"}') == "1"
    assert value('mysql_global_variables_rpl_semi_sync_master_enabled{host="monitoring-db1"}') == "1"
    assert value('mysql_global_status_rpl_semi_sync_master_status{host="monitoring-db1"}') == "1"
    assert value('haproxy_server_status{host="monitoring-lb1",server="monitoring-web1",state="UP"}') == "1"
    assert value('apache_up{host="monitoring-web1"}') == "1"
    assert value('redis_up{host="monitoring-db2"}') == "1"
    # the exporter account can do no more than monitor
    grants = docker("exec", "monitoring-db1", "mariadb", "-N", "-e", "SHOW GRANTS FOR 'webfarm_exporter'@'localhost'",
                    check=True).stdout
    assert "PROCESS" in grants and "SLAVE MONITOR" in grants and "BINLOG MONITOR" in grants, grants
    assert "SELECT" not in grants and "ALL PRIVILEGES" not in grants and "SUPER" not in grants, grants
    # every rule loaded and healthy; nothing fires on the healthy farm
    rules = [r for g in get(PROM + "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(RULES), sorted(r["name"] for r in rules)
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    firing = {a["labels"]["alertname"] for a in am_alerts()} - {"WebfarmDbDiskFilling"}
    assert firing == set(), firing


def test_outsider_reaches_no_exporter_port(host):
    # every probe at once (each bounded by its own 3 s timeout), not one after another
    probes = " ".join("(timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null && echo open %s:%d) &"
                      % (address, port, address, port) for address, port in EXPORTER_PORTS)
    res = host.run("%s wait; echo probed" % probes)
    assert res.stdout.strip().endswith("probed"), res
    opened = [line for line in res.stdout.splitlines() if line.startswith("open ")]
    assert not opened, "the outsider connected to %s" % opened
    # control: the same kind of probe does connect where the farm allows the outsider (HTTPS on lb1)
    assert host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/%s/443'" % LB).rc == 0


def test_php_fpm_status_is_published_for_every_web_node():
    """PHP-FPM's pool status (node exporter textfile, every 2 s here) for both
    web nodes; HAProxy's health checks run PHP, so the accepted connections grow."""
    def counts():
        got = {r["metric"]["host"]: float(r["value"][1]) for r in query("webfarm_phpfpm_accepted_conn")}
        up = {r["metric"]["host"]: r["value"][1] for r in query("webfarm_phpfpm_up")}
        return set(got) == set(EXPECTED["apache"]) and set(up.values()) == {"1"}, (got, up)
    wait_until(counts, 30, "PHP-FPM status of both web nodes")
    first = counts()[1][0]
    for h in EXPECTED["apache"]:
        (procs,) = query('webfarm_phpfpm_total_processes{host="%s"}' % h)
        assert float(procs["value"][1]) >= 1, procs
    wait_until(lambda: (all(counts()[1][0].get(h, 0) > first[h] for h in first), counts()[1][0]), 30,
               "accepted connections growing on both pools")


def test_stopped_web_node_and_php_fpm_raise_their_alerts():
    """Apache stopped on web1 (backend down) while PHP-FPM is stopped on web2
    (pool down): both alerts, waited for together."""
    docker("exec", "monitoring-web1", "systemctl", "stop", "apache2", check=True)
    docker("exec", "monitoring-web2", "sh", "-c", "systemctl stop 'php*-fpm.service'", check=True)
    try:
        took = wait_alert({"alertname": "WebfarmBackendDown", "server": "monitoring-web1"})
        print("backend-down alert reached Alertmanager and the webhook in %.1f s" % took)
        took = wait_alert({"alertname": "WebfarmPhpFpmDown", "host": "monitoring-web2"})
        print("PHP-FPM-down alert reached Alertmanager and the webhook %.1f s later" % took)
    finally:
        docker("exec", "monitoring-web1", "systemctl", "start", "apache2", check=True)
        docker("exec", "monitoring-web2", "sh", "-c", "systemctl start $(systemctl list-unit-files --plain --no-legend "
               "'php*-fpm.service' | cut -d' ' -f1)", check=True)


def test_stopped_replication_raises_replication_alert():
    docker("exec", "monitoring-db2", "mariadb", "-e", "STOP SLAVE", check=True)
    try:
        took = wait_alert({"alertname": "WebfarmReplicaIOThreadStopped", "host": "monitoring-db2"})
        print("replication alert reached Alertmanager and the webhook in %.1f s" % took)
        wait_alert({"alertname": "WebfarmReplicaSQLThreadStopped", "host": "monitoring-db2"})
    finally:
        docker("exec", "monitoring-db2", "mariadb", "-e", "START SLAVE", check=True)


def test_certificate_expiring_in_two_days_raises_expiry_alert():
    pem = "/etc/ssl/webfarm/webfarm.pem"
    assert not any(a["labels"]["alertname"] == "WebfarmCertificateExpiring" for a in am_alerts())
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=%s" % LB, "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=60)
        combined = os.path.join(tmp, "short.pem")
        with open(combined, "w") as f:
            f.write(open(crt).read() + open(key).read())
        docker("cp", combined, "monitoring-lb1:/tmp/short.pem", check=True)
    docker("exec", "monitoring-lb1", "sh", "-c",
           "cp -p %s /tmp/webfarm.pem.orig && cp /tmp/short.pem %s && chown --reference=/tmp/webfarm.pem.orig %s "
           "&& chmod --reference=/tmp/webfarm.pem.orig %s && systemctl reload haproxy" % (pem, pem, pem, pem),
           check=True)
    try:
        took = wait_alert({"alertname": "WebfarmCertificateExpiring", "instance": "%s:443" % LB})
        print("certificate expiry alert reached Alertmanager and the webhook in %.1f s" % took)
        left = float(query('probe_ssl_earliest_cert_expiry{instance="%s:443"} - time()' % LB)[0]["value"][1])
        assert 0 < left <= 2 * 86400 + 60, left
    finally:
        docker("exec", "monitoring-lb1", "sh", "-c",
               "cp -p /tmp/webfarm.pem.orig %s && systemctl reload haproxy" % pem, check=True)


NFS = "monitoring-nfs1"
NFS_ADDRESS = "172.29.26.50:2049"


def nfs_up():
    """{web node: webfarm_nfs_server_up} for the scenario's NFS server."""
    return {r["metric"]["host"]: r["value"][1]
            for r in query('webfarm_nfs_server_up{server="%s",address="%s"}' % (NFS, NFS_ADDRESS))}


def test_stopped_nfs_server_raises_nfs_alert():
    """Both web nodes report the NFS server reachable, nothing fires; with
    nfs-ganesha stopped on nfs1 each web node's probe (a TCP connection to
    2049 within 3 s, published through the node exporter's textfile) drops to
    0 and WebfarmNfsUnreachable reaches Alertmanager and the webhook for
    each; with ganesha started again the probes are back to 1."""
    web = {"monitoring-web1", "monitoring-web2"}
    wait_until(lambda: (nfs_up() == {h: "1" for h in web}, nfs_up()), 60, "both web nodes reach the NFS server")
    assert not any(a["labels"]["alertname"] == "WebfarmNfsUnreachable" for a in am_alerts())
    docker("exec", NFS, "systemctl", "stop", "nfs-ganesha", check=True)
    try:
        for h in sorted(web):
            took = wait_alert({"alertname": "WebfarmNfsUnreachable", "host": h, "server": NFS})
            print("NFS-unreachable alert for %s reached Alertmanager and the webhook in %.1f s" % (h, took))
        assert nfs_up() == {h: "0" for h in web}, nfs_up()
    finally:
        docker("exec", NFS, "systemctl", "start", "nfs-ganesha", check=True)
    wait_until(lambda: (nfs_up() == {h: "1" for h in web}, nfs_up()), 60, "both web nodes reach the NFS server again")


BACKUP_HOST = "monitoring-db2"  # the first replica takes the backups (mysql_backup_host empty)
BACKUP_DIR = "/var/backups/webfarm-db"


def backups():
    out = docker("exec", BACKUP_HOST, "find", BACKUP_DIR, "-mindepth", "1", "-maxdepth", "1", "-type", "d",
                 "-name", "2*Z", "-printf", "%f\\n", check=True).stdout
    return sorted(out.split())


def test_stale_backup_raises_backup_age_alert():
    """A real backup on the backup host publishes its age (node exporter
    textfile): fresh, no alert, and the allowed age follows the schedule (daily
    at 02:30 plus 15 min of randomized delay). The newest backup then made three
    days old (its directory renamed) and the metrics re-published by the binary
    log copy, as its timer does every 15 minutes: WebfarmDbBackupTooOld."""
    docker("exec", BACKUP_HOST, "timeout", "240", "systemctl", "start", "webfarm-db-backup.service",
           check=True, timeout=250)
    newest = backups()[-1]
    taken = calendar.timegm(time.strptime(newest, "%Y%m%dT%H%M%SZ"))

    def fresh():
        got = {r["metric"]["__name__"]: float(r["value"][1])
               for r in query('{__name__=~"webfarm_db_backup_.*",host="%s"}' % BACKUP_HOST)}
        return got.get("webfarm_db_backup_newest_timestamp_seconds") == taken, got
    wait_until(fresh, 30, "the new backup's time in Prometheus")
    (allowed,) = query('webfarm_db_backup_allowed_age_seconds{host="%s"}' % BACKUP_HOST)
    assert float(allowed["value"][1]) == 86400 + 900
    assert not any(a["labels"]["alertname"] == "WebfarmDbBackupTooOld" for a in am_alerts())
    old = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(taken - 3 * 86400))
    docker("exec", BACKUP_HOST, "mv", "%s/%s" % (BACKUP_DIR, newest), "%s/%s" % (BACKUP_DIR, old), check=True)
    try:
        docker("exec", BACKUP_HOST, "/usr/local/sbin/webfarm-db-backup", "--binlogs-only", check=True)
        took = wait_alert({"alertname": "WebfarmDbBackupTooOld", "host": BACKUP_HOST})
        print("backup-age alert reached Alertmanager and the webhook in %.1f s" % took)
    finally:
        docker("exec", BACKUP_HOST, "mv", "%s/%s" % (BACKUP_DIR, old), "%s/%s" % (BACKUP_DIR, newest), check=True)
        docker("exec", BACKUP_HOST, "/usr/local/sbin/webfarm-db-backup", "--metrics-only", check=True)


PROMTOOL_RULE_TESTS = """
rule_files: [/etc/prometheus/rules/webfarm.rules.yml]
evaluation_interval: 1s
tests:
  - interval: 1s
    input_series:
      - series: 'webfarm_nfs_server_up{job="node",instance="10.9.0.11:9100",host="web1",tier="web",server="nfs1",address="10.9.0.20:2049"}'
        values: '1x4 0x30'
      - series: 'webfarm_nfs_server_up{job="node",instance="10.9.0.12:9100",host="web2",tier="web",server="nfs1",address="10.9.0.20:2049"}'
        values: '1x34'
      - series: 'webfarm_vip_held{job="node",instance="10.9.0.3:9100",host="lb1",tier="balancers",vip="front",address="10.9.0.100"}'
        values: '1x4 0x30'
      - series: 'webfarm_vip_held{job="node",instance="10.9.0.4:9100",host="lb2",tier="balancers",vip="front",address="10.9.0.100"}'
        values: '0x34'
      - series: 'webfarm_vip_held{job="node",instance="10.9.0.3:9100",host="lb1",tier="balancers",vip="back",address="10.9.0.101"}'
        values: '1x34'
      - series: 'webfarm_vip_held{job="node",instance="10.9.0.4:9100",host="lb2",tier="balancers",vip="back",address="10.9.0.101"}'
        values: '0x4 1x30'
    alert_rule_test:
      - eval_time: 3s
        alertname: WebfarmNfsUnreachable
        exp_alerts: []
      - eval_time: 20s
        alertname: WebfarmNfsUnreachable
        exp_alerts:
          - exp_labels: {severity: critical, job: node, instance: "10.9.0.11:9100", host: web1, tier: web,
                         server: nfs1, address: "10.9.0.20:2049"}
            exp_annotations:
              summary: "web node web1 cannot reach the NFS server nfs1 (10.9.0.20:2049)"
      - eval_time: 3s
        alertname: WebfarmVipNoHolder
        exp_alerts: []
      - eval_time: 20s
        alertname: WebfarmVipNoHolder
        exp_alerts:
          - exp_labels: {severity: critical, vip: front, address: "10.9.0.100"}
            exp_annotations:
              summary: "virtual address front (10.9.0.100) is held by no peer"
      - eval_time: 20s
        alertname: WebfarmVipSplitBrain
        exp_alerts:
          - exp_labels: {severity: critical, vip: back, address: "10.9.0.101"}
            exp_annotations:
              summary: "virtual address back (10.9.0.101) is held by 2 peers"
"""


def test_deployed_nfs_and_vip_rules_fire_on_their_series():
    """The scenario has no VRRP pair, so the deployed rules of WebfarmVipNoHolder
    and WebfarmVipSplitBrain are checked with promtool on series shaped like
    the textfile metrics (a VIP left by its holder, a VIP taken by both peers),
    and WebfarmNfsUnreachable's exact labels and summary as well (it also fires
    live: test_stopped_nfs_server_raises_nfs_alert); quiet before the condition
    has held for monitoring_alert_for."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(PROMTOOL_RULE_TESTS)
        f.flush()
        docker("cp", f.name, "monitoring-mon1:/tmp/webfarm-rule-tests.yml", check=True)
    res = docker("exec", "monitoring-mon1", "promtool", "test", "rules", "/tmp/webfarm-rule-tests.yml", timeout=60)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
