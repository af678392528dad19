"""Behaviour of colo.webfarm.mysql: a primary, three GTID replicas (one seeded
after data existed) and a web node that uses the database as the app user."""

import os
import subprocess
import tempfile
import time
import uuid
import zlib

import pytest
import testinfra

PRIMARY = "mysql-db1"
REPLICAS = ["mysql-db2", "mysql-db3", "mysql-db4"]
ADDR = {"mysql-db1": "172.29.16.41", "mysql-db2": "172.29.16.42", "mysql-db3": "172.29.16.43",
        "mysql-db4": "172.29.16.44", "mysql-web1": "172.29.16.31"}
APP = ("shopapp", "app-Secret-16", "shop")
PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

testinfra_hosts = ["docker://mysql-web1"]


def node(name):
    return testinfra.get_host("docker://" + name)


def sql(name, query, user=None, password=None, server=None):
    """Run one statement with the mariadb client; returns the command result."""
    cmd = ["mariadb", "--batch", "--skip-column-names", "--connect-timeout=5"]
    if user:
        cmd += ["-u", user, "-p" + password, "-h", server]
    cmd += ["-e", query]
    return node(name).run(" ".join("'%s'" % c.replace("'", "'\\''") for c in cmd))


def value(name, query):
    res = sql(name, query)
    assert res.rc == 0, (name, query, res.stderr)
    return res.stdout.strip()


def replica_status(name):
    res = node(name).run("mariadb -e 'SHOW SLAVE STATUS\\G'")
    assert res.rc == 0, res.stderr
    status = {}
    for line in res.stdout.splitlines():
        key, sep, val = line.strip().partition(":")
        if sep:
            status[key.strip()] = val.strip()
    return status


def gtids(pos):
    return {g for g in pos.split(",") if g}


def app(query, server, client="mysql-web1"):
    return sql(client, query, APP[0], APP[1], ADDR[server])


def run_playbook(playbook, inventory, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, ".collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run(["ansible-playbook", "-i", inventory, playbook] + list(args), cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", REPLICAS)
def test_replica_threads_run_with_gtid_from_the_primary(name):
    st = replica_status(name)
    assert st["Slave_IO_Running"] == "Yes", st
    assert st["Slave_SQL_Running"] == "Yes", st
    assert st["Using_Gtid"] == "Slave_Pos", st
    assert st["Master_Host"] == ADDR[PRIMARY], st
    assert value(name, "SELECT @@read_only") == "1"


def test_server_ids_are_distinct_and_bound_to_private_addresses():
    ids = set()
    for name in [PRIMARY] + REPLICAS:
        ids.add(value(name, "SELECT @@server_id"))
        assert value(name, "SELECT @@bind_address") == ADDR[name]
        assert value(name, "SELECT @@log_bin, @@binlog_format, @@gtid_strict_mode, @@log_slave_updates") \
            == "1\tROW\t1\t1"
    assert len(ids) == 4


def test_marker_written_by_the_app_on_the_primary_reaches_every_replica():
    token = uuid.uuid4().hex
    res = app("CREATE TABLE IF NOT EXISTS shop.marker (token CHAR(32) PRIMARY KEY, at TIMESTAMP(6) "
              "DEFAULT CURRENT_TIMESTAMP(6)); INSERT INTO shop.marker (token) VALUES ('%s')" % token, PRIMARY)
    assert res.rc == 0, res.stderr
    for name in REPLICAS:
        deadline = time.time() + 10
        while time.time() < deadline:
            if value(name, "SELECT COUNT(*) FROM shop.marker WHERE token = '%s'" % token) == "1":
                break
            time.sleep(0.2)
        else:
            pytest.fail("marker %s not on %s within 10 s" % (token, name))


@pytest.mark.parametrize("name", REPLICAS)
def test_app_user_reads_a_replica_but_its_writes_are_refused(name):
    res = app("SELECT COUNT(*) FROM shop.seeded", name)
    assert res.rc == 0 and res.stdout.strip() == "500", (res.stdout, res.stderr)
    res = app("INSERT INTO shop.seeded VALUES (100000, 'must fail')", name)
    assert res.rc != 0
    assert "read-only" in res.stderr, res.stderr


def test_app_user_is_refused_from_a_host_that_is_no_web_node():
    res = sql("mysql-db2", "SELECT 1", APP[0], APP[1], ADDR[PRIMARY])
    assert res.rc != 0
    assert "not allowed to connect" in res.stderr or "Access denied" in res.stderr, res.stderr


def test_root_logs_in_over_the_socket_only():
    rows = value(PRIMARY, "SELECT CONCAT(User, '@', Host) FROM mysql.user WHERE User IN ('root', '')")
    assert rows.split() == ["root@localhost"]
    assert "unix_socket" in value(PRIMARY, "SHOW GRANTS FOR root@localhost")
    res = sql("mysql-web1", "SELECT 1", "root", "", ADDR[PRIMARY])
    assert res.rc != 0


def test_replication_user_has_only_replication_slave():
    grants = value(PRIMARY, "SHOW GRANTS FOR 'replicator'@'172.29.16.42'")
    assert "GRANT REPLICATION SLAVE ON *.* TO" in grants
    assert "ALL PRIVILEGES" not in grants and "SUPER" not in grants


def test_late_replica_was_seeded_from_a_dump():
    # the primary purged the binary logs that created the data, so replaying
    # them was impossible: the rows can only have come from the seed
    logs = value(PRIMARY, "SHOW BINARY LOGS").split()
    assert "mysql-bin.000001" not in logs, logs
    assert value("mysql-db4", "SELECT COUNT(*), MAX(note) FROM shop.seeded") == "500\trow-99"
    # and it keeps replicating what comes after the seed
    st = replica_status("mysql-db4")
    assert st["Slave_IO_Running"] == "Yes" and st["Slave_SQL_Running"] == "Yes", st


@pytest.mark.parametrize("name", REPLICAS)
def test_no_errant_gtid_on_replicas(name):
    binlog = gtids(value(name, "SELECT @@gtid_binlog_pos"))
    applied = gtids(value(name, "SELECT @@gtid_slave_pos"))
    # nothing local in the binlog, and the binlog continues what was applied
    # (a promoted replica must not restart its sequence numbers)
    assert binlog == applied, (binlog, applied)
    own = value(name, "SELECT @@server_id")
    assert not [g for g in binlog if g.split("-")[1] == own], binlog


def test_semi_sync_is_on_while_replicas_are_connected():
    status = dict(line.split("\t") for line in value(
        PRIMARY, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'").splitlines())
    assert status["Rpl_semi_sync_master_status"] == "ON"
    assert int(status["Rpl_semi_sync_master_clients"]) == 3
    assert value(PRIMARY, "SELECT @@rpl_semi_sync_master_wait_point") == "AFTER_SYNC"
    for name in REPLICAS:
        assert value(name, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_slave_status'").split() == \
            ["Rpl_semi_sync_slave_status", "ON"]


def test_config_files_are_managed(host):
    for name in [PRIMARY] + REPLICAS:
        for f in ("60-webfarm.cnf", "61-webfarm-role.cnf"):
            content = node(name).file("/etc/mysql/mariadb.conf.d/" + f).content_string
            assert content.startswith("#") and "Ansible managed" in content.splitlines()[0] + \
                content.splitlines()[1], content[:200]


BAD_INVENTORY = """
webfarm:
  vars:
    ansible_connection: community.docker.docker
    webfarm_db_password: app-Secret-16
    mysql_replication_password: %(repl)s
  children:
    db:
      children:
        db_primary:
          hosts:
%(primary)s
        db_replicas:
          hosts:
            bad-db2: {ansible_host: no-such-container-2, webfarm_address: 192.0.2.42}
"""


@pytest.mark.parametrize("case,repl,primary,expected", [
    ("placeholder password", "CHANGE_ME",
     "            bad-db1: {ansible_host: no-such-container-1, webfarm_address: 192.0.2.41}",
     "variable(s) mysql_replication_password still hold a placeholder value"),
    ("replica without a primary", "repl-Secret-16", "            {}",
     "groups.db_primary"),
    ("two primaries", "repl-Secret-16",
     "            bad-db1: {ansible_host: no-such-container-1, webfarm_address: 192.0.2.41}\n"
     "            bad-db3: {ansible_host: no-such-container-3, webfarm_address: 192.0.2.43}",
     "exactly one host in group 'db_primary'"),
    ("duplicate server ids", "repl-Secret-16",
     # the id the topology derives from the name bad-db2
     "            bad-db1: {ansible_host: no-such-container-1, webfarm_address: 192.0.2.41, "
     "webfarm_server_id: %d}" % (zlib.crc32(b"bad-db2") % (2 ** 32 - 1) + 1),
     "have the same MySQL server_id %d" % (zlib.crc32(b"bad-db2") % (2 ** 32 - 1) + 1)),
])
def test_bad_input_fails_before_any_host_is_touched(case, repl, primary, expected):
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, "hosts.yml")
        with open(inv, "w") as f:
            f.write(BAD_INVENTORY % {"repl": repl, "primary": primary})
        res = run_playbook("molecule/mysql/bad_input.yml", inv)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert expected in out, out[-3000:]
    assert "bad-db2" in out
    # the hosts do not exist: reaching one would say UNREACHABLE
    assert "UNREACHABLE" not in out and "no-such-container" not in out, out[-3000:]


REPL = ("replicator", "repl-Secret-16")


def repl_login(client, *tls):
    """Log in to the primary as the replication user from `client`."""
    return node(client).run("mariadb --batch --skip-column-names --connect-timeout=5 -u %s -p%s -h %s %s "
                            "-e 'SHOW STATUS LIKE \"Ssl_version\"'" % (REPL[0], REPL[1], ADDR[PRIMARY], " ".join(tls)))


@pytest.mark.parametrize("name", REPLICAS)
def test_replication_channel_uses_tls_and_verifies_the_primary(name):
    st = replica_status(name)
    assert st["Master_SSL_Allowed"] == "Yes", st
    assert st["Master_SSL_CA_File"] == "/etc/mysql/ssl/ca.crt", st
    assert st["Master_SSL_Verify_Server_Cert"] == "Yes", st
    assert st["Slave_IO_Running"] == "Yes" and st["Last_IO_Error"] == "", st
    # the primary sees the replica's binlog dump connection encrypted
    host = node(PRIMARY)
    key = host.file("/etc/mysql/ssl/webfarm.key")
    assert key.mode == 0o600 and key.user == "mysql", (key.mode, key.user)


@pytest.mark.parametrize("name", ["mysql-db2", "mysql-db4"])
def test_replication_user_is_refused_without_tls(name):
    plain = repl_login(name, "--skip-ssl")
    assert plain.rc != 0 and "Access denied" in plain.stderr, (plain.stdout, plain.stderr)
    # the same account over TLS, verifying the primary's certificate against the lab CA
    tls = repl_login(name, "--ssl", "--ssl-ca=/etc/mysql/ssl/ca.crt", "--ssl-verify-server-cert")
    assert tls.rc == 0, tls.stderr
    assert tls.stdout.split()[1].startswith("TLSv1."), tls.stdout


def test_primary_serves_the_lab_certificate_naming_every_db_address():
    out = node(PRIMARY).run("openssl x509 -noout -ext subjectAltName -in /etc/mysql/ssl/webfarm.crt").stdout
    for name in [PRIMARY] + REPLICAS:
        assert "IP Address:" + ADDR[name] in out, out
    grants = value(PRIMARY, "SHOW CREATE USER 'replicator'@'172.29.16.42'")
    assert "REQUIRE SSL" in grants, grants


UNREACHABLE_PRIMARY = """
webfarm:
  vars:
    ansible_connection: community.docker.docker
    webfarm_db_password: app-Secret-16
    mysql_replication_password: repl-Secret-16
  children:
    db:
      children:
        db_primary:
          hosts:
            bad-db1: {ansible_host: no-such-container-1, webfarm_address: 192.0.2.41}
        db_replicas:
          hosts:
            mysql-db2: {ansible_host: mysql-db2, webfarm_address: 172.29.16.42}
"""


def test_replica_whose_primary_is_unreachable_fails_before_anything_is_written():
    conf = "/etc/mysql/mariadb.conf.d/60-webfarm.cnf"
    before = node("mysql-db2").file(conf).md5sum
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, "hosts.yml")
        with open(inv, "w") as f:
            f.write(UNREACHABLE_PRIMARY)
        res = run_playbook("molecule/mysql/bad_input.yml", inv)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "host 'mysql-db2': it is listed in group 'db_replicas' but its primary 'bad-db1'" in out, out[-3000:]
    # the check ran before the server tasks: nothing was installed or written on the replica
    assert "Write the server configuration" not in out, out[-3000:]
    assert node("mysql-db2").file(conf).md5sum == before
    assert replica_status("mysql-db2")["Master_Host"] == ADDR[PRIMARY]


SEED_USER = "webfarm_seed"
ALL_DB = [PRIMARY] + REPLICAS


def leftovers(name):
    """Files a seed could leave on a database host: dumps, working directories."""
    res = node(name).run("find /tmp /var/tmp /root -maxdepth 2 \\( -name 'webfarm-seed*' -o -name '*.sql' "
                         "-o -name '*.sql.gz' \\) -print")
    assert res.rc == 0, res.stderr
    return res.stdout.split()


def controller_leftovers():
    found = []
    for d in {tempfile.gettempdir(), "/tmp", "/var/tmp", os.path.expanduser("~/.ansible/tmp")}:
        if os.path.isdir(d):
            found += [os.path.join(d, f) for f in os.listdir(d) if f.startswith("webfarm-seed") or f.endswith(".sql")]
    return found


def seed_accounts():
    return {n: value(n, "SELECT COUNT(*) FROM mysql.user WHERE User = '%s'" % SEED_USER) for n in ALL_DB}


def test_late_replica_seed_left_no_dump_and_no_account_anywhere():
    assert controller_leftovers() == []
    for name in ALL_DB:
        assert leftovers(name) == [], name
    assert seed_accounts() == {n: "0" for n in ALL_DB}


def make_blank(name):
    """Turn a replica back into a new, empty server (nothing written to any binary log)."""
    value(name, "STOP SLAVE; RESET SLAVE ALL; SET SESSION sql_log_bin=0; DROP DATABASE IF EXISTS shop; "
                "RESET MASTER; SET GLOBAL gtid_slave_pos = ''; SELECT 1")
    assert value(name, "SELECT @@gtid_current_pos") == ""


# One run of the role proves two refusals: a replica whose thread stopped is
# reported, not reset; a seed that fails half-way leaves nothing behind. The
# next test's first run seeds the blank replica again (cause fixed).
def test_stopped_replica_is_reported_not_reset_and_a_failed_seed_leaves_nothing_behind():
    late = "mysql-db4"
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    before = replica_status("mysql-db3")
    assert value("mysql-db3", "STOP SLAVE SQL_THREAD; SELECT 1") == "1"
    make_blank(late)
    # a view whose table is gone: mariadb-dump stops with an error in the middle of the stream
    value(PRIMARY, "CREATE TABLE shop.gone (id INT); CREATE VIEW shop.broken AS SELECT * FROM shop.gone; "
                   "DROP TABLE shop.gone; SELECT 1")
    try:
        res = run_playbook("molecule/mysql/role.yml", inventory)
        out = res.stdout + res.stderr
        assert res.returncode != 0, out[-3000:]
        # the stopped replica
        assert "host 'mysql-db3': replication from 'mysql-db1' is not running" in out, out[-3000:]
        assert "Last_SQL_Error" in out
        after = replica_status("mysql-db3")
        # not reset, not repointed: the same source, the thread still stopped
        assert after["Master_Host"] == before["Master_Host"]
        assert after["Slave_SQL_Running"] == "No"
        assert after["Gtid_IO_Pos"] >= before["Gtid_IO_Pos"]
        # the failed seed
        assert "host '%s': seeding from '%s' failed in 'Stream the dump from the primary into the replica'" \
               % (late, PRIMARY) in out, out[-3000:]
        assert "references invalid table" in out, out[-3000:]
        assert controller_leftovers() == []
        for name in ALL_DB:
            assert leftovers(name) == [], name
        assert seed_accounts() == {n: "0" for n in ALL_DB}
        assert replica_status(late) == {}      # never pointed at the primary
    finally:
        value(PRIMARY, "DROP VIEW IF EXISTS shop.broken; SELECT 1")
        value("mysql-db3", "START SLAVE SQL_THREAD; SELECT 1")


def started_at(name):
    return int(value(name, "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                           "WHERE VARIABLE_NAME = 'UPTIME'"))


def restarted(out):
    """The hosts the role's restart task went through, in order (a loop runs its items in turn)."""
    section = out.split("Restart the servers one at a time, replicas first, the primary last]", 1)[1].split("TASK [", 1)[0]
    return [line.split("(item=")[1].rstrip(") ") for line in section.splitlines()
            if line.startswith("changed: [") and "(item=" in line]


def test_config_change_restarts_replicas_one_at_a_time_and_the_primary_only_when_allowed():
    late = "mysql-db4"
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    marker = "/etc/mysql/webfarm-restart-pending"
    before = {n: started_at(n) for n in ALL_DB}
    time.sleep(2)
    res = run_playbook("molecule/mysql/role.yml", inventory, "-e", "mysql_max_connections=201")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    # the replica left blank by the failed seed was seeded again in this run
    assert value(late, "SELECT COUNT(*) FROM shop.seeded") == "500"
    assert seed_accounts() == {n: "0" for n in ALL_DB}
    assert leftovers(late) == [] and leftovers(PRIMARY) == []
    assert "WARNING: host '%s' is the primary and its server configuration" % PRIMARY in out, out[-3000:]
    assert "which is PENDING" in out
    first = {n: started_at(n) for n in ALL_DB}
    assert abs(first[PRIMARY] - before[PRIMARY]) <= 1          # the primary kept running
    assert value(PRIMARY, "SELECT @@max_connections") == "200"
    assert node(PRIMARY).file(marker).exists
    for name in REPLICAS:
        assert first[name] > before[name] + 1, (name, before, first)
        assert value(name, "SELECT @@max_connections") == "201"
        assert not node(name).file(marker).exists
    # in turn: each replica came back (and replicated) before the next went down
    assert restarted(out) == sorted(REPLICAS), out[-3000:]
    # back to the default, now allowing the primary: the replicas in turn, then the primary last
    res = run_playbook("molecule/mysql/role.yml", inventory, "-e", "mysql_allow_primary_restart=true")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert restarted(out) == sorted(REPLICAS) + [PRIMARY], out[-3000:]
    second = {n: started_at(n) for n in ALL_DB}
    assert second[PRIMARY] > first[PRIMARY] + 1
    assert all(second[PRIMARY] >= second[n] for n in REPLICAS), second
    for name in ALL_DB:
        assert value(name, "SELECT @@max_connections") == "200"
        assert not node(name).file(marker).exists
    for name in REPLICAS:
        st = replica_status(name)
        assert st["Slave_IO_Running"] == "Yes" and st["Slave_SQL_Running"] == "Yes", (name, st)
