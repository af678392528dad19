"""Backups of colo.webfarm.mysql on the replica (mariabackup, systemd timers)
and playbooks/db_restore.yml: a manual run gives a verifiable backup, the
drill restores a destroyed data directory and rolls forward to exactly a
noted GTID, retention by count and age, bad input refused with nothing
changed. The tests run in file order."""

import json
import os
import subprocess
import time

import pytest
import testinfra

PRIMARY, REPLICA = "db_backup-db1", "db_backup-db2"
DIR = "/var/backups/webfarm-db"
PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

testinfra_hosts = ["docker://" + REPLICA]


def node(name):
    return testinfra.get_host("docker://" + name)


def q(s):
    return "'" + s.replace("'", "'\\''") + "'"


def value(name, query):
    res = node(name).run("mariadb --batch --skip-column-names -e " + q(query))
    assert res.rc == 0, (name, query, res.stderr)
    return res.stdout.strip()


def wait_for(name, query, expected, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        res = node(name).run("mariadb --batch --skip-column-names -e " + q(query))
        if res.rc == 0 and res.stdout.strip() == expected:
            return
        time.sleep(0.3)
    pytest.fail("%s: %r did not return %r within %d s" % (name, query, expected, seconds))


def playbook(path, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, ".collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], path] + list(args),
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    return res.returncode, res.stdout + res.stderr


def backups():
    out = node(REPLICA).run("ls -1 %s" % DIR).stdout.split()
    return sorted(b for b in out if b.endswith("Z"))


def run_backup():
    res = node(REPLICA).run("systemctl start webfarm-db-backup.service")
    assert res.rc == 0, (res.stdout, res.stderr, node(REPLICA).run("journalctl -u webfarm-db-backup -n 30").stdout)


def test_timers_run_on_the_replica_only():
    for unit in ("webfarm-db-backup.timer", "webfarm-db-binlogs.timer"):
        assert node(REPLICA).run("systemctl is-enabled " + unit).stdout.strip() == "enabled"
        assert node(REPLICA).run("systemctl is-active " + unit).stdout.strip() == "active"
        assert not node(PRIMARY).file("/etc/systemd/system/" + unit).exists
    assert "OnCalendar=*-*-* 02:30:00" in node(REPLICA).file("/etc/systemd/system/webfarm-db-backup.timer").content_string
    assert node(REPLICA).file(DIR).mode == 0o700


def test_check_mode_on_the_converged_hosts_changes_nothing():
    rc, out = playbook("molecule/db_backup/converge.yml", "--check", "--diff")
    assert rc == 0, out[-4000:]
    recap = [line for line in out.splitlines() if line.startswith("db_backup-db")]
    assert len(recap) == 2 and all("changed=0" in line and "failed=0" in line for line in recap), recap


def test_a_manual_run_of_the_unit_gives_a_verifiable_backup():
    run_backup()
    name = backups()[-1]
    host = node(REPLICA)
    assert host.run("cd %s/%s && sha256sum --check --strict SHA256SUMS" % (DIR, name)).rc == 0
    meta = json.loads(host.file("%s/%s/backup.json" % (DIR, name)).content_string)
    assert meta["created"] == name and meta["bytes"] > 0, meta
    assert meta["host"] == host.run("hostname").stdout.strip(), meta
    # consistent with what the replica had applied (one domain: domain-server-seq)
    assert meta["gtid"].count("-") == 2, meta
    listing = host.run("tar -tzf %s/%s/data.tar.gz" % (DIR, name)).stdout
    assert "./ibdata1" in listing and "./xtrabackup_checkpoints" in listing, listing[:500]
    # prepared at backup time (MariaDB says log-applied, xtrabackup full-prepared): restorable as is
    checkpoints = host.run("tar -xzOf %s/%s/data.tar.gz ./xtrabackup_checkpoints" % (DIR, name)).stdout
    assert "backup_type = log-applied" in checkpoints or "backup_type = full-prepared" in checkpoints, checkpoints
    # a tampered copy fails the check
    assert host.run("cd %s/%s && sed 's/^./0/' SHA256SUMS | sha256sum --check --strict" % (DIR, name)).rc != 0


def test_drill_restore_a_destroyed_datadir_and_roll_forward_to_a_gtid():
    value(PRIMARY, "CREATE DATABASE IF NOT EXISTS drill; CREATE TABLE drill.t (id INT PRIMARY KEY); "
                   "INSERT INTO drill.t VALUES (1), (2), (3)")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", "3")
    run_backup()
    taken = backups()[-1]
    value(PRIMARY, "INSERT INTO drill.t VALUES (4); INSERT INTO drill.t VALUES (5); INSERT INTO drill.t VALUES (6)")
    gtid = value(PRIMARY, "SELECT @@gtid_binlog_pos")
    value(PRIMARY, "INSERT INTO drill.t VALUES (7); INSERT INTO drill.t VALUES (8)")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", "8")
    # the binary log timer's job, by hand
    assert node(REPLICA).run("systemctl start webfarm-db-binlogs.service").rc == 0
    # disaster: the replica's data directory is gone
    host = node(REPLICA)
    assert host.run("systemctl stop mariadb && rm -rf /var/lib/mysql/* && ls -A /var/lib/mysql | wc -l").stdout.strip() \
        == "0"
    rc, out = playbook("playbooks/db_restore.yml", "-e", "db_restore_host=" + REPLICA, "-e", "mysql_restore_gtid=" + gtid)
    assert rc == 0, out[-4000:]
    assert "RESTORED %s/%s" % (DIR, taken) in out and "rolled forward to %s" % gtid in out, out[-3000:]
    # exactly the rows up to the noted GTID: the backup's 3 and the roll-forward's 3
    assert value(REPLICA, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drill.t") == "1,2,3,4,5,6"
    assert value(REPLICA, "SELECT @@gtid_slave_pos") == gtid
    assert not host.file("/etc/mysql/mariadb.conf.d/62-webfarm-restore.cnf").exists


def test_retention_by_count_and_by_age():
    host = node(REPLICA)
    # newest by name but 30 days old: only the age rule removes it
    assert host.run("mkdir %s/29991231T000000Z && touch -d '30 days ago' %s/29991231T000000Z" % (DIR, DIR)).rc == 0
    run_backup()
    run_backup()
    kept = backups()
    assert "29991231T000000Z" not in kept, kept
    assert len(kept) == 3, kept


@pytest.mark.parametrize("extra,expected", [
    ("mysql_backup_keep=0", "mysql_backup_keep is '0' (expected at least 1"),
    ("mysql_backup_dir=var/backups", "mysql_backup_dir is 'var/backups' (expected an absolute directory"),
    ("mysql_backup_dir=/", "mysql_backup_dir is '/' (expected an absolute directory"),
])
def test_bad_backup_settings_are_refused_with_nothing_changed(extra, expected):
    script = node(REPLICA).file("/usr/local/sbin/webfarm-db-backup").md5sum
    before = backups()
    rc, out = playbook("molecule/db_backup/converge.yml", "-e", extra)
    assert rc != 0, out[-3000:]
    assert expected in out and "nothing was changed" in out, out[-3000:]
    assert "Install the server" not in out, out[-3000:]
    assert node(REPLICA).file("/usr/local/sbin/webfarm-db-backup").md5sum == script
    assert backups() == before


def test_restore_onto_the_running_primary_needs_confirmation():
    rows = value(PRIMARY, "SELECT COUNT(*) FROM drill.t")
    rc, out = playbook("playbooks/db_restore.yml", "-e", "db_restore_host=" + PRIMARY)
    assert rc != 0, out[-3000:]
    assert "host '%s' is a running primary (writable, replicates from nothing" % PRIMARY in out, out[-3000:]
    assert "confirm with -e mysql_restore_force=true; nothing was changed" in out, out[-3000:]
    assert "Stop the database server" not in out
    assert value(PRIMARY, "SELECT @@read_only") == "0"
    assert value(PRIMARY, "SELECT COUNT(*) FROM drill.t") == rows
    assert node(PRIMARY).run("ls -d /var/lib/mysql.before-restore-* 2>/dev/null").stdout == ""
