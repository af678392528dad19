#!/usr/bin/env python3
"""Benchmark the topology filters at 10, 1,000 and 10,000 web nodes.

Times building the topology (validation included) and computing members,
route ids, weights and firewall flows for farms of each size, median of
several runs, and checks route stability: adding one node to a 1,000-node
farm must change no other node's route.

    .venv/bin/python bench/filters.py [--runs N]

Writes bench/results/filters.json. Target: 10,000 nodes in under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, ".collections"))

from ansible_collections.colo.webfarm.plugins.module_utils import topology as T  # noqa: E402


def farm(n_web):
    groups = {"edge": ["edge1"], "balancers": ["lb1", "lb2"], "web_linux": [], "web": [],
              "db_primary": ["db1"], "db_replicas": ["db2"], "nfs": ["nfs1"]}
    hostvars = {"edge1": {"webfarm_address": "10.0.0.2"}, "lb1": {"webfarm_address": "10.0.0.3"},
                "lb2": {"webfarm_address": "10.0.0.4"}, "db1": {"webfarm_address": "10.0.0.21"},
                "db2": {"webfarm_address": "10.0.0.22"}, "nfs1": {"webfarm_address": "10.0.0.31"}}
    for i in range(n_web):
        name = "web%d" % (i + 1)
        groups["web_linux"].append(name)
        hostvars[name] = {"webfarm_address": "10.%d.%d.%d" % (1 + i // 65536, (i // 256) % 256, i % 256),
                          "webfarm_weight": 1 + i % 100}
    for hv in hostvars.values():
        hv["webfarm_admin_networks"] = ["192.0.2.0/24"]
    return groups, hostvars


def compute(groups, hostvars):
    topo = T.build_topology(groups, hostvars)
    members_h = T.members(topo, "haproxy")   # routes, cookie values, weights for HAProxy
    members_a = T.members(topo, "apache")    # ... and for Apache
    flows = T.firewall_flows(topo)
    return topo, members_h, members_a, flows


def time_it(n_web, runs):
    groups, hostvars = farm(n_web)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        compute(groups, hostvars)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {"web_nodes": n_web, "runs": runs, "median_ms": round(statistics.median(samples), 3),
            "min_ms": round(min(samples), 3), "max_ms": round(max(samples), 3)}


def stability(n_web=1000):
    groups, hostvars = farm(n_web)
    before = {m["name"]: m["route"] for m in T.members(T.build_topology(groups, hostvars))}
    groups["web_linux"].append("web-new")
    hostvars["web-new"] = {"webfarm_address": "10.200.0.1", "webfarm_admin_networks": ["192.0.2.0/24"]}
    after = {m["name"]: m["route"] for m in T.members(T.build_topology(groups, hostvars))}
    removed_groups, removed_hv = farm(n_web)
    removed_groups["web_linux"].remove("web500")
    less = {m["name"]: m["route"] for m in T.members(T.build_topology(removed_groups, removed_hv))}
    return {"web_nodes": n_web,
            "changed_routes_after_adding_one": sum(1 for k, v in before.items() if after[k] != v),
            "changed_routes_after_removing_one": sum(1 for k, v in less.items() if before[k] != v)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    results = {
        "benchmark": "filters",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "sizes": [time_it(n, args.runs if n < 10000 else max(3, args.runs // 2)) for n in (10, 1000, 10000)],
        "stability": stability(),
        "target": "10,000 web nodes under 100 ms; 0 changed routes",
    }
    big = results["sizes"][-1]["median_ms"]
    results["met"] = big < 100 and results["stability"]["changed_routes_after_adding_one"] == 0 \
        and results["stability"]["changed_routes_after_removing_one"] == 0
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "filters.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    for s in results["sizes"]:
        print("%6d web nodes: median %8.2f ms (min %.2f, max %.2f)" % (s["web_nodes"], s["median_ms"], s["min_ms"], s["max_ms"]))
    print("stability at 1,000 nodes: %(changed_routes_after_adding_one)d routes changed after adding one, "
          "%(changed_routes_after_removing_one)d after removing one" % results["stability"])
    print("target met" if results["met"] else "TARGET MISSED")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
