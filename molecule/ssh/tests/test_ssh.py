"""The production path: SSH as a sudo user, a firewall that never locks the operator out.

Converge and idempotence ran site.yml over SSH as 'ops' (passwordless sudo,
Debian's env_reset), lb1 on port 2222, webfarm_admin_networks empty. Here:
a NEW SSH connection (no ControlPersist master) reaches every host; SSH is
open to the controller only; the operator's own nftables table on web1
survives the converge, an nftables restart and a container restart; the
commit-confirmed apply rolls a ruleset that cuts the controller off back by
itself and the run says so; bad input stops the run before any host changes;
last, ports moved in the inventory move each service, its clients and its
firewall flow together.
The hosts' state is read as root through docker exec (testinfra docker://),
never through the connection under test.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check, play_recap as recap  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.dirname(os.path.dirname(SCENARIO)))
KEY = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "id_ed25519")
SITE = os.path.join(PROJECT, "playbooks", "site.yml")

RUNNER = AnsibleRunner(INVENTORY)
FARM = sorted(RUNNER.get_hosts("webfarm"))
VARS = {h: RUNNER.get_variables(h) for h in FARM}
ADDR = {h: VARS[h]["ansible_host"] for h in FARM}
PORT = {h: int(VARS[h].get("ansible_port", 22)) for h in FARM}
CONTROLLER = "172.29.24.1"  # the bridge gateway: what the hosts see of this machine

testinfra_hosts = ["docker://ssh-db1"]


def root(name):
    return testinfra.get_host("docker://" + name)


def fresh_ssh(name, command="true", user="ops", timeout=20):
    """A new SSH connection, no multiplexing: what the firewall must let in."""
    return subprocess.run(
        ["ssh", "-i", KEY, "-p", str(PORT[name]), "-o", "BatchMode=yes", "-o", "ControlMaster=no",
         "-o", "ControlPath=none", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=8", "%s@%s" % (user, ADDR[name]), command],
        capture_output=True, text=True, timeout=timeout)


def playbook(path, *args, timeout=900):
    return subprocess.run(["ansible-playbook", "-i", INVENTORY, path] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def wait_for_ssh(name, bound=90):
    deadline = time.time() + bound
    while time.time() < deadline:
        if fresh_ssh(name).returncode == 0:
            return True
        time.sleep(2)
    return False


def state(name):
    h = root(name)
    return {"live": h.check_output("nft -s list table inet webfarm"),
            "ruleset": h.file("/etc/webfarm/firewall/ruleset.nft").sha256sum,
            "loaded": h.file("/etc/webfarm/firewall/loaded.nft").content_string}


def test_a_drift_check_over_ssh_completes_and_changes_nothing():
    """site.yml --check --diff over SSH on the converged farm: no failure, changed=0, no secret in the output."""
    out, rc = drift_check(SITE, INVENTORY)
    assert all(r["changed"] == 0 for r in rc.values()), rc
    for secret in ("molecule-ssh-app-password", "molecule-ssh-redis-password", "molecule-ssh-stats-password"):
        assert secret not in out


@pytest.mark.parametrize("name", FARM)
def test_a_new_ssh_connection_with_sudo_reaches_every_host(name):
    run = fresh_ssh(name, "sudo -n nft list table inet webfarm")
    assert run.returncode == 0, run.stderr
    assert "policy drop" in run.stdout


@pytest.mark.parametrize("name", FARM)
def test_ssh_is_open_to_the_controller_only_on_the_port_ansible_uses(name):
    live = root(name).check_output("nft list chain inet webfarm input")
    rule = [line.strip() for line in live.splitlines() if "ansible controller" in line]
    assert rule == ['ip saddr %s tcp dport %d accept comment "ansible controller"' % (CONTROLLER, PORT[name])]
    # with webfarm_admin_networks empty there is no other SSH rule
    assert not re.search(r"tcp dport (22|2222) accept comment \"ssh\"", live), live


def test_ssh_from_another_farm_host_is_dropped():
    # web1 is no admin network and not the controller: db1's SSH must not answer
    probe = root("ssh-web1").run("timeout 4 bash -c '</dev/tcp/%s/22'" % ADDR["ssh-db1"])
    assert probe.rc != 0
    assert root("ssh-db1").run("ss -ltn '( sport = :22 )'").stdout.count("LISTEN") >= 1  # sshd is there


def test_the_operators_table_survives_the_converge():
    h = root("ssh-web1")
    assert 'comment "the operator\'s own rule"' in h.check_output("nft list table inet operator")
    assert "webfarm" not in h.file("/etc/nftables.conf").content_string
    assert h.service("nftables").is_enabled and h.service("webfarm-firewall").is_enabled


def test_nftables_restart_keeps_both_tables():
    # the stock nftables.conf flushes the whole ruleset; webfarm-firewall follows
    h = root("ssh-web1")
    before = state("ssh-web1")
    h.check_output("systemctl restart nftables")
    assert h.run("nft list table inet operator").rc == 0
    assert state("ssh-web1") == before
    assert fresh_ssh("ssh-web1").returncode == 0


@pytest.mark.parametrize("name", ["ssh-web1", "ssh-lb1"])
def test_after_a_reboot_the_ruleset_is_back_and_ssh_gets_in(name):
    before = state(name)
    subprocess.run(["docker", "restart", "-t", "5", name], check=True, capture_output=True, timeout=120)
    assert wait_for_ssh(name), "no new SSH connection to %s within 90 s of its restart" % name
    h = root(name)
    assert state(name) == before
    assert h.service("webfarm-firewall").is_running  # oneshot, RemainAfterExit
    if name == "ssh-web1":
        assert h.run("nft list table inet operator").rc == 0


def test_site_firewall_tag_over_ssh_keeps_the_controller_in():
    # the run that locked a host out before (issue #14): only the firewall tier
    run = playbook(SITE, "--tags", "firewall")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Check every host before any change" in run.stdout
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(run.stdout).values())
    for name in FARM:
        assert fresh_ssh(name).returncode == 0, name


def test_a_ruleset_that_cuts_the_controller_off_is_rolled_back_by_the_host():
    before = state("ssh-db1")
    t0 = time.time()
    run = playbook(os.path.join(SCENARIO, "lockout.yml"), timeout=300)
    took = time.time() - t0
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "host 'ssh-db1'" in out and "restored its previous webfarm table" in out, out[-3000:]
    assert "/etc/webfarm/firewall/rollback.nft" in out
    # back by itself: firewall_confirm_timeout (30 s) after the load, and the
    # run did not wait much longer than that
    assert took < 30 + 10 + 60, took
    assert fresh_ssh("ssh-db1").returncode == 0
    after = state("ssh-db1")
    assert after["live"] == before["live"]          # the previous table is loaded again
    assert after["ruleset"] == before["ruleset"]    # the boot ruleset never changed
    candidate = root("ssh-db1").file("/etc/webfarm/firewall/candidate.nft").content_string
    assert "ansible controller" not in candidate    # the rejected one is kept for a look
    # a normal run loads the right ruleset again (and confirms it)
    fix = playbook(SITE, "--tags", "firewall", "--limit", "localhost,ssh-db1")
    assert fix.returncode == 0, fix.stdout[-3000:]
    assert "ansible controller" in root("ssh-db1").file("/etc/webfarm/firewall/ruleset.nft").content_string


@pytest.fixture
def fake_firewalld():
    h = root("ssh-web1")
    h.check_output("printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n'"
                   " > /etc/systemd/system/firewalld.service && systemctl daemon-reload"
                   " && systemctl enable --now firewalld.service")
    yield
    h.run("systemctl disable --now firewalld.service; rm -f /etc/systemd/system/firewalld.service;"
          " systemctl daemon-reload")


def _untouched(run):
    rc = recap(run.stdout)
    assert run.returncode != 0
    assert all(r["changed"] == 0 for r in rc.values()), rc
    return run.stdout + run.stderr


@pytest.mark.parametrize("host,host_vars,needle", [
    ("ssh-db1", {"ansible_user": "needpw"},
     "host 'ssh-db1': ansible_become is true but sudo for user 'needpw' asks for a password"),
    ("ssh-db1", {"ansible_user": "needtty"},
     "host 'ssh-db1': ansible_become is true but sudo for user 'needtty' requires a terminal (Defaults requiretty)"),
    # a balancer check (playbooks/checks.yml) that used to fail half-way through the run
    ("ssh-lb1", {"haproxy_admin_networks": []}, "host 'ssh-lb1': variable 'haproxy_admin_networks'"),
    # inventory-only mistakes (a non-numeric ansible_port, an admin network that is not a
    # CIDR) are tests/integration/test_preflight.py's cases: they fail there with no host contacted
])
def test_bad_access_input_stops_before_any_host_changes(tmp_path, host, host_vars, needle):
    # one host's variables, from a second inventory source
    extra = tmp_path / "extra.yml"
    extra.write_text(json.dumps({"all": {"hosts": {host: host_vars}}}))
    before = {n: state(n) for n in FARM}
    out = _untouched(playbook(SITE, "-i", str(extra), timeout=300))
    assert needle in out, out[-3000:]
    if "ansible_user" in host_vars:
        assert "Nothing was changed" in out
    assert {n: state(n) for n in FARM} == before


def test_firewalld_without_opt_in_stops_before_any_host_changes(fake_firewalld):
    before = {n: state(n) for n in FARM}
    out = _untouched(playbook(SITE, timeout=300))
    assert "host 'ssh-web1': firewalld is enabled or running" in out, out[-3000:]
    assert "firewall_replace_firewalld" in out
    assert {n: state(n) for n in FARM} == before


def test_firewalld_with_opt_in_is_stopped_and_disabled(fake_firewalld):
    run = playbook(SITE, "--tags", "firewall", "--limit", "localhost,ssh-web1", "-e", "firewall_replace_firewalld=true")
    assert run.returncode == 0, run.stdout[-3000:]
    h = root("ssh-web1")
    assert not h.service("firewalld").is_running and not h.service("firewalld").is_enabled
    assert fresh_ssh("ssh-web1").returncode == 0


@pytest.fixture
def looks_like_ubuntu():
    h = root("ssh-db1")
    h.check_output("cp --remove-destination /usr/lib/os-release /etc/os-release && "
                   "sed -i 's/^ID=.*/ID=ubuntu/; s/^NAME=.*/NAME=\"Ubuntu\"/; s/^VERSION_ID=.*/VERSION_ID=\"24.04\"/' "
                   "/etc/os-release && mv /etc/debian_version /etc/debian_version.molecule")
    yield
    h.run("mv /etc/debian_version.molecule /etc/debian_version; ln -sf ../usr/lib/os-release /etc/os-release")


def test_an_untested_platform_is_refused_before_any_host_changes(looks_like_ubuntu):
    before = {n: state(n) for n in FARM}
    out = _untouched(playbook(SITE, timeout=300))
    # the name Ansible derives may stay Debian (it reads more than os-release); the version is 24.04
    assert re.search(r"host 'ssh-db1' runs \S+ 24\.04, which no test of colo\.webfarm covers \(tested: Debian 12, 13\)",
                     out), out[-3000:]
    assert "webfarm_allow_untested_platforms: true" in out
    assert {n: state(n) for n in FARM} == before


# ------------------------------------------- one source for the ports (#17) --
# Last in this file: it leaves the farm on the moved ports.
MOVED = {"webfarm_balancer_admin_port": 8405, "webfarm_db_port": 3307, "webfarm_redis_port": 6380}
LB, WEB, DB = ADDR["ssh-lb1"], ADDR["ssh-web1"], ADDR["ssh-db1"]


def _listening(name):
    out = root(name).check_output("ss -Htln")
    return {int(m) for m in re.findall(r"\S+:(\d+)\s", out)}


def _reaches(src, addr, port):
    """A TCP connection from inside container ``src`` (bounded)."""
    return root(src).run("timeout 4 bash -c 'exec 3<>/dev/tcp/%s/%d'" % (addr, port)).rc == 0


def _curl(*args):
    return subprocess.run(["curl", "-sk", "--max-time", "10"] + list(args), capture_output=True, text=True, timeout=20)


def test_ports_moved_in_the_inventory_move_services_clients_and_firewall(tmp_path):
    assert {3306, 6379} <= _listening("ssh-db1") and 8404 in _listening("ssh-lb1")
    # the three ports, and the admin network for the stats page, in a second inventory source
    # (host vars: they outrank the scenario's group_vars of webfarm)
    extra = tmp_path / "ports.yml"
    farm_vars = dict(MOVED, webfarm_admin_networks=[CONTROLLER + "/32"], mysql_allow_primary_restart=True)
    extra.write_text(json.dumps({"all": {"hosts": {h: farm_vars for h in FARM}}}))
    run = playbook(SITE, "-i", str(extra), timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "molecule-ssh-redis-password" not in run.stdout + run.stderr

    # each service answers on its new port only
    assert {3307, 6380} <= _listening("ssh-db1") and not {3306, 6379} & _listening("ssh-db1")
    assert 8405 in _listening("ssh-lb1") and 8404 not in _listening("ssh-lb1")

    # ... from where it is allowed, and not from elsewhere
    assert _reaches("ssh-web1", DB, 3307) and _reaches("ssh-web1", DB, 6380)
    assert not _reaches("ssh-lb1", DB, 3307) and not _reaches("ssh-lb1", DB, 6380)
    stats = _curl("-o", "/dev/null", "-w", "%{http_code}", "-u", "admin:molecule-ssh-stats-password",
                  "http://%s:8405/stats" % LB)
    assert stats.stdout == "200", stats
    assert not _reaches("ssh-web1", LB, 8405)

    # the firewall rules name the new ports and no longer the old ones
    db_rules = root("ssh-db1").check_output("nft list table inet webfarm")
    lb_rules = root("ssh-lb1").check_output("nft list table inet webfarm")
    assert "dport 3307" in db_rules and "dport 6380" in db_rules, db_rules
    assert "dport 3306" not in db_rules and "dport 6379" not in db_rules, db_rules
    assert "dport 8405" in lb_rules and "dport 8404" not in lb_rules, lb_rules

    # the clients followed: the app writes and reads through the database and
    # keeps its session in Redis on the moved ports, through the balancer
    wrote = _curl("-d", "value=moved-ports", "https://%s/db/write" % LB)
    assert wrote.returncode == 0 and '"id"' in wrote.stdout, wrote
    row = json.loads(wrote.stdout)["id"]
    read = _curl("https://%s/db/read?id=%s" % (LB, row))
    body = json.loads(read.stdout)
    assert int(body["row"]["id"]) == row and body["server"].endswith(":3307"), body
    jar = tmp_path / "cookies"
    counts = [json.loads(_curl("-b", str(jar), "-c", str(jar), "https://%s/session" % LB).stdout)["count"]
              for _ in range(3)]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2], counts
    # SSH still gets in (the firewall change went through the confirmation)
    assert all(fresh_ssh(n).returncode == 0 for n in FARM)
