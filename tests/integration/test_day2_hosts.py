"""Day-2 playbooks include the Windows web nodes, checked without a Windows host.

- ``rolling_update.yml --list-hosts`` on inventories/production.example
  selects every web node, Linux and Windows (the hosts of group ``web``, from
  ``ansible-inventory``), and ``--list-tasks`` shows the shared per-node steps
  (drain, Linux roles, web_windows ``update``, deep health, ready).
- The playbooks pass ``--syntax-check`` against both inventories, and
  ansible-lint (production profile) on the rolling update and the Windows
  entry points.
- The orchestration itself runs for real on the controller: web nodes on the
  local connection (one of them in ``web_windows``), no balancer, deep health
  over HTTP from the controller against small HTTP servers on 127.0.0.x. A
  healthy farm is rolled node by node; a node whose deep health fails stops
  the roll with a message naming it, saying it is left drained and how to
  put it back, and no node after it is touched; ``rolling_update_ready_only``
  then puts it back once it is healthy.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLAYBOOKS = os.path.join(REPO, "playbooks")
PRODUCTION = os.path.join(REPO, "inventories", "production.example")
LAB = os.path.join(REPO, "inventories", "lab")


def _env(**extra):
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1")
    env.update(extra)
    return env


def _run(args, timeout=300, **env):
    return subprocess.run(args, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _group_hosts(inventory, group):
    proc = _run(["ansible-inventory", "-i", inventory, "--list"])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)

    def walk(name):
        node = data.get(name, {})
        found = set(node.get("hosts", []))
        for child in node.get("children", []):
            found |= walk(child)
        return found
    return walk(group)


def _plays(listing):
    """{play name: [hosts or tasks]} from --list-hosts / --list-tasks output."""
    plays, current = {}, None
    for line in listing.splitlines():
        m = re.match(r"\s+play #\d+ \([^)]*\): (.*?)\t", line)
        if m:
            current = plays.setdefault(m.group(1).strip(), [])
        elif current is not None and line.startswith("      ") and line.strip():
            current.append(line.strip())
    return plays


ROLL_PLAY = "Rolling update of the web nodes (Linux and Windows)"


# ------------------------------------------------------------- selection --

def test_rolling_update_selects_the_windows_hosts_of_production_example():
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--list-hosts", os.path.join(PLAYBOOKS, "rolling_update.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plays = _plays(proc.stdout)
    hosts = {h for h in plays[ROLL_PLAY] if not h.startswith("pattern") and not h.startswith("hosts (")}
    windows = _group_hosts(PRODUCTION, "web_windows")
    assert windows, "inventories/production.example has no web_windows host"
    assert windows <= hosts, hosts
    assert hosts == _group_hosts(PRODUCTION, "web")
    # never a database, balancer or NFS host
    assert not hosts & (_group_hosts(PRODUCTION, "db") | _group_hosts(PRODUCTION, "balancers"))


def test_rolling_update_limited_to_a_windows_node_selects_only_it():
    win = sorted(_group_hosts(PRODUCTION, "web_windows"))[0]
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--list-hosts", "-l", win,
                 os.path.join(PLAYBOOKS, "rolling_update.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = [h for h in _plays(proc.stdout)[ROLL_PLAY] if not h.startswith(("pattern", "hosts ("))]
    assert hosts == [win]


def test_rolling_update_lists_the_shared_steps_for_every_node():
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--list-tasks", os.path.join(PLAYBOOKS, "rolling_update.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = " | ".join(_plays(proc.stdout)[ROLL_PLAY])
    order = ["Find this node in the farm model",
             "Drain this node on every balancer",
             "Apply the web and app roles (Linux)",
             "Update the node (Windows updates when web_windows_update_os, then the role)",
             "Check the node's deep health over HTTP",
             "Put this node back on every balancer"]   # (--list-tasks does not list rescue tasks)
    positions = [tasks.find(t) for t in order]
    assert all(p >= 0 for p in positions), list(zip(order, positions))
    assert positions == sorted(positions)


# --------------------------------------------------- syntax check and lint --

@pytest.mark.parametrize("inventory", [LAB, PRODUCTION], ids=["lab", "production.example"])
@pytest.mark.parametrize("playbook", ["rolling_update.yml", "web_windows.yml"])
def test_day2_playbooks_pass_syntax_check(inventory, playbook):
    proc = _run(["ansible-playbook", "-i", inventory, "--syntax-check", os.path.join(PLAYBOOKS, playbook)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_windows_tasks_pass_ansible_lint():
    lint = shutil.which("ansible-lint") or os.path.join(REPO, ".venv", "bin", "ansible-lint")
    if not os.path.exists(lint):
        pytest.skip("ansible-lint is not installed (scripts/bootstrap.sh installs it)")
    paths = ["playbooks/rolling_update.yml", "playbooks/web_windows.yml", "roles/web_windows", "roles/drupal",
             "molecule/web_windows"]
    proc = _run([lint, "--profile", "production", "--strict", "--offline", "-q"] + paths, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


# --------------------------------------- the orchestration, run for real --

class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        code = self.server.status if self.path == "/health/deep" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK\n" if code == 200 else b"FAIL\n")

    def log_message(self, *args):
        pass


NODES = {  # name: (group, address)
    "web1": ("web_linux", "127.0.0.1"),
    "web2": ("web_linux", "127.0.0.2"),
    "win1": ("web_windows", "127.0.0.3"),
}


@pytest.fixture()
def farm(tmp_path):
    """Three web nodes on the local connection, each with its own health server."""
    servers = {}
    for name, (_, addr) in NODES.items():
        srv = http.server.ThreadingHTTPServer((addr, 0), _Health)
        srv.status = 200
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[name] = srv
    web = {"web_linux": {"hosts": {}}, "web_windows": {"hosts": {}}}
    for name, (group, addr) in NODES.items():
        # ansible_host only: the address comes from the model (webfarm_address defaults to it)
        web[group]["hosts"][name] = {"ansible_host": addr, "webfarm_port": servers[name].server_address[1]}
    inv = {
        "all": {"vars": {"preflight_required_groups": ["web"]}},
        "webfarm": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3"),
                     "webfarm_admin_networks": ["10.0.9.0/24"], "webfarm_db_password": "not-a-placeholder"},
            "children": {"balancers": {"hosts": {}}, "web": {"children": web}},
        },
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "update.yml").write_text(yaml.safe_dump([{
        "name": "Leave a marker for this node",
        "ansible.builtin.copy": {"content": "updated\n", "dest": str(tmp_path) + "/updated-{{ inventory_hostname }}",
                                 "mode": "0644"},
        "delegate_to": "localhost"}]))
    yield tmp_path, servers
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def _roll(tmp, *extra):
    proc = _run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), os.path.join(PLAYBOOKS, "rolling_update.yml"),
                 "-e", "rolling_update_tasks=%s" % (tmp / "update.yml"), "-e", "rolling_update_health_retries=2"]
                + list(extra), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    data = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]
    order = []   # web nodes in the order the roll reached them
    failures = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if host in NODES and host not in order:
                    order.append(host)
                if res.get("failed") and task["task"]["name"].startswith("Stop the roll"):
                    failures[host] = res["msg"]
    return proc, order, failures


def test_rolling_update_rolls_linux_and_windows_nodes_one_by_one(farm):
    tmp, _ = farm
    proc, order, failures = _roll(tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(order) == sorted(NODES) and not failures
    assert all((tmp / ("updated-" + n)).exists() for n in NODES)


def test_rolling_update_stops_at_the_first_unhealthy_node_and_says_how_to_put_it_back(farm):
    tmp, servers = farm
    servers["win1"].status = 503
    proc, order, failures = _roll(tmp)
    assert proc.returncode != 0
    assert list(failures) == ["win1"], (failures, proc.stdout[-3000:])
    msg = failures["win1"]
    assert "ROLLING UPDATE STOPPED at web node 'win1' (Windows, 127.0.0.3)" in msg
    assert "Check the node's deep health over HTTP" in msg
    assert "'win1' is LEFT DRAINED" in msg
    assert "-l win1 -e rolling_update_ready_only=true" in msg
    # the roll stopped there: win1 is the last node it reached, every node
    # before it was updated, none after it was touched
    assert order[-1] == "win1", order
    assert (tmp / "updated-win1").exists()
    for n in NODES:
        assert (tmp / ("updated-" + n)).exists() == (n in order), (n, order)

    # once healthy, ready_only puts it back without updating it again
    servers["win1"].status = 200
    (tmp / "updated-win1").unlink()
    proc, order, failures = _roll(tmp, "-l", "win1", "-e", "rolling_update_ready_only=true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert order == ["win1"] and not failures
    assert not (tmp / "updated-win1").exists()


# ------------------------------- the web_windows scenario (real host only) --

SCENARIO = os.path.join(REPO, "molecule", "web_windows")


def test_web_windows_scenario_runs_the_roll_and_the_promotion_rerender():
    plays = yaml.safe_load(open(os.path.join(SCENARIO, "verify.yml")))
    roll = [p for p in plays if "ansible.builtin.import_playbook" in p]
    assert [p["ansible.builtin.import_playbook"] for p in roll] == ["../../playbooks/rolling_update.yml"]
    assert os.path.exists(os.path.join(SCENARIO, roll[0]["ansible.builtin.import_playbook"]))
    assert roll[0]["vars"]["rolling_update_health_from"] == "localhost"
    rerender = [t for p in plays for t in json.dumps(p).split("tasks_from")[1:]]
    assert any(s.startswith('": "db_settings"') for s in rerender), rerender
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--syntax-check", os.path.join(SCENARIO, "verify.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_web_windows_scenario_skips_without_a_windows_host():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINDOWS_", "WEBFARM_PHP", "WEBFARM_URLREWRITE"))}
    proc = subprocess.run([os.path.join(SCENARIO, "skip-unless")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.count("\n") == 1 and "WINDOWS_HOST" in proc.stdout, proc.stdout


# ---------------------------------------------------- db_promote.yml (wiring) --

def _rerender_hosts(playbook):
    proc = _run(["ansible-playbook", "-i", PRODUCTION, "--list-hosts", "-e", "mode=switchover", playbook])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = set()
    for name, lines in _plays(proc.stdout).items():
        if "re-render" in name:
            hosts |= {h for h in lines if not h.startswith(("pattern", "hosts ("))}
    return hosts


# After a promotion db_promote.yml re-renders the database settings of every
# web node: Linux (webfarm_app) and Windows (web_windows tasks_from db_settings).
def test_db_promote_rerenders_the_windows_nodes_of_production_example():
    hosts = _rerender_hosts(os.path.join(PLAYBOOKS, "db_promote.yml"))
    assert _group_hosts(PRODUCTION, "web_windows") <= hosts, hosts
    assert _group_hosts(PRODUCTION, "web_linux") <= hosts, hosts
