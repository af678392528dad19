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
COPY = "/var/backups/webfarm-db-copies/" + REPLICA
# the backup host's own key, as the backup script uses it
SSH = ("ssh -i /etc/webfarm-db-backup/copy_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
       "-o UserKnownHostsFile=/etc/webfarm-db-backup/known_hosts -o StrictHostKeyChecking=yes")
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
    # the checkpoints file: mariadb_backup_checkpoints from MariaDB 11 (Debian 13), xtrabackup_checkpoints before
    names = [n for n in ("./mariadb_backup_checkpoints", "./xtrabackup_checkpoints") if n in listing.split()]
    assert "./ibdata1" in listing and names, listing[:500]
    # prepared at backup time (MariaDB says log-applied, xtrabackup full-prepared): restorable as is
    checkpoints = host.run("tar -xzOf %s/%s/data.tar.gz %s" % (DIR, name, names[0])).stdout
    assert "backup_type = log-applied" in checkpoints or "backup_type = full-prepared" in checkpoints, checkpoints
    # a tampered copy fails the check
    assert host.run("cd %s/%s && sed 's/^0/1/; t; s/^./0/' SHA256SUMS | sha256sum --check --strict" % (DIR, name)).rc != 0


def test_each_backup_is_copied_to_the_other_host_and_verified_there():
    name = backups()[-1]
    dest = node(PRIMARY)
    assert dest.run("cd %s/%s && sha256sum --check --strict SHA256SUMS" % (COPY, name)).rc == 0
    assert dest.file(COPY + "/binlogs").is_directory
    assert dest.file(COPY).user == "webfarm-backup" and dest.file(COPY).mode == 0o700
    keys = dest.file("/var/backups/webfarm-db-copies/.ssh/authorized_keys")
    assert keys.user == "root" and keys.mode == 0o644
    assert keys.content_string.startswith(
        'restrict,from="172.29.23.42",command="/usr/local/sbin/webfarm-db-backup-receive %s" ssh-ed25519 ' % COPY), \
        keys.content_string
    # the key runs nothing but rsync into that directory and the checksum check
    res = node(REPLICA).run(SSH + " webfarm-backup@172.29.23.41 id")
    assert res.rc != 0 and "refused" in res.stderr, (res.stdout, res.stderr)
    res = node(REPLICA).run("rsync -e %s /etc/hostname webfarm-backup@172.29.23.41:../escape" % q(SSH))
    assert res.rc != 0, (res.stdout, res.stderr)
    assert not dest.file("/var/backups/webfarm-db-copies/escape").exists
    res = node(REPLICA).run("rsync -e %s webfarm-backup@172.29.23.41:%s/SHA256SUMS /tmp/read-back" % (q(SSH), name))
    assert res.rc != 0, "the key can read the copies back"
    # the destination's check catches a damaged copy; the next run repairs and verifies it
    assert dest.run("printf x >> %s/%s/data.tar.gz" % (COPY, name)).rc == 0
    res = node(REPLICA).run(SSH + " webfarm-backup@172.29.23.41 'verify %s'" % name)
    assert res.rc != 0 and "FAILED" in res.stdout + res.stderr, (res.stdout, res.stderr)
    run_backup()
    assert dest.run("cd %s/%s && sha256sum --check --strict SHA256SUMS" % (COPY, name)).rc == 0
    assert dest.run("cd %s/%s && sha256sum --check --strict SHA256SUMS" % (COPY, backups()[-1])).rc == 0


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


def test_drill_roll_forward_to_a_point_in_time():
    host = node(REPLICA)
    value(REPLICA, "START SLAVE")      # the drill above left replication stopped, as the restore says
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", "8")
    run_backup()
    taken = backups()[-1]
    value(PRIMARY, "INSERT INTO drill.t VALUES (9); INSERT INTO drill.t VALUES (10)")
    gtid = value(PRIMARY, "SELECT @@gtid_binlog_pos")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", "10")
    time.sleep(1.3)    # binlog timestamps have whole seconds: the noted time is after row 10's second
    at = host.run("date -u '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    time.sleep(1.3)    # and row 11 is written in a later second
    value(PRIMARY, "INSERT INTO drill.t VALUES (11)")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", "11")
    assert host.run("systemctl start webfarm-db-binlogs.service").rc == 0
    assert host.run("systemctl stop mariadb && rm -rf /var/lib/mysql/*").rc == 0
    rc, out = playbook("playbooks/db_restore.yml", "-e", "db_restore_host=" + REPLICA,
                       "-e", json.dumps({"mysql_restore_datetime": at}))
    assert rc == 0, out[-4000:]
    assert "RESTORED %s/%s" % (DIR, taken) in out and "rolled forward to %s UTC" % at in out, out[-3000:]
    assert "the server holds GTID %s." % gtid in out, out[-3000:]
    # exactly the rows written before the noted time: the backup's 8 and rows 9 and 10, not 11
    assert value(REPLICA, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drill.t") == "1,2,3,4,5,6,7,8,9,10"
    assert value(REPLICA, "SELECT @@gtid_slave_pos") == gtid
    # replication continues from there: row 11 arrives from the primary
    value(REPLICA, "START SLAVE")
    wait_for(REPLICA, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drill.t", "1,2,3,4,5,6,7,8,9,10,11")


@pytest.mark.parametrize("extra,expected", [
    ({"mysql_restore_datetime": "yesterday"}, "mysql_restore_datetime is 'yesterday' (expected at most one"),
    ({"mysql_restore_datetime": "2026-12-01 10:00:00", "mysql_restore_gtid": "0-1-3"},
     "mysql_restore_gtid is '0-1-3' and mysql_restore_datetime is '2026-12-01 10:00:00' (expected at most one"),
])
def test_bad_roll_forward_targets_are_refused_with_nothing_changed(extra, expected):
    rows = value(REPLICA, "SELECT COUNT(*) FROM drill.t")
    rc, out = playbook("playbooks/db_restore.yml", "-e", "db_restore_host=" + REPLICA, "-e", json.dumps(extra))
    assert rc != 0 and expected in out and "nothing was changed" in out, out[-3000:]
    assert "Stop the database server" not in out, out[-3000:]
    assert value(REPLICA, "SELECT COUNT(*) FROM drill.t") == rows


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


def test_restore_the_primary_and_reseed_the_replica_from_it():
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t", value(PRIMARY, "SELECT COUNT(*) FROM drill.t"))
    run_backup()
    taken = backups()[-1]
    in_backup = value(REPLICA, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drill.t")
    # after the backup: a row on the primary (replicated) and a local row on the replica only (unlogged)
    value(PRIMARY, "INSERT INTO drill.t VALUES (100)")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t WHERE id = 100", "1")
    value(REPLICA, "SET SESSION sql_log_bin=0; CREATE DATABASE replica_only")
    # the copy on the primary (pushed by the backup run): the primary is restored from it
    assert node(PRIMARY).run("cd %s/%s && sha256sum --check --strict SHA256SUMS" % (COPY, taken)).rc == 0
    rc, out = playbook("playbooks/db_restore.yml", "-e", "db_restore_host=" + PRIMARY, "-e", "mysql_backup_dir=" + COPY,
                       "-e", "mysql_restore_force=true", "-e", "db_restore_reseed=true")
    assert rc == 0, out[-4000:]
    assert "RESTORED %s/%s" % (COPY, taken) in out, out[-3000:]
    assert "Stream the dump from the primary into the replica" in out, out[-3000:]
    # both servers hold exactly the backup: the later row and the replica's own database are gone
    for name in (PRIMARY, REPLICA):
        assert value(name, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drill.t") == in_backup, name
    assert value(REPLICA, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'replica_only'") == "0"
    assert value(PRIMARY, "SELECT @@read_only") == "0" and value(REPLICA, "SELECT @@read_only") == "1"
    # the replica follows the restored primary, and new writes arrive
    st = node(REPLICA).run("mariadb -e 'SHOW SLAVE STATUS\\G'").stdout
    assert "Master_Host: 172.29.23.41" in st and "Slave_SQL_Running: Yes" in st, st
    value(PRIMARY, "INSERT INTO drill.t VALUES (101)")
    wait_for(REPLICA, "SELECT COUNT(*) FROM drill.t WHERE id = 101", "1")
    # the seed left no dump and no seeding account
    assert value(PRIMARY, "SELECT COUNT(*) FROM mysql.user WHERE User = 'webfarm_seed'") == "0"
    assert node(REPLICA).run("ls -d /var/tmp/webfarm-seed-* 2>/dev/null").stdout == ""
