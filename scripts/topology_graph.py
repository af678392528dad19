#!/usr/bin/env python3
"""Render an inventory's farm topology (tiers, hosts, routes, flows) with graphviz.

    .venv/bin/python scripts/topology_graph.py [-i INVENTORY] [-o docs/topology.svg]

The inventory is read with ansible-inventory (so group_vars apply), the model
is built by the same code as the colo.webfarm.topology filter, and every
firewall flow becomes an edge from its source tier to the host that accepts
it. The output format follows the file extension (.svg, .png, .dot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, ".collections"))

from ansible_collections.colo.webfarm.plugins.module_utils import topology as T  # noqa: E402

TIERS = [("edge", "edge (TLS)"), ("balancers", "balancers"), ("web", "web nodes"),
         ("db", "database"), ("nfs", "shared files"), ("cache", "cache")]


def load_inventory(path):
    out = subprocess.run(["ansible-inventory", "-i", path, "--list"],
                         check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    groups = {}

    def hosts_of(group, seen=()):
        node = data.get(group, {})
        hosts = list(node.get("hosts", []))
        for child in node.get("children", []):
            if child not in seen:
                hosts.extend(hosts_of(child, seen + (group,)))
        return hosts

    for g in T.GROUPS:
        groups[g] = sorted(set(hosts_of(g)))
    return groups, hostvars


def dot_source(topo):
    flows = T.firewall_flows(topo)
    by_cidr = {h["cidr"]: name for name, h in topo["hosts"].items()}
    lines = ['digraph webfarm {', '  rankdir=LR; node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=9]; internet [shape=ellipse, label="clients"];',
             '  admins [shape=ellipse, label="admin networks"];']
    for group, label in TIERS:
        names = topo["groups"][group]
        if not names:
            continue
        lines.append('  subgraph "cluster_%s" { label="%s";' % (group, label))
        for n in names:
            h = topo["hosts"][n]
            extra = []
            if "route" in h:
                extra.append("route %s, weight %d%s" % (h["route"], h["weight"], ", backup" if h["backup"] else ""))
            if "balancer" in h:
                extra.append(h["balancer"])
            if n in topo["groups"]["db_primary"]:
                extra.append("primary")
            elif n in topo["groups"]["db_replicas"]:
                extra.append("replica")
            label_n = "\\n".join([n, h["address"]] + extra)
            lines.append('    "%s" [label="%s"];' % (n, label_n))
        lines.append("  }")
    admin = set()
    for h in topo["hosts"].values():
        admin.update(h["admin_networks"])
    for dest, fl in flows.items():
        for f in fl:
            srcs = set()
            for cidr in f["sources"]:
                if cidr in T.ANYWHERE:
                    srcs.add("internet")
                elif cidr in by_cidr:
                    srcs.add(by_cidr[cidr])
                elif cidr in admin:
                    srcs.add("admins")
            for s in sorted(srcs):
                lines.append('  "%s" -> "%s" [label="%s %s/%d"%s];' % (
                    s, dest, f["name"], f["proto"], f["port"],
                    ', style=dashed, color=gray50' if s == "admins" else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-i", "--inventory", default=os.path.join(REPO, "inventories", "lab", "hosts.yml"))
    ap.add_argument("-o", "--output", default=os.path.join(REPO, "docs", "topology.svg"))
    args = ap.parse_args()
    groups, hostvars = load_inventory(args.inventory)
    try:
        topo = T.build_topology(groups, hostvars)
    except T.TopologyError as exc:
        sys.exit("inventory %s: %s" % (args.inventory, exc))
    src = dot_source(topo)
    fmt = os.path.splitext(args.output)[1].lstrip(".") or "svg"
    if fmt == "dot":
        with open(args.output, "w") as f:
            f.write(src)
    else:
        subprocess.run(["dot", "-T" + fmt, "-o", args.output], input=src, text=True, check=True)
    print(args.output)


if __name__ == "__main__":
    main()
