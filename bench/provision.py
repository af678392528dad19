#!/usr/bin/env python3
"""Provisioning speed of site.yml on the container lab.

Measures, side by side in one run:
  1. cold converge: site.yml on freshly created lab containers;
  2. idempotent re-run: site.yml again (must report changed=0);
  3. floor: a generated playbook with, for every host, as many no-op module
     calls (ansible.builtin.ping) as tasks run 2 actually executed there, with
     the same inventory, connection, forks and ansible.cfg.
2 and 3 run --runs times, interleaved (2,3,2,3,...); medians are reported,
with the per-host time of 2 and the ratio 2/3. With --strategies linear,mitogen
(the default) 2 and 3 run once per strategy in each round, so Ansible's own
linear strategy and Mitogen's mitogen_linear are compared in one run; the
cold converge uses the first strategy.

    .venv/bin/python bench/provision.py [--runs 3] [--skip-cold] [--strategies linear,mitogen]

Writes bench/results/provision.json. Run it from the repo root after
`scripts/bootstrap.sh`; it creates and keeps the lab (`make lab-down` removes it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
INVENTORY = os.path.join(REPO, "inventories", "lab", "hosts.yml")


def mitogen_strategy_dir():
    return os.path.join(REPO, "molecule", "shared", "strategy")  # the shim scripts/env.sh uses


def env(strategy="linear"):
    e = dict(os.environ)
    e.update({
        "PATH": os.path.join(REPO, ".venv", "bin") + os.pathsep + e.get("PATH", ""),
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    })
    for k in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
        e.pop(k, None)
    if strategy == "mitogen":
        # what WEBFARM_MITOGEN=1 in scripts/env.sh sets
        e.update({"ANSIBLE_STRATEGY_PLUGINS": mitogen_strategy_dir(), "ANSIBLE_STRATEGY": "mitogen_linear"})
    return e


def playbook(path, *extra, strategy="linear"):
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, path, *extra], cwd=REPO, env=env(strategy),
                          capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("%s failed (rc=%d)" % (path, proc.returncode))
    # the json callback prints one document; other callbacks may print around it
    start = proc.stdout.index("\n{\n") + 1 if not proc.stdout.startswith("{") else 0
    return wall, json.JSONDecoder().raw_decode(proc.stdout[start:])[0]


def summarise(wall, result):
    executed = collections.Counter()
    for play in result["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if not res.get("skipped"):
                    executed[host] += 1
    stats = result["stats"]
    farm_hosts = sorted(h for h in stats if h != "localhost")
    return {
        "wall_s": round(wall, 2),
        "hosts": len(farm_hosts),
        "tasks_per_host": {h: executed[h] for h in farm_hosts},
        "changed": sum(stats[h]["changed"] for h in stats),
        "changed_by_host": {h: stats[h]["changed"] for h in stats if stats[h]["changed"]},
        "failed": sum(stats[h]["failures"] + stats[h]["unreachable"] for h in stats),
    }


def floor_playbook(tasks_per_host, directory):
    """One play per distinct task count, each host pinging that many times."""
    by_count = collections.defaultdict(list)
    for host, n in tasks_per_host.items():
        by_count[n].append(host)
    lines = ["---"]
    for n, hosts in sorted(by_count.items()):
        lines += ["- name: Floor for %d tasks" % n, "  hosts: %s" % ",".join(sorted(hosts)),
                  "  gather_facts: false", "  tasks:"]
        for i in range(n):
            lines += ["    - name: No-op %d" % i, "      ansible.builtin.ping:"]
    path = os.path.join(directory, "floor.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true", help="keep the running lab; skip the cold converge")
    ap.add_argument("--strategies", default="linear,mitogen",
                    help="comma-separated: linear (Ansible's own) and/or mitogen (mitogen_linear)")
    args = ap.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies or set(strategies) - {"linear", "mitogen"}:
        ap.error("--strategies takes linear and/or mitogen, got %r" % args.strategies)
    site = os.path.join(REPO, "site.yml")
    lab = os.path.join(REPO, "playbooks", "lab.yml")
    results = {"benchmark": "provision", "inventory": os.path.relpath(INVENTORY, REPO), "runs": args.runs,
               "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}

    if not args.skip_cold:
        subprocess.run(["ansible-playbook", "-i", INVENTORY, lab, "-e", "lab_state=absent"],
                       cwd=REPO, env=dict(env(), ANSIBLE_STDOUT_CALLBACK="default"), check=True,
                       capture_output=True)
        subprocess.run(["ansible-playbook", "-i", INVENTORY, lab], cwd=REPO,
                       env=dict(env(), ANSIBLE_STDOUT_CALLBACK="default"), check=True, capture_output=True)
        results["cold"] = summarise(*playbook(site, strategy=strategies[0]))
        results["cold"]["strategy"] = strategies[0]
        print("cold converge (%s): %.1f s, changed=%d" % (strategies[0], results["cold"]["wall_s"],
                                                           results["cold"]["changed"]))

    idem = {s: [] for s in strategies}
    floor = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        floor_path = None
        for i in range(args.runs):
            for strat in strategies:
                idem[strat].append(summarise(*playbook(site, strategy=strat)))
                if floor_path is None:
                    floor_path = floor_playbook(idem[strat][0]["tasks_per_host"], tmp)
                floor[strat].append(summarise(*playbook(floor_path, strategy=strat)))
                print("run %d %-8s: idempotent %.1f s (changed=%d), floor %.1f s"
                      % (i + 1, strat, idem[strat][-1]["wall_s"], idem[strat][-1]["changed"],
                         floor[strat][-1]["wall_s"]))
    by_strategy = {}
    for strat in strategies:
        med_idem = statistics.median(r["wall_s"] for r in idem[strat])
        med_floor = statistics.median(r["wall_s"] for r in floor[strat])
        hosts = idem[strat][0]["hosts"]
        row = {
            "idempotent": {"runs": idem[strat], "median_wall_s": med_idem,
                           "per_host_s": round(med_idem / hosts, 2),
                           "changed_max": max(r["changed"] for r in idem[strat])},
            "floor": {"runs": floor[strat], "median_wall_s": med_floor},
            "ratio_idempotent_to_floor": round(med_idem / med_floor, 2),
        }
        row["met"] = (row["idempotent"]["per_host_s"] <= 3.0 and row["idempotent"]["changed_max"] == 0
                      and row["ratio_idempotent_to_floor"] <= 1.5)
        by_strategy[strat] = row
        print("%-8s idempotent median %.1f s for %d hosts (%.2f s/host), changed max %d; floor median %.1f s; "
              "ratio %.2f" % (strat, med_idem, hosts, row["idempotent"]["per_host_s"],
                              row["idempotent"]["changed_max"], med_floor, row["ratio_idempotent_to_floor"]))
    results.update({"strategies": by_strategy, "targets": {"per_host_s_max": 3.0, "changed": 0, "ratio_max": 1.5}})
    if "linear" in by_strategy and "mitogen" in by_strategy:
        results["linear_to_mitogen_idempotent"] = round(
            by_strategy["linear"]["idempotent"]["median_wall_s"] / by_strategy["mitogen"]["idempotent"]["median_wall_s"], 2)
        print("idempotent run: linear takes %.2fx the time of mitogen_linear" % results["linear_to_mitogen_idempotent"])
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "provision.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
