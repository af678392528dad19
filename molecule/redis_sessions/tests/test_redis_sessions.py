"""The redis session store: continuity across nodes, the cache's own settings."""

import json
import os
import subprocess

import pytest

from conftest import Client, farm_host

testinfra_hosts = ["ansible://redis_sessions-client"]

WEB = {"redis_sessions-web1": "172.29.22.31", "redis_sessions-web2": "172.29.22.32"}
CACHE = "172.29.22.61"  # cache1 (Debian 13): the web nodes' session store
# every host of group cache gets the role: cache1 on Debian 13, cache2 on Debian 12
CACHES = {"redis_sessions-cache1": CACHE, "redis_sessions-cache2": "172.29.22.62"}
PASSWORD = "molecule-redis-secret/+&="


def url(node, path):
    return "http://%s%s" % (WEB[node], path)


def redis_cli(args, auth=True, cache="redis_sessions-cache1"):
    pw = "-a '%s' --no-auth-warning " % PASSWORD if auth else ""
    return farm_host(cache).run("redis-cli -h %s %s%s" % (CACHES[cache], pw, args))


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


def php_version(h):
    """The PHP release the node runs ("8.2" on Debian 12, "8.4" on Debian 13)."""
    return h.check_output("php -r 'echo PHP_MAJOR_VERSION, \".\", PHP_MINOR_VERSION;'")


def test_plain_php_sessions_use_redis_from_the_pool():
    # any PHP app gets the store from the FPM pool, without the app's help
    web1 = farm_host("redis_sessions-web1")
    pool = web1.file("/etc/php/%s/fpm/pool.d/webfarm.conf" % php_version(web1))
    assert "php_value[session.save_handler] = redis" in pool.content_string
    assert pool.mode == 0o640 and pool.user == "root"


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_redis_wants_the_password(cache):
    r = redis_cli("PING", auth=False, cache=cache)
    assert "NOAUTH" in r.stdout + r.stderr
    assert redis_cli("PING", cache=cache).stdout.strip() == "PONG"


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_redis_listens_on_the_private_address_only(cache):
    listen = farm_host(cache).check_output("ss -Hltn 'sport = :6379'")
    addrs = sorted(line.split()[3] for line in listen.splitlines())
    assert addrs == ["127.0.0.1:6379", CACHES[cache] + ":6379"]


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_redis_keeps_nothing_on_disk(cache):
    assert redis_cli("CONFIG GET save", cache=cache).stdout.split("\n")[1].strip() == ""
    assert redis_cli("CONFIG GET appendonly", cache=cache).stdout.split("\n")[1].strip() == "no"


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
