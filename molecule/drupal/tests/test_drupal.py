"""Drupal settings rendered on two web nodes (archive and directory sources)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import farm_host

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check  # noqa: E402

testinfra_hosts = ["ansible://drupal-web1", "ansible://drupal-web2"]

SETTINGS = "/var/www/drupal/web/sites/default/settings.php"
DB = {"database": "drupal", "username": "webfarm", "password": "db-pass-with-'quote'-and-\\-backslash",
      "port": 3306, "prefix": "", "collation": "utf8mb4_general_ci", "driver": "mysql",
      "namespace": "Drupal\\mysql\\Driver\\Database\\mysql",
      "autoload": "core/modules/mysql/src/Driver/Database/mysql/"}
EXPECTED = {
    "primary": dict(DB, host="172.29.15.41"),
    "replicas": [dict(DB, host="172.29.15.42"), dict(DB, host="172.29.15.43")],
    "hash_salt": "salt-0123456789abcdef0123456789abcdef-'q'\\b",
    "proxies": ["172.29.15.20", "172.29.15.21", "172.29.15.10"],
    "headers": 2 | 8,   # X_FORWARDED_FOR | X_FORWARDED_PROTO: what the balancers send
    "trusted_host_patterns": ["^www\\.example\\.test$", "^example\\.test$"],
    "files_path": "/srv/webfarm/files",
    "public_realpath": "/srv/webfarm/files/drupal/public",
    "private": "/srv/webfarm/files/drupal/private",
    "temp": "/var/lib/drupal/tmp",
    "twig": "/var/lib/drupal/php",
    "redis_host": "172.29.15.61",
    "redis_password": "molecule-redis-secret",
}


def test_check_mode_changes_nothing_and_never_prints_a_secret():
    """A drift check (--check --diff) of the converged scenario: no failure,
    changed=0 on both nodes, and settings.php's secrets (DB password, hash
    salt, Redis password) appear nowhere in the output."""
    out, recap = drift_check(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"))
    assert {"drupal-web1", "drupal-web2"} <= set(recap), recap
    assert all(r["changed"] == 0 for r in recap.values()), recap
    for secret in (DB["password"], EXPECTED["hash_salt"], EXPECTED["redis_password"]):
        assert secret not in out


def test_settings_php_is_valid_php(host):
    out = host.check_output("php -l %s" % SETTINGS)
    assert "No syntax errors" in out


def test_settings_hold_every_expected_value(host):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "assert_settings.php")) as f:
        script = f.read()
    host.run("mkdir -p /tmp/drupal-test")
    # write the script and the expected values through stdin-free heredocs
    host.check_output("cat > /tmp/drupal-test/assert_settings.php <<'PHPEOF'\n%s\nPHPEOF" % script)
    host.check_output("cat > /tmp/drupal-test/expected.json <<'JSONEOF'\n%s\nJSONEOF" % json.dumps(EXPECTED))
    # run as the web server's user: it must be able to read settings.php
    r = host.run("runuser -u www-data -- php /tmp/drupal-test/assert_settings.php %s /tmp/drupal-test/expected.json"
                 % SETTINGS)
    assert r.rc == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr


def test_the_assertions_can_fail(host):
    wrong = dict(EXPECTED, hash_salt="another-salt")
    host.check_output("cat > /tmp/drupal-test/wrong.json <<'JSONEOF'\n%s\nJSONEOF" % json.dumps(wrong))
    r = host.run("php /tmp/drupal-test/assert_settings.php %s /tmp/drupal-test/wrong.json" % SETTINGS)
    assert r.rc == 1 and "FAIL hash_salt" in r.stdout


def test_settings_are_the_same_on_every_node(host):
    other = farm_host("drupal-web2")
    assert host.file(SETTINGS).sha256sum == other.file(SETTINGS).sha256sum


def test_settings_protected(host):
    f = host.file(SETTINGS)
    assert f.user == "root" and f.group == "www-data" and f.mode == 0o440
    assert "Ansible managed" in f.content_string


def test_code_base_deployed(host):
    assert host.file("/var/www/drupal/web/core/lib/Drupal.php").contains("10.3.0-fixture")
    assert host.file("/var/www/drupal/composer.json").exists   # the archive's top directory was stripped


def test_local_dirs_writable_by_php(host):
    for d in ["/var/lib/drupal/tmp", "/var/lib/drupal/php"]:
        assert host.run("runuser -u www-data -- test -w %s" % d).rc == 0


def test_missing_code_base_is_rejected(host):
    if host.backend.get_hostname() != "drupal-web1":
        pytest.skip("once is enough")
    scenario = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inventory_dir = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    r = subprocess.run(
        ["ansible-playbook", "-i", inventory_dir, os.path.join(scenario, "bad_input.yml")],
        capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "missing code base rejected" in r.stdout
