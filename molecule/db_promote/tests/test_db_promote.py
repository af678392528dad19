"""playbooks/db_promote.yml against a primary and two replicas: refusals
first (errant candidate, candidate that cannot catch up), then a switchover,
the inventory change and repoint, then a failover with the primary stopped.
The tests run in file order and each leaves the state the next one expects."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
import testinfra
import yaml

P = "db_promote-"
ADDR = {P + "db1": "172.29.17.41", P + "db2": "172.29.17.42", P + "db3": "172.29.17.43", P + "web1": "172.29.17.31"}
APP = ("shopapp", "app-Secret-17")
PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

testinfra_hosts = ["docker://db_promote-web1"]


def node(name):
    return testinfra.get_host("docker://" + name)


def q(s):
    return "'" + s.replace("'", "'\\''") + "'"


def value(name, query):
    res = node(name).run("mariadb --batch --skip-column-names -e " + q(query))
    assert res.rc == 0, (name, query, res.stderr)
    return res.stdout.strip()


def app(server, query):
    return node(P + "web1").run("mariadb --batch --skip-column-names --connect-timeout=5 -u %s -p%s -h %s -e %s"
                                % (APP[0], APP[1], ADDR[server], q(query)))


def status(name):
    out = node(name).run("mariadb -e 'SHOW SLAVE STATUS\\G'").stdout
    return {k.strip(): v.strip() for k, s, v in (line.partition(":") for line in out.splitlines()) if s}


def wait_for(name, query, expected, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if value(name, query) == expected:
            return
        time.sleep(0.3)
    pytest.fail("%s: %r did not return %r within %d s" % (name, query, expected, seconds))


def inventory(primary=None):
    """The molecule inventory, or a copy with `primary` moved into db_primary."""
    src = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]) \
        if os.path.isfile(os.environ["MOLECULE_INVENTORY_FILE"]) else os.environ["MOLECULE_INVENTORY_FILE"]
    if primary is None:
        return src
    tmp = tempfile.mkdtemp(prefix="db_promote-inv-")
    dst = os.path.join(tmp, "inventory")
    shutil.copytree(src, dst)
    path = os.path.join(dst, "ansible_inventory.yml")
    with open(path) as f:
        inv = yaml.safe_load(f)
    hosts = dict(inv["db_primary"]["hosts"])
    hosts.update(inv["db_replicas"]["hosts"])
    inv["db_primary"]["hosts"] = {primary: hosts.pop(primary)}
    inv["db_replicas"]["hosts"] = hosts
    with open(path, "w") as f:
        yaml.safe_dump(inv, f)
    return dst


def playbook(path, inv, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, ".collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(["ansible-playbook", "-i", inv, path] + list(args), cwd=PROJECT,
                         env=env, capture_output=True, text=True, timeout=600)
    return res.returncode, res.stdout + res.stderr


def promote(inv, *extra):
    args = []
    for e in extra:
        args += ["-e", e]
    return playbook("playbooks/db_promote.yml", inv, *args)


APP_CONFIG = "/var/www/webfarm/config/config.php"
# Writes a row through the reference app's rendered settings (its own connect()).
APP_WRITE = ('require "/var/www/webfarm/src/App.php"; $c = Webfarm\\App::loadConfig(); '
             '$p = Webfarm\\App::connect($c["db"], $c["db"]["host"], (int) $c["db"]["port"]); '
             '$p->exec("INSERT INTO shop.marker VALUES (\'" . $argv[1] . "\')"); echo $c["db"]["host"];')


def app_settings_host():
    """The primary the reference app's rendered settings name."""
    res = node(P + "web1").run("php -r %s" % q('echo (require "%s")["db"]["host"];' % APP_CONFIG))
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def app_write(token):
    return node(P + "web1").run("php -r %s %s" % (q(APP_WRITE), token))


def test_app_settings_name_the_inventory_primary_before_any_promotion():
    assert app_settings_host() == ADDR[P + "db1"]


def test_errant_candidate_aborts_and_leaves_the_primary_untouched():
    db1, db2 = P + "db1", P + "db2"
    value(db2, "SET SESSION sql_log_bin=1; CREATE DATABASE errant_probe")   # a local write: errant GTID
    try:
        rc, out = promote(inventory(), "mode=switchover", "candidate=" + db2)
        assert rc != 0, out[-2000:]
        assert "has errant GTIDs" in out and "untouched" in out, out[-3000:]
        # the old extra var names still work, with a deprecation warning naming the new ones
        assert "DEPRECATED: -e mode=... and -e candidate=... still work but will be removed; use " \
               "-e db_promote_mode=switchover -e db_promote_candidate=%s instead" % db2 in out, out[-3000:]
        assert value(db1, "SELECT @@read_only") == "0"
        assert status(db1) == {}
        st = status(db2)
        assert st["Master_Host"] == ADDR[db1] and st["Slave_SQL_Running"] == "Yes", st
    finally:
        # the documented repair: undo the local change unlogged, clear the local binlog
        value(db2, "SET SESSION sql_log_bin=0; DROP DATABASE IF EXISTS errant_probe")
        pos = value(db2, "SELECT @@gtid_slave_pos")
        value(db2, "RESET MASTER; SET GLOBAL gtid_binlog_state = '%s'" % pos)
        assert value(db2, "SELECT @@gtid_binlog_pos") == pos


def test_candidate_that_cannot_catch_up_aborts_and_leaves_the_primary_frozen():
    db1, db2 = P + "db1", P + "db2"
    value(db1, "CREATE TABLE IF NOT EXISTS shop.blocker (token CHAR(32) PRIMARY KEY)")
    wait_for(db2, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'blocker'", "1")
    # a session on the candidate holds the table, so its SQL thread cannot apply the next row
    node(db2).run("nohup mariadb -e 'LOCK TABLES shop.blocker WRITE; SELECT SLEEP(300)' >/dev/null 2>&1 &")
    wait_for(db2, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(300)%'", "1")
    token = uuid.uuid4().hex
    try:
        value(db1, "INSERT INTO shop.blocker VALUES ('%s')" % token)
        time.sleep(1)
        # (reading the locked table would wait: compare positions instead)
        assert value(db2, "SELECT @@gtid_slave_pos") != value(db1, "SELECT @@gtid_binlog_pos"), "lock did not block"
        rc, out = promote(inventory(), "mode=switchover", "candidate=" + db2, "db_promote_wait_timeout=3")
        assert rc != 0, out[-2000:]
        assert "did not apply position" in out and "stays FROZEN" in out, out[-3000:]
        assert value(db1, "SELECT @@read_only") == "1"     # frozen, not promoted away
        assert status(db1) == {}
        assert status(db2)["Master_Host"] == ADDR[db1]     # the candidate is still a replica
        assert value(db2, "SELECT @@read_only") == "1"
    finally:
        ids = value(db2, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(300)%'").split()
        for i in ids:
            value(db2, "KILL %s" % i)
        value(db1, "SET GLOBAL read_only = 0")
    wait_for(db2, "SELECT COUNT(*) FROM shop.blocker WHERE token = '%s'" % token, "1")


ROLE_CONF = "/etc/mysql/mariadb.conf.d/61-webfarm-role.cnf"
SERVER_CONF = "/etc/mysql/mariadb.conf.d/60-webfarm.cnf"


def test_switchover_moves_the_primary_and_the_marker_travels_to_the_old_primary():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    rc, out = promote(inventory(), "db_promote_mode=switchover")     # candidates tie: the first by name, db2
    assert rc == 0, out[-4000:]
    assert "DEPRECATED" not in out, out[-3000:]
    assert "move '%s' from group db_replicas to group db_primary" % db2 in out, out[-3000:]
    assert value(db2, "SELECT @@read_only") == "0" and status(db2) == {}
    for name in (db1, db3):
        st = status(name)
        assert st["Master_Host"] == ADDR[db2], (name, st)
        assert st["Slave_IO_Running"] == "Yes" and st["Slave_SQL_Running"] == "Yes", (name, st)
        assert value(name, "SELECT @@read_only") == "1"
    token = uuid.uuid4().hex
    res = app(db2, "CREATE TABLE IF NOT EXISTS shop.marker (token CHAR(32) PRIMARY KEY); "
                   "INSERT INTO shop.marker VALUES ('%s')" % token)
    assert res.rc == 0, res.stderr
    for name in (db1, db3):
        wait_for(name, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token, "1", 10)
    # the old primary refuses the app's writes now
    res = app(db1, "INSERT INTO shop.marker VALUES ('%s')" % uuid.uuid4().hex)
    assert res.rc != 0 and "read-only" in res.stderr
    # semi-sync follows the role: the new primary waits for ACKs from both replicas
    assert value(db2, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'").split()[1] == "ON"
    # the repointed replicas and the demoted old primary replicate over TLS and check db2's certificate
    for name in (db1, db3):
        st = status(name)
        assert st["Master_SSL_Allowed"] == "Yes" and st["Master_SSL_Verify_Server_Cert"] == "Yes", (name, st)
    # the same run re-rendered the app's settings with the new primary: the app writes there
    assert "Web nodes whose database settings now name '%s' (re-rendered in this run): %s" % (db2, P + "web1") in out, \
        out[-3000:]
    assert app_settings_host() == ADDR[db2]
    token = uuid.uuid4().hex
    res = app_write(token)
    assert res.rc == 0 and res.stdout.strip() == ADDR[db2], (res.stdout, res.stderr)
    for name in (db1, db3):
        wait_for(name, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token, "1", 10)


# site.yml's own preflight wants balancers; this scenario has none
SITE_ARGS = ["--tags", "db", "-e", '{"preflight_required_groups": ["db_primary", "web"]}']


def test_switchover_rewrites_the_role_files_so_a_restart_keeps_the_roles():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    # the promotion itself rewrote 61-webfarm-role.cnf on every live host (no site.yml run yet)
    conf = node(db2).file(ROLE_CONF).content_string
    assert "read_only = OFF" in conf and "rpl_semi_sync_master_enabled = ON" in conf, conf
    for name in (db1, db3):
        conf = node(name).file(ROLE_CONF).content_string
        assert "read_only = ON" in conf and "rpl_semi_sync_master_enabled = OFF" in conf, (name, conf)
    # the old primary restarts (before anyone edits the inventory): it comes back read-only, replicating from db2
    assert node(db1).run("systemctl restart mariadb").rc == 0
    wait_for(db1, "SELECT @@read_only", "1", 30)
    deadline = time.time() + 30
    while time.time() < deadline and status(db1).get("Slave_SQL_Running") != "Yes":
        time.sleep(0.5)
    st = status(db1)
    assert st["Master_Host"] == ADDR[db2] and st["Slave_SQL_Running"] == "Yes", st
    assert writable() == [db2]


def test_summary_reports_the_live_primary_and_replicas_with_the_unchanged_inventory():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    rc, out = playbook("playbooks/summary.yml", inventory())
    assert rc == 0, out[-3000:]
    assert "db primary: %s (%s) - the inventory names %s; edit it" % (db2, ADDR[db2], db1) in out, out[-3000:]
    for name in (db1, db3):
        line = [x for x in out.splitlines() if "db replica: %s (%s)" % (name, ADDR[name]) in x]
        assert len(line) == 1, out[-3000:]
        assert "from=%s" % ADDR[db2] in line[0] and "sql=Yes" in line[0], line
    assert "db primary: %s" % db1 not in out and "db replica: %s" % db2 not in out, out[-3000:]


def writable():
    return [n for n in (P + "db1", P + "db2", P + "db3") if value(n, "SELECT @@read_only") == "0"]


def test_switchover_is_recorded_on_every_database_host():
    for name in (P + "db1", P + "db2", P + "db3"):
        rec = json.loads(node(name).file("/etc/ansible/facts.d/webfarm_db.fact").content_string)
        assert (rec["primary"], rec["previous"], rec["mode"]) == (P + "db2", P + "db1", "switchover"), (name, rec)
        assert rec["address"] == ADDR[P + "db2"] and rec["recorded_at"].endswith("Z"), rec


def test_site_stops_before_any_change_when_the_servers_disagree_with_inventory_and_record():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    names = (db1, db2, db3)
    fact = "/etc/ansible/facts.d/webfarm_db.fact"
    before = {n: (node(n).file(ROLE_CONF).md5sum, node(n).file(SERVER_CONF).md5sum) for n in names}
    # as after a switchover done by hand: db2 is the live primary, nothing recorded it
    for n in names:
        assert node(n).run("mv %s %s.away" % (fact, fact)).rc == 0
    try:
        rc, out = playbook("playbooks/site.yml", inventory(), *SITE_ARGS)
    finally:
        for n in names:
            node(n).run("mv %s.away %s" % (fact, fact))
    assert rc != 0, out[-3000:]
    assert "STOPPED before any change on any database host. What the servers say: %s: read-only, replicates " \
           "from %s; %s: writable, replicates from nothing (a primary); %s: read-only, replicates from %s." \
           % (db1, ADDR[db2], db2, db3, ADDR[db2]) in out, out[-3000:]
    assert "The live primary is '%s'; the inventory says '%s'; no promotion was recorded." % (db2, db1) in out, \
        out[-3000:]
    assert "edit the inventory: move '%s' from group db_replicas to group db_primary and '%s' from group " \
           "db_primary to group db_replicas; then rerun." % (db2, db1) in out, out[-3000:]
    assert "Install the server" not in out and "Apply the role-dependent settings live" not in out, out[-3000:]
    assert {n: (node(n).file(ROLE_CONF).md5sum, node(n).file(SERVER_CONF).md5sum) for n in names} == before
    assert writable() == [db2]
    for name in (db1, db3):
        assert status(name)["Master_Host"] == ADDR[db2]


def test_site_with_the_unchanged_inventory_follows_the_recorded_primary():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    rc, out = playbook("playbooks/site.yml", inventory(), *SITE_ARGS)
    assert rc == 0, out[-4000:]
    assert "WARNING: the inventory names '%s' as the database primary, but the servers say '%s' is the primary, " \
           "as playbooks/db_promote.yml recorded at" % (db1, db2) in out, out[-3000:]
    assert "Edit the inventory: move '%s' from group db_replicas to group db_primary and '%s' from group " \
           "db_primary to group db_replicas." % (db2, db1) in out, out[-3000:]
    # exactly one writable server, replication direction unchanged
    assert writable() == [db2]
    assert status(db2) == {}
    for name in (db1, db3):
        st = status(name)
        assert st["Master_Host"] == ADDR[db2], (name, st)
        assert st["Slave_IO_Running"] == "Yes" and st["Slave_SQL_Running"] == "Yes", (name, st)
    # the role's files now survive a restart with the live roles
    assert "read_only = OFF" in node(db2).file(ROLE_CONF).content_string
    for name in (db1, db3):
        assert "read_only = ON" in node(name).file(ROLE_CONF).content_string
    # the summary at the end of site.yml names the live primary
    assert "db primary: %s (%s)" % (db2, ADDR[db2]) in out, out[-3000:]


def test_check_mode_of_site_on_the_promoted_db_tier_changes_nothing():
    before = {n: node(n).file(ROLE_CONF).md5sum for n in (P + "db1", P + "db2", P + "db3")}
    rc, out = playbook("playbooks/site.yml", inventory(), "--check", "--diff", *SITE_ARGS)
    assert rc == 0, out[-4000:]
    recap = [line for line in out.splitlines() if re.match(r"^%sdb\d\s+: ok=" % P, line)]
    assert len(recap) == 3 and all("changed=0" in line and "failed=0" in line for line in recap), recap
    assert {n: node(n).file(ROLE_CONF).md5sum for n in before} == before
    assert writable() == [P + "db2"]


def test_db_and_app_plays_with_the_unchanged_inventory_keep_the_app_on_the_live_primary():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    # the scenario's converge: the mysql role on db, then webfarm_app on the web node, one run
    rc, out = playbook("molecule/db_promote/converge.yml", inventory())
    assert rc == 0, out[-4000:]
    assert "Edit the inventory: move '%s' from group db_replicas" % db2 in out, out[-3000:]
    assert writable() == [db2]
    assert app_settings_host() == ADDR[db2]
    token = uuid.uuid4().hex
    res = app_write(token)
    assert res.rc == 0 and res.stdout.strip() == ADDR[db2], (res.stdout, res.stderr)
    for name in (db1, db3):
        wait_for(name, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token, "1", 10)


def test_repoint_checks_the_inventory_against_the_databases():
    rc, out = promote(inventory(), "mode=repoint", '{"db_promote_web_roles": []}')
    assert rc != 0 and "is in db_primary but is not a writable primary" in out, out[-3000:]
    rc, out = promote(inventory(P + "db2"), "mode=repoint", '{"db_promote_web_roles": []}')
    assert rc == 0, out[-3000:]


def test_failover_promotes_the_most_advanced_replica():
    db1, db2, db3 = P + "db1", P + "db2", P + "db3"
    inv = inventory(db2)
    # db1 stops receiving; db3 gets one more transaction: db3 is the most advanced
    value(db1, "STOP SLAVE IO_THREAD")
    token = uuid.uuid4().hex
    assert app(db2, "INSERT INTO shop.marker VALUES ('%s')" % token).rc == 0
    wait_for(db3, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token, "1", 10)
    assert value(db1, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token) == "0"
    subprocess.run(["docker", "stop", "-t", "5", db2], check=True, capture_output=True, timeout=60)
    try:
        rc, out = promote(inv, "mode=failover")
        assert rc == 0, out[-4000:]
        assert "move '%s' from group db_replicas to group db_primary" % db3 in out, out[-3000:]
        assert value(db3, "SELECT @@read_only") == "0" and status(db3) == {}
        st = status(db1)
        assert st["Master_Host"] == ADDR[db3] and st["Slave_IO_Running"] == "Yes", st
        # db1 caught up from db3 what it never got from db2
        wait_for(db1, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token, "1", 10)
        # and the app writes on the new primary
        assert app(db3, "INSERT INTO shop.marker VALUES ('%s')" % uuid.uuid4().hex).rc == 0
        # through its settings, re-rendered in the same run
        assert app_settings_host() == ADDR[db3]
        res = app_write(uuid.uuid4().hex)
        assert res.rc == 0 and res.stdout.strip() == ADDR[db3], (res.stdout, res.stderr)
    finally:
        subprocess.run(["docker", "start", db2], capture_output=True, timeout=60)

