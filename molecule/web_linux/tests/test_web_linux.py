"""Behaviour of web_linux + webfarm_app across two web nodes, a database, a
trusted proxy (the balancer's address) and an untrusted client."""

import json
import os
import re
import subprocess
import time
import uuid

import pytest

from conftest import Client, farm_host

testinfra_hosts = ["ansible://web_linux-client"]

WEB = {"web_linux-web1": "172.29.14.31", "web_linux-web2": "172.29.14.32"}
CLIENT_ADDR = "172.29.14.50"
LB_ADDR = "172.29.14.20"
SPOOF = "203.0.113.9"


@pytest.fixture(scope="module")
def client():
    return Client("web_linux-client")


@pytest.fixture(scope="module")
def proxy():
    return Client("web_linux-lb1")


def url(node, path):
    return "http://%s%s" % (WEB[node], path)


@pytest.mark.parametrize("node", sorted(WEB))
def test_health_answers_on_every_node(client, node):
    r = client.request(url(node, "/health"))
    assert r["status"] == 200 and r["body"] == "OK\n"


@pytest.mark.parametrize("node", sorted(WEB))
def test_deep_health_checks_database_and_share(client, node):
    body = client.json(url(node, "/health/deep"))
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["server"] == "172.29.14.41"
    assert body["checks"]["files"] == {**body["checks"]["files"], "ok": True, "path": "/srv/webfarm/files"}


def test_deep_health_fails_when_the_share_is_not_writable(client):
    web2 = farm_host("web_linux-web2")
    web2.check_output("chmod 0555 /srv/webfarm/files")
    try:
        r = client.request(url("web_linux-web2", "/health/deep"))
    finally:
        web2.check_output("chmod 2775 /srv/webfarm/files")
    assert r["status"] == 503
    body = json.loads(r["body"])
    assert body["checks"]["files"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_session_continues_across_nodes_in_the_database(client):
    seen = []
    for node in ["web_linux-web1", "web_linux-web2", "web_linux-web1", "web_linux-web2"]:
        body = client.json(url(node, "/session"), jar=True)
        assert body["store"] == "database" and body["node"] == node
        seen.append(body["count"])
    assert seen == [1, 2, 3, 4]
    # a client without the cookie starts over
    assert Client("web_linux-client").json(url("web_linux-web2", "/session"))["count"] == 1


def test_session_lives_in_the_primary(client):
    db = farm_host("web_linux-db1")
    before = int(db.check_output("mariadb -N -e 'SELECT COUNT(*) FROM webfarm.webfarm_sessions'"))
    Client("web_linux-client").json(url("web_linux-web1", "/session"), jar=True)
    after = int(db.check_output("mariadb -N -e 'SELECT COUNT(*) FROM webfarm.webfarm_sessions'"))
    assert after == before + 1


def test_spoofed_forwarded_for_from_a_client_is_ignored(client):
    body = client.json(url("web_linux-web1", "/whoami"),
                       headers=["X-Forwarded-For: %s" % SPOOF, "X-Forwarded-Proto: https"])
    assert body["client"] == CLIENT_ADDR
    assert body["scheme"] == "http"


def test_forwarded_for_from_the_balancer_address_is_believed(proxy):
    body = proxy.json(url("web_linux-web2", "/whoami"),
                      headers=["X-Forwarded-For: %s" % SPOOF, "X-Forwarded-Proto: https"])
    assert body["client"] == SPOOF
    assert body["scheme"] == "https"
    # without the header, the balancer itself is the client
    assert proxy.json(url("web_linux-web2", "/whoami"))["client"] == LB_ADDR


@pytest.mark.parametrize("who,expect_client", [("web_linux-client", CLIENT_ADDR), ("web_linux-lb1", SPOOF)])
def test_access_log_shows_the_real_client(who, expect_client):
    marker = uuid.uuid4().hex
    Client(who).json(url("web_linux-web1", "/whoami?probe=%s" % marker),
                     headers=["X-Forwarded-For: %s" % SPOOF])
    web1 = farm_host("web_linux-web1")
    line = ""
    for _ in range(10):  # bounded: the log line is written after the response
        line = web1.run("grep %s /var/log/apache2/webfarm_access.log" % marker).stdout.strip()
        if line:
            break
        time.sleep(0.3)
    client_field, peer_field = line.split()[:2]
    assert client_field == expect_client
    assert peer_field == ("172.29.14.50" if who == "web_linux-client" else LB_ADDR)


def test_health_checks_stay_out_of_the_access_log(client):
    web1 = farm_host("web_linux-web1")
    before = web1.run("grep -c 'GET /health ' /var/log/apache2/webfarm_access.log").stdout.strip()
    client.request(url("web_linux-web1", "/health"))
    after = web1.run("grep -c 'GET /health ' /var/log/apache2/webfarm_access.log").stdout.strip()
    assert before == after


def test_file_written_on_one_node_is_read_on_the_other(client):
    name = "t-%s.txt" % uuid.uuid4().hex
    content = "uploaded on web1 %s" % uuid.uuid4().hex
    put = client.json(url("web_linux-web1", "/files/put?name=%s" % name), method="POST", data=content)
    assert put["bytes"] == len(content)
    got = client.request(url("web_linux-web2", "/files/get?name=%s" % name))
    assert got["status"] == 200 and got["body"] == content
    assert got["headers"]["X-Webfarm-Node"] == "web_linux-web2"
    f = farm_host("web_linux-web2").file("/srv/webfarm/files/%s" % name)
    assert f.uid == 33 and f.gid == 33


def test_files_reject_bad_names_and_get(client):
    assert client.request(url("web_linux-web1", "/files/put?name=../etc/passwd"), method="POST", data="x")["status"] == 400
    assert client.request(url("web_linux-web1", "/files/put?name=ok.txt"))["status"] == 405
    assert client.request(url("web_linux-web2", "/files/get?name=missing-%s" % uuid.uuid4().hex))["status"] == 404


def test_db_row_written_on_one_node_is_read_on_the_other(client):
    value = uuid.uuid4().hex
    wrote = client.json(url("web_linux-web1", "/db/write"), method="POST", data=value)
    read = client.json(url("web_linux-web2", "/db/read?id=%d" % wrote["id"]))
    assert read["row"]["payload"] == value and read["row"]["node"] == "web_linux-web1"
    assert read["answered_by"] == "primary"   # no replicas in this scenario
    assert client.request(url("web_linux-web2", "/db/read?id=abc"))["status"] == 400


def php_version(h):
    """The PHP release the node runs ("8.2" on Debian 12, "8.4" on Debian 13)."""
    return h.check_output("php -r 'echo PHP_MAJOR_VERSION, \".\", PHP_MINOR_VERSION;'")


def _meminfo_mb(h):
    kb = int(re.search(r"MemTotal:\s+(\d+)", h.file("/proc/meminfo").content_string).group(1))
    return kb // 1024


@pytest.mark.parametrize("node", sorted(WEB))
def test_fpm_pool_sized_by_the_formula(node):
    h = farm_host(node)
    expected = max(min((_meminfo_mb(h) - 512) // 64, 6), 2)   # limit 6 in molecule.yml
    dump = h.check_output("php-fpm%s -tt 2>&1" % php_version(h))
    pools = [p for p in re.findall(r"NOTICE: \[(\w+)\]", dump) if p != "global"]
    assert pools == ["webfarm"]   # the default www pool is gone
    assert "pm.max_children = %d" % expected in dump
    assert "pm.max_spare_servers = %d" % max(expected // 4, max(expected // 8, 1) + 1) in dump
    workers = h.check_output("pgrep -c -f 'php-fpm: pool webfarm'")
    assert 1 <= int(workers) <= expected


@pytest.mark.parametrize("node", sorted(WEB))
def test_opcache_on_and_temp_dir_local(client, node):
    body = client.json(url(node, "/whoami"))
    assert body["opcache"] is True and body["sapi"] == "fpm-fcgi"
    assert body["temp_dir"] == "/var/lib/webfarm/tmp"
    h = farm_host(node)
    assert h.file("/var/lib/webfarm/tmp").user == "www-data"
    assert h.file("/var/lib/webfarm/tmp").mode == 0o1770


@pytest.mark.parametrize("path", ["/etc/apache2/sites-available/webfarm.conf",
                                  "/etc/php/{php}/fpm/pool.d/webfarm.conf",
                                  "/etc/php/{php}/fpm/conf.d/90-webfarm.ini",
                                  "/var/www/webfarm/config/config.php"])
def test_rendered_files_say_they_are_managed(path):
    h = farm_host("web_linux-web1")
    assert "Ansible managed" in h.file(path.format(php=php_version(h))).content_string


def test_app_config_is_not_world_readable():
    f = farm_host("web_linux-web1").file("/var/www/webfarm/config/config.php")
    assert f.mode == 0o640 and f.group == "www-data"


def test_bad_input_fails_before_anything_is_written():
    scenario = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         os.path.join(scenario, "bad_input.yml")],
        capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "all bad inputs rejected" in r.stdout


@pytest.mark.parametrize("node", sorted(WEB))
def test_legacy_route_cookie_names_the_node(proxy, node):
    # webfarm_legacy_route_cookie: colo.webfarm.route_cookie's map, the same on every node
    r = proxy.request(url(node, "/whoami"))
    cookie = r["headers"].get("Set-Cookie", "")
    assert cookie.startswith("BALANCEID=balancer.%s;" % node), cookie
