#!/usr/bin/env python3
"""Latency over time while the farm grows and shrinks (issue 18): renders the
timelines the `grow` scenario's tests keep in .cache/grow/ (any
`molecule verify -s grow` or `molecule test -s grow` run) into
bench/results/grow-add-node.png, grow-remove-node.png and
grow-inventory-removal.png, with per-phase request counts, failures and
latency percentiles in bench/results/grow-timelines.json.

    python3 bench/grow.py

Each plot shows four sticky users (one request every 0.1 s through HAProxy's
own TLS) and, as vertical lines, the start and end of each playbook run.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fullstack import REPO, RESULTS, plot_record  # noqa: E402

RECORDS = os.path.join(REPO, ".cache", "grow")
TITLES = {
    "grow_add_node": "Adding a web node (inventory + site.yml) under 4 sticky users",
    "grow_remove_node": "remove_node.yml, then site.yml without the node, under 4 sticky users",
    "grow_inventory_removal": "A web node taken out of the inventory, plain site.yml, under 4 sticky users",
}


def main():
    out = {}
    for name, title in TITLES.items():
        if os.path.exists(os.path.join(RECORDS, name + ".json")):
            out[name] = plot_record(name, title, records=RECORDS, prefix="grow")
            # grow-grow-add-node.png -> grow-add-node.png
            png = out[name]["png"].replace("grow-grow-", "grow-")
            os.replace(os.path.join(REPO, out[name]["png"]), os.path.join(REPO, png))
            out[name]["png"] = png
            print("%s: %s" % (name, out[name]["png"]))
            for row in out[name]["phases"]:
                print("  %(phase)-60s %(requests)5d requests, %(failed)d failed, p50 %(p50_ms)s ms, "
                      "p99 %(p99_ms)s ms, max %(max_ms)s ms" % row)
    if not out:
        print("no timelines in %s: run `molecule verify -s grow` first" % RECORDS)
        return 1
    with open(os.path.join(RESULTS, "grow-timelines.json"), "w") as f:
        json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
