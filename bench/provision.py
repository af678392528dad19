#!/usr/bin/env python3
"""Provisioning speed of site.yml on the container lab.

Measures, side by side in one run:
  1. cold converge: site.yml on freshly created lab containers;
  2. idempotent re-run: site.yml again (must report changed=0);
  3. floor: a generated playbook with, for every host, as many no-op module
     calls (ansible.builtin.ping) as tasks run 2 actually executed there, with
     the same inventory, connection, forks and ansible.cfg.
2 and 3 run --runs times, interleaved (2,3,2,3,...); medians are reported,
with the per-host time of 2 and the ratio 2/3.

    .venv/bin/python bench/provision.py [--runs 3] [--skip-cold]

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


def env():
    e = dict(os.environ)
    e.update({
        "PATH": os.path.join(REPO, ".venv", "bin") + os.pathsep + e.get("PATH", ""),
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    })
    return e


def playbook(path, *extra):
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, path, *extra], cwd=REPO, env=env(),
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
    args = ap.parse_args()
    site = os.path.join(REPO, "site.yml")
    lab = os.path.join(REPO, "playbooks", "lab.yml")
    results = {"benchmark": "provision", "inventory": os.path.relpath(INVENTORY, REPO), "runs": args.runs}

    if not args.skip_cold:
        subprocess.run(["ansible-playbook", "-i", INVENTORY, lab, "-e", "lab_state=absent"],
                       cwd=REPO, env=dict(env(), ANSIBLE_STDOUT_CALLBACK="default"), check=True,
                       capture_output=True)
        subprocess.run(["ansible-playbook", "-i", INVENTORY, lab], cwd=REPO,
                       env=dict(env(), ANSIBLE_STDOUT_CALLBACK="default"), check=True, capture_output=True)
        results["cold"] = summarise(*playbook(site))
        print("cold converge: %(wall_s).1f s, changed=%(changed)d" % results["cold"])

    idem, floor = [], []
    with tempfile.TemporaryDirectory() as tmp:
        floor_path = None
        for i in range(args.runs):
            idem.append(summarise(*playbook(site)))
            if floor_path is None:
                floor_path = floor_playbook(idem[0]["tasks_per_host"], tmp)
            floor.append(summarise(*playbook(floor_path)))
            print("run %d: idempotent %.1f s (changed=%d), floor %.1f s"
                  % (i + 1, idem[-1]["wall_s"], idem[-1]["changed"], floor[-1]["wall_s"]))
    med_idem = statistics.median(r["wall_s"] for r in idem)
    med_floor = statistics.median(r["wall_s"] for r in floor)
    hosts = idem[0]["hosts"]
    results.update({
        "idempotent": {"runs": idem, "median_wall_s": med_idem,
                       "per_host_s": round(med_idem / hosts, 2),
                       "changed_max": max(r["changed"] for r in idem)},
        "floor": {"runs": floor, "median_wall_s": med_floor},
        "ratio_idempotent_to_floor": round(med_idem / med_floor, 2),
        "targets": {"per_host_s_max": 3.0, "changed": 0, "ratio_max": 1.5},
    })
    results["met"] = (results["idempotent"]["per_host_s"] <= 3.0 and results["idempotent"]["changed_max"] == 0
                      and results["ratio_idempotent_to_floor"] <= 1.5)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "provision.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print("idempotent median %.1f s for %d hosts (%.2f s/host), changed max %d; floor median %.1f s; ratio %.2f"
          % (med_idem, hosts, results["idempotent"]["per_host_s"], results["idempotent"]["changed_max"],
             med_floor, results["ratio_idempotent_to_floor"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
