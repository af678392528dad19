"""playbooks/remove_node.yml, checked without containers.

- Bad input stops the run in its check play on the controller, before any
  farm host is contacted (the recap lists localhost only), with a message
  naming the cause: no name, an unknown name, a host that is not a web node,
  the last active web node (the others are webfarm_backup).
- A Windows web node passes the checks like a Linux one (run with
  ``-l localhost``, so that no host is contacted) and the end of the run
  tells the operator to remove it from the inventory and run site.yml.
- On inventories/production.example the balancer play selects every
  balancer, the stop play reaches the Windows node through the same playbook
  (web_windows ``tasks_from: stop``), and the playbook passes
  ``--syntax-check`` against both inventories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from test_day2_hosts import _plays  # same directory (pytest puts it on sys.path)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLAYBOOK = os.path.join(REPO, "playbooks", "remove_node.yml")
PRODUCTION = os.path.join(REPO, "inventories", "production.example")
LAB = os.path.join(REPO, "inventories", "lab")


def _run(args, timeout=300):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    proc.recap = dict(re.findall(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M))
    return proc


@pytest.fixture()
def inventory(tmp_path):
    """lb1, web1 + web2 (Linux), win1 (Windows), db1; never contacted: the
    check play runs on the controller, and an accepted name runs -l localhost."""
    def make(backup=()):
        web = {"web_linux": {"hosts": {}}, "web_windows": {"hosts": {}}}
        for i, (name, group) in enumerate([("web1", "web_linux"), ("web2", "web_linux"), ("win1", "web_windows")]):
            web[group]["hosts"][name] = {"ansible_host": "192.0.2.%d" % (31 + i), "webfarm_backup": name in backup}
        # localhost named, so that -l localhost selects it
        inv = {"ungrouped": {"hosts": {"localhost": {"ansible_connection": "local"}}}, "webfarm": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3"),
                     "webfarm_admin_networks": ["10.0.9.0/24"], "webfarm_db_password": "not-a-placeholder"},
            "children": {"balancers": {"hosts": {"lb1": {"ansible_host": "192.0.2.20"}}},
                         "web": {"children": web},
                         "db": {"children": {"db_primary": {"hosts": {"db1": {"ansible_host": "192.0.2.41"}}}}}}}}
        path = tmp_path / ("hosts-%s.yml" % "-".join(backup or ["none"]))
        path.write_text(yaml.safe_dump(inv))
        return str(path)
    return make


@pytest.mark.parametrize("extra,message", [
    ({}, "variable 'webfarm_remove_node' is \"unset\""),
    ({"webfarm_remove_node": ""}, "variable 'webfarm_remove_node' is \"\""),
    ({"webfarm_remove_node": "web9"}, "'web9', which is not a host of this inventory; expected one of the web nodes: web1, web2, win1"),
    ({"webfarm_remove_node": "db1"}, "'db1', which is not a web node (its groups: db, db_primary, webfarm)"),
    ({"webfarm_remove_node": "lb1"}, "'lb1', which is not a web node (its groups: balancers, webfarm)"),
], ids=["unset", "empty", "unknown", "database host", "balancer"])
def test_bad_input_stops_before_any_host(inventory, extra, message):
    args = ["ansible-playbook", "-i", inventory(), PLAYBOOK]
    if extra:
        args += ["-e", json.dumps(extra)]
    proc = _run(args)
    assert proc.returncode != 0
    assert message in " ".join(proc.output.split()), proc.output[-3000:]
    assert list(proc.recap) == ["localhost"], proc.recap
    assert "Take the node out of every balancer" not in proc.output


def test_the_last_active_web_node_is_refused(inventory):
    proc = _run(["ansible-playbook", "-i", inventory(backup=("web2", "win1")), PLAYBOOK, "-e", "webfarm_remove_node=web1"])
    assert proc.returncode != 0
    text = " ".join(proc.output.split())
    assert "web node 'web1' is the last active web node (other web nodes: web2, win1, none of them active" in text, text[-3000:]
    assert list(proc.recap) == ["localhost"], proc.recap
    # the same farm may lose a backup node
    proc = _run(["ansible-playbook", "-i", inventory(backup=("web2", "win1")), PLAYBOOK, "-e", "webfarm_remove_node=web2",
                 "-l", "localhost"])
    assert proc.returncode == 0, proc.output[-3000:]


@pytest.mark.parametrize("node", ["win1", "web2"])
def test_a_windows_or_linux_node_passes_the_checks(inventory, node):
    proc = _run(["ansible-playbook", "-i", inventory(), PLAYBOOK, "-e", "webfarm_remove_node=%s" % node, "-l", "localhost"])
    assert proc.returncode == 0, proc.output[-3000:]
    text = " ".join(proc.output.split())
    assert "Now remove '%s' from the inventory (every group it is in) and run site.yml" % node in text, text[-2000:]


def _hosts(inventory, group):
    proc = _run(["ansible-inventory", "-i", inventory, "--graph", group])
    assert proc.returncode == 0, proc.output
    return {line.strip(" |-@:") for line in proc.stdout.splitlines() if "@" not in line and line.strip(" |-")}


def test_production_example_selects_the_balancers_and_the_windows_node():
    windows = sorted(_hosts(PRODUCTION, "web_windows"))
    assert windows, "inventories/production.example has no web_windows host"
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--list-hosts", "--list-tasks", PLAYBOOK,
                 "-e", "webfarm_remove_node=%s" % windows[0]])
    assert proc.returncode == 0, proc.output[-3000:]
    hosts = _run(["ansible-playbook", "-i", PRODUCTION, "--list-hosts", PLAYBOOK,
                  "-e", "webfarm_remove_node=%s" % windows[0]])
    plays = _plays(hosts.stdout)
    listed = {name: {h for h in hs if not h.startswith(("pattern", "hosts ("))} for name, hs in plays.items()}
    assert listed["Take the node out of every balancer"] == _hosts(PRODUCTION, "balancers")
    assert windows[0] in listed["Stop the node's web services (webfarm_remove_node_stop=true)"]
    tasks = " | ".join(_plays(proc.stdout)["Take the node out of every balancer"])
    assert "Drain it, wait (bounded), then render it out of this balancer" in tasks, tasks


@pytest.mark.parametrize("inv", [LAB, PRODUCTION], ids=["lab", "production.example"])
def test_remove_node_passes_syntax_check(inv):
    proc = _run(["ansible-playbook", "-i", inv, "--syntax-check", PLAYBOOK])
    assert proc.returncode == 0, proc.output
