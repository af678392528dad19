"""The redis session store: continuity across nodes, the cache's own settings."""

import json
import os
import subprocess

import pytest

from conftest import Client, farm_host

testinfra_hosts = ["ansible://redis_sessions-client"]

WEB = {"redis_sessions-web1": "172.29.22.31", "redis_sessions-web2": "172.29.22.32"}
CACHE = "172.29.22.61"
PASSWORD = "molecule-redis-secret/+&="


def url(node, path):
    return "http://%s%s" % (WEB[node], path)


def redis_cli(args, auth=True):
    cache = farm_host("redis_sessions-cache1")
    pw = "-a '%s' --no-auth-warning " % PASSWORD if auth else ""
    return cache.run("redis-cli -h %s %s%s" % (CACHE, pw, args))


def test_session_continues_across_nodes_in_redis():
    client = Client("redis_sessions-client")
    counts = []
    for node in ["redis_sessions-web1", "redis_sessions-web2", "redis_sessions-web2", "redis_sessions-web1"]:
        body = client.json(url(node, "/session"), jar=True)
        assert body["store"] == "redis" and body["node"] == node
        counts.append(body["count"])
    assert counts == [1, 2, 3, 4]


def test_sessions_are_keys_in_redis_not_rows_in_the_database():
    before = int(redis_cli("DBSIZE").stdout.strip())
    Client("redis_sessions-client").json(url("redis_sessions-web1", "/session"), jar=True)
    assert int(redis_cli("DBSIZE").stdout.strip()) == before + 1
    assert redis_cli("--scan --pattern 'PHPREDIS_SESSION:*'").stdout.strip()
    db = farm_host("redis_sessions-db1")
    assert db.check_output("mariadb -N -e 'SELECT COUNT(*) FROM webfarm.webfarm_sessions'") == "0"


def test_plain_php_sessions_use_redis_from_the_pool():
    # any PHP app gets the store from the FPM pool, without the app's help
    pool = farm_host("redis_sessions-web1").file("/etc/php/8.2/fpm/pool.d/webfarm.conf")
    assert "php_value[session.save_handler] = redis" in pool.content_string
    assert pool.mode == 0o640 and pool.user == "root"


def test_redis_wants_the_password():
    r = redis_cli("PING", auth=False)
    assert "NOAUTH" in r.stdout + r.stderr
    assert redis_cli("PING").stdout.strip() == "PONG"


def test_redis_listens_on_the_private_address_only():
    listen = farm_host("redis_sessions-cache1").check_output("ss -Hltn 'sport = :6379'")
    addrs = sorted(line.split()[3] for line in listen.splitlines())
    assert addrs == ["127.0.0.1:6379", CACHE + ":6379"]


def test_redis_keeps_nothing_on_disk():
    assert redis_cli("CONFIG GET save").stdout.split("\n")[1].strip() == ""
    assert redis_cli("CONFIG GET appendonly").stdout.split("\n")[1].strip() == "no"


def test_a_redis_restart_loses_sessions_without_persistence():
    client = Client("redis_sessions-client")
    assert client.json(url("redis_sessions-web1", "/session"), jar=True)["count"] == 1
    assert client.json(url("redis_sessions-web2", "/session"), jar=True)["count"] == 2
    farm_host("redis_sessions-cache1").check_output("systemctl restart redis-server")
    for _ in range(20):  # bounded wait for the restart
        if redis_cli("PING").stdout.strip() == "PONG":
            break
    assert client.json(url("redis_sessions-web2", "/session"), jar=True)["count"] == 1


def test_deep_health_still_checks_database_and_share():
    body = Client("redis_sessions-client").json(url("redis_sessions-web2", "/health/deep"))
    assert body["status"] == "ok"


def test_redis_without_a_password_is_rejected():
    scenario = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         os.path.join(scenario, "bad_input.yml")],
        capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "empty password rejected" in r.stdout
