"""Drift detection: `site.yml --check --diff` on the converged full stack.

Runs after test_default.py (the farm is converged and back in rotation;
molecule's idempotence step has shown that a real second run changes
nothing). Drift is made by hand (a line of web1's vhost, a rule in lb1's
nftables table, PHP-FPM stopped on web2, a line of web3's app config, which
holds the database password): the check run reports exactly those hosts as
changed, shows the vhost and the nftables diffs, never a secret, and leaves
the containers as drifted; a normal run repairs them, and a check run on the
repaired, converged farm completes with failed=0, unreachable=0 and
changed=0 on every host, showing no secret. (That last check run is the
proof for a converged farm: a separate check run before the drift proved the
same thing again and cost a whole site.yml run of CI's time.)
"""

import os
import re
import subprocess

import testinfra

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.join(SCENARIO, "..", "..", "playbooks", "site.yml")
SECRETS = ("molecule-default-app-password", "molecule-default-replication-password",
           "molecule-default-stats-password", "molecule-default-manager-password")
VHOST = "/etc/apache2/sites-available/webfarm.conf"
APP_CONFIG = "/var/www/webfarm/config/config.php"  # webfarm_app_root/config: holds the DB password

testinfra_hosts = ["docker://default-client"]


def box(name):
    return testinfra.get_host("docker://" + name)


def php_version(h):
    """The PHP release the node runs ("8.2" on Debian 12, "8.4" on Debian 13)."""
    return h.check_output("php -r 'echo PHP_MAJOR_VERSION, \".\", PHP_MINOR_VERSION;'")


def site(*args):
    run = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], SITE] + list(args),
                         env=dict(os.environ), capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    recap = {h: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", f)}
             for h, f in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", run.stdout, re.M)}
    return run.returncode, out, recap


def test_check_run_shows_exactly_the_drift_and_changes_nothing_then_a_run_repairs_it():
    web1, lb1, web2, web3 = (box("default-" + n) for n in ("web1", "lb1", "web2", "web3"))
    assert web3.file(APP_CONFIG).exists
    web1.check_output("sed -i 's/^\\(\\s*\\)ServerName .*/&\\n\\1# hand-edited drift/' %s" % VHOST)
    assert "# hand-edited drift" in web1.file(VHOST).content_string
    lb1.check_output("nft add rule inet webfarm input tcp dport 4444 accept comment hand-made")
    fpm = "php%s-fpm" % php_version(web2)
    web2.check_output("systemctl stop %s" % fpm)
    web3.check_output("echo '// app-config-drift-marker' >> %s" % APP_CONFIG)
    drifted = {"vhost": web1.file(VHOST).sha256sum, "app": web3.file(APP_CONFIG).sha256sum}

    rc, out, recap = site("--check", "--diff")
    assert rc == 0, out[-4000:]
    changed = {h for h, r in recap.items() if r["changed"]}
    assert changed == {"default-web1", "default-lb1", "default-web2", "default-web3"}, recap
    assert re.search(r"^-\s*# hand-edited drift$", out, re.M), "no diff of the vhost"
    assert re.search(r'^\+\s+tcp dport 4444 accept comment "hand-made"$', out, re.M), "no diff of the ruleset"
    assert "app-config-drift-marker" not in out, "the app config's content (it holds the password) was shown"
    assert not [s for s in SECRETS if s in out]
    # check mode changed nothing
    assert web1.file(VHOST).sha256sum == drifted["vhost"] and web3.file(APP_CONFIG).sha256sum == drifted["app"]
    assert "hand-made" in lb1.check_output("nft list chain inet webfarm input")
    assert not web2.service(fpm).is_running

    rc, out, recap = site()
    assert rc == 0, out[-4000:]
    assert "# hand-edited drift" not in web1.file(VHOST).content_string
    assert "app-config-drift-marker" not in web3.file(APP_CONFIG).content_string
    assert "hand-made" not in lb1.check_output("nft list chain inet webfarm input")
    assert web2.service(fpm).is_running

    # the repaired farm: a check run completes everywhere and changes nothing
    rc, out, recap = site("--check", "--diff")
    assert rc == 0, (recap, re.findall(r"^fatal: .*$", out, re.M)[:10], out[-2000:])
    assert recap and all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    changed = {h: r["changed"] for h, r in recap.items() if r["changed"]}
    assert not changed, (changed, re.findall(r"^changed: \[.*$", out, re.M)[:20])
    assert not [s for s in SECRETS if s in out]
