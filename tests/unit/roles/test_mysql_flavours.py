"""The mysql role's flavour files and config templates, checked by rendering.

MySQL packages are not installable in the test environment, so the MySQL
flavour's statements and config are verified here; MariaDB runs for real in
the molecule scenario.
"""

from __future__ import annotations

import os
import re

import jinja2
import pytest
import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "mysql")
TEMPLATES = os.path.join(ROLE, "templates", "etc", "mysql", "mariadb.conf.d")
# Statements MySQL 8.4 removed (8.0.26+ accepts the replacements too).
REMOVED_IN_84 = re.compile(r"\b(CHANGE MASTER|START SLAVE|STOP SLAVE|RESET SLAVE|SHOW SLAVE|SHOW MASTER|"
                           r"MASTER_[A-Z_]+|RESET MASTER)\b")


def flavour(name):
    with open(os.path.join(ROLE, "vars", "flavour_%s.yml" % name)) as f:
        return yaml.safe_load(f)["__mysql_flavour"]


def defaults():
    with open(os.path.join(ROLE, "defaults", "main.yml")) as f:
        return yaml.safe_load(f)


def keys(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k not in ("gtid",):
            out |= keys(v, prefix + k + ".")
    return out


def render(template, flav, primary, **overrides):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True)
    env.filters["comment"] = lambda text: "#\n# " + text + "\n#"
    ctx = {k: v for k, v in defaults().items() if "{{" not in str(v)}
    ctx.update(ansible_managed="Ansible managed", __mysql_flavour=flav, __mysql_is_primary=primary,
               __mysql_server_id=1234, mysql_bind_address="10.0.0.41", __mysql_port=3306,
               __mysql_buffer_pool_mb=256, __mysql_os_vars={"log_dir": "/var/log/mysql"})
    ctx.update(overrides)
    return env.get_template(template).render(ctx)


def options(text):
    return dict(re.match(r"^(\S+) = (.*)$", line).groups() for line in text.splitlines()
                if line and not line.startswith(("#", "[")))


def test_flavours_define_the_same_keys():
    assert keys(flavour("mariadb")) == keys(flavour("mysql"))


def test_mysql_statements_exist_in_84():
    sql = flavour("mysql")["sql"]
    for name, stmt in sql.items():
        if isinstance(stmt, str):
            assert not REMOVED_IN_84.search(stmt), (name, stmt)
    assert sql["change_source"].startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s")
    assert "SOURCE_AUTO_POSITION=1" in sql["change_source"]
    assert sql["gtid_wait"] == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS result"
    assert flavour("mysql")["columns"]["io_running"] == "Replica_IO_Running"
    assert "--set-gtid-purged" in flavour("mysql")["dump_command"]


def test_mariadb_statements():
    f = flavour("mariadb")
    assert "MASTER_USE_GTID=slave_pos" in f["sql"]["change_source"]
    assert "MASTER_DEMOTE_TO_SLAVE=1" in f["sql"]["demote_source"]
    assert f["sql"]["gtid_wait"] == "SELECT MASTER_GTID_WAIT(%s, %s) AS result"
    assert f["sql"]["flush_privileges"] == "FLUSH NO_WRITE_TO_BINLOG PRIVILEGES"
    assert re.search(f["dump_position_regex"], "-- SET GLOBAL gtid_slave_pos='0-12-345';").group(1) == "0-12-345"


@pytest.mark.parametrize("name", ["mariadb", "mysql"])
def test_change_source_takes_four_arguments_and_no_secret(name):
    for stmt in ("change_source", "demote_source"):
        text = flavour(name)["sql"][stmt]
        assert text.count("%s") == 4
        assert "PASSWORD=%s" in text


def test_mysql_config_renders_mysql_options():
    f = flavour("mysql")
    server = options(render("60-webfarm.cnf.j2", f, True))
    assert server["gtid_mode"] == "ON" and server["enforce_gtid_consistency"] == "ON"
    assert server["log_replica_updates"] == "ON"
    assert server["rpl_semi_sync_source_wait_point"] == "AFTER_SYNC"
    assert "gtid_strict_mode" not in server and "log_slave_updates" not in server
    assert "semisync_source.so" in render("60-webfarm.cnf.j2", f, True)
    replica = options(render("61-webfarm-role.cnf.j2", f, False))
    assert replica == {"read_only": "ON", "super_read_only": "ON", "rpl_semi_sync_source_enabled": "OFF",
                       "rpl_semi_sync_replica_enabled": "ON"}
    primary = options(render("61-webfarm-role.cnf.j2", f, True))
    assert primary["super_read_only"] == "OFF" and primary["rpl_semi_sync_source_enabled"] == "ON"


def test_mariadb_config_renders_mariadb_options():
    f = flavour("mariadb")
    text = render("60-webfarm.cnf.j2", f, False)
    assert text.startswith("#\n# Ansible managed")
    server = options(text)
    assert server["server_id"] == "1234" and server["bind_address"] == "10.0.0.41"
    assert server["gtid_strict_mode"] == "ON" and server["log_slave_updates"] == "ON"
    assert server["binlog_format"] == "ROW"
    assert server["rpl_semi_sync_master_wait_point"] == "AFTER_SYNC"
    assert server["innodb_buffer_pool_size"] == "256M"
    assert "plugin_load_add" not in server
    replica = options(render("61-webfarm-role.cnf.j2", f, False))
    assert replica == {"read_only": "ON", "rpl_semi_sync_master_enabled": "OFF",
                       "rpl_semi_sync_slave_enabled": "ON"}


def test_semi_sync_off_renders_off_everywhere():
    for name in ("mariadb", "mysql"):
        f = flavour(name)
        role = options(render("61-webfarm-role.cnf.j2", f, True, mysql_semi_sync=False))
        assert role[f["config"]["semi_sync_source_enabled"]] == "OFF"
        assert role[f["config"]["semi_sync_replica_enabled"]] == "OFF"


def _vars_main():
    with open(os.path.join(ROLE, "vars", "main.yml")) as f:
        return yaml.safe_load(f)


def _tls_args(tls, verify=True, tls_dir="/etc/mysql/ssl"):
    """vars/main.yml's __mysql_source_tls_args, rendered like Ansible would."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["bool"] = bool
    expr = _vars_main()["__mysql_source_tls_args"].strip()
    return env.compile_expression(expr[2:-2].strip())(
        mysql_replication_tls=tls, mysql_tls_verify_server_cert=verify, mysql_tls_dir=tls_dir)


@pytest.mark.parametrize("name,prefix,options", [
    ("mariadb", "CHANGE MASTER TO", "MASTER_SSL=%s, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=%s"),
    ("mysql", "CHANGE REPLICATION SOURCE TO", "SOURCE_SSL=%s, SOURCE_SSL_CA=%s, SOURCE_SSL_VERIFY_SERVER_CERT=%s"),
])
def test_replication_tls_statements(name, prefix, options):
    sql = flavour(name)["sql"]
    assert sql["source_tls"] == options
    assert sql["change_source"].startswith(sql["change_options"] + " ")
    # the role appends the TLS options to the full statement: 4 + 3 arguments
    full = "%s, %s" % (sql["change_source"], sql["source_tls"])
    assert full.count("%s") == 7 == 4 + len(_tls_args(True))
    if name == "mysql":
        assert not REMOVED_IN_84.search(full) and not REMOVED_IN_84.search(sql["reload_tls"])
        assert sql["reload_tls"] == "ALTER INSTANCE RELOAD TLS"
        cols = flavour(name)["columns"]
        assert (cols["ssl_allowed"], cols["ssl_verify"]) == ("Source_SSL_Allowed", "Source_SSL_Verify_Server_Cert")
    else:
        assert sql["reload_tls"] == "FLUSH NO_WRITE_TO_BINLOG SSL"


def test_replication_tls_arguments():
    assert _tls_args(True) == [1, "/etc/mysql/ssl/ca.crt", 1]
    assert _tls_args(True, verify=False) == [1, "/etc/mysql/ssl/ca.crt", 0]
    assert _tls_args(False) == [0, "", 0]


@pytest.mark.parametrize("name", ["mariadb", "mysql"])
def test_replication_tls_renders_server_certificate_options(name):
    f = flavour(name)
    on = options(render("60-webfarm.cnf.j2", f, True, mysql_replication_tls=True, mysql_tls_dir="/etc/mysql/ssl"))
    assert on["ssl_cert"] == "/etc/mysql/ssl/webfarm.crt"
    assert on["ssl_key"] == "/etc/mysql/ssl/webfarm.key"
    assert on["ssl_ca"] == "/etc/mysql/ssl/ca.crt"
    off = options(render("60-webfarm.cnf.j2", f, True))
    assert not {"ssl_cert", "ssl_key", "ssl_ca"} & set(off)
