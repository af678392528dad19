#!/usr/bin/env python3
"""Full-stack data plane: requests/s and latency p50/p99 through the whole
chain (stunnel on edge1 -> HAProxy on lb1 -> a web node) versus directly to
one web node, side by side in one run, and the ratio.

Runs from the repo root against the RUNNING molecule scenario `default`
(`molecule converge -s default` first; it creates no containers). The load
runs inside default-lb1, the one host the firewall lets reach both the edge
(443, open to all) and a web node (80, balancers only): a bounded Python
client (fixed request count, concurrency and time limit, one connection per
request, like a browser without keep-alive) that only talks to the
scenario's own containers. Results: bench/results/fullstack.json.

    python3 bench/fullstack.py [--requests 1500] [--concurrency 8] [--path /whoami]

The failover and rolling-update figures (failed requests, detection time)
come from the scenario's tests 6 and 7, which print them
(`molecule verify -s default`); pass that output with --verify-log to record
them in the same JSON.

    python3 bench/fullstack.py --plots-only

renders the latency-over-time plots (PNG, matplotlib) from the timelines tests
6 and 7 keep in .cache/fullstack/ (any `molecule verify -s default` or
`molecule test -s default` run): bench/results/fullstack-rolling-update.png
and bench/results/fullstack-node-stop.png, with per-phase latency figures in
bench/results/fullstack-timelines.json. A plain run renders them too when the
timelines are there.
"""
import argparse
import json
import os
import re
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RECORDS = os.path.join(REPO, ".cache", "fullstack")
RESULTS = os.path.join(REPO, "bench", "results")
HOST = "default-lb1"
EDGE = "https://172.29.30.10"
DIRECT = "http://172.29.30.31"

# Runs inside the load host: bench/httpload.py (bounded GETs).
LOAD = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "httpload.py")).read()


def load(url, requests, concurrency, limit=120):
    out = subprocess.run(["docker", "exec", HOST, "python3", "-c", LOAD, url, str(requests), str(concurrency), str(limit)],
                         capture_output=True, text=True, timeout=limit + 60, check=True).stdout
    return json.loads(out)


def verify_figures(path):
    """The figures tests 6 and 7 print (see molecule/default/tests/test_default.py)."""
    text = open(path).read()
    figures = {}
    m = re.search(r"rolling update: ([\d.]+) s, (\d+) requests from 3 users, (\d+) failed", text)
    if m:
        figures["rolling_update"] = {"seconds": float(m.group(1)), "requests": int(m.group(2)), "failed": int(m.group(3))}
    m = re.search(r"node stop under load: (\d+) requests, (\d+) failed; DOWN after ([\d.]+) s .*?"
                  r"last answer from the node ([-\d.]+) s after the stop", text)
    if m:
        figures["node_stop"] = {"requests": int(m.group(1)), "failed": int(m.group(2)),
                                "detection_s": float(m.group(3)), "last_answer_after_stop_s": float(m.group(4))}
    return figures


def pct(values, p):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], 1) if values else None


def plot_record(name, title, records=RECORDS, prefix="fullstack"):
    """One PNG (bench/results/<prefix>-<name>.png): every request's latency
    over time (per probe, failures marked), the events as vertical lines;
    returns per-phase figures. bench/grow.py renders its timelines with it."""
    import matplotlib  # noqa: PLC0415 (only for the plots)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with open(os.path.join(records, name + ".json")) as f:
        rec = json.load(f)
    t0 = min(r["t"] for tl in rec["timelines"] for r in tl)
    events = sorted(rec["events"].items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for i, tl in enumerate(rec["timelines"]):
        ok = [r for r in tl if r["status"] == 200]
        bad = [r for r in tl if r["status"] != 200]
        ax.plot([r["t"] - t0 for r in ok], [r["ms"] for r in ok], ".", ms=2.5, label="client %d (200)" % (i + 1))
        if bad:
            ax.plot([r["t"] - t0 for r in bad], [r["ms"] or 0 for r in bad], "rx", ms=6, label="failed")
    for label, t in events:
        ax.axvline(t - t0, color="k", ls="--", lw=1)
        ax.annotate(label, (t - t0, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    png = os.path.join(RESULTS, "%s-%s.png" % (prefix, name.replace("_", "-")))
    fig.savefig(png)
    plt.close(fig)
    # figures per phase: before the first event, between events, after the last
    bounds = [float("-inf")] + [t for _, t in events] + [float("inf")]
    names = ["before " + events[0][0]] + ["%s .. %s" % (a[0], b[0]) for a, b in zip(events, events[1:])] + \
        ["after " + events[-1][0]]
    rows = []
    for label, lo, hi in zip(names, bounds, bounds[1:]):
        rs = [r for tl in rec["timelines"] for r in tl if lo <= r["t"] < hi]
        lat = [r["ms"] for r in rs if r["status"] == 200 and r["ms"] is not None]
        rows.append({"phase": label, "requests": len(rs), "failed": sum(1 for r in rs if r["status"] != 200),
                     "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1.0)})
    return {"png": os.path.relpath(png, REPO), "phases": rows}


def plots():
    titles = {"rolling_update": "Rolling update of 3 web nodes under 3 sticky users (edge -> HAProxy -> web)",
              "node_stop": "A web node stopped under load (3 clients, GET /whoami through the edge)"}
    out = {}
    for name, title in titles.items():
        if os.path.exists(os.path.join(RECORDS, name + ".json")):
            out[name] = plot_record(name, title)
            print("%s: %s" % (name, out[name]["png"]))
            for row in out[name]["phases"]:
                print("  %(phase)-40s %(requests)5d requests, %(failed)d failed, p50 %(p50_ms)s ms, "
                      "p99 %(p99_ms)s ms, max %(max_ms)s ms" % row)
    if out:
        with open(os.path.join(RESULTS, "fullstack-timelines.json"), "w") as f:
            json.dump(out, f, indent=2)
    else:
        print("no timelines in %s: run `molecule verify -s default` first" % RECORDS)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--plots-only", action="store_true", help="only render the plots from .cache/fullstack/")
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--path", default="/whoami")
    p.add_argument("--verify-log")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fullstack.json"))
    args = p.parse_args()
    if args.plots_only:
        return 0 if plots() else 1
    args.requests = min(args.requests, 20000)

    # warm both paths (opcache, TLS session setup), then measure interleaved
    load(EDGE + args.path, 50, 2)
    load(DIRECT + args.path, 50, 2)
    chain, direct = [], []
    for _ in range(2):
        chain.append(load(EDGE + args.path, args.requests // 2, args.concurrency))
        direct.append(load(DIRECT + args.path, args.requests // 2, args.concurrency))

    def merge(runs):
        ok = sum(r["ok"] for r in runs)
        secs = sum(r["seconds"] for r in runs)
        return {"runs": runs, "ok": ok, "errors": sum(r["errors"] for r in runs),
                "rps": round(ok / secs, 1), "p50_ms": max(r["p50_ms"] for r in runs),
                "p99_ms": max(r["p99_ms"] for r in runs)}

    c, d = merge(chain), merge(direct)
    result = {
        "benchmark": "fullstack",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": "2 shared cores; load from default-lb1; other engineers' scenarios running: %s"
                      % (os.getloadavg(),),
        "path": args.path, "concurrency": args.concurrency,
        "chain_edge_balancer_web": c, "direct_one_web_node": d,
        "ratio_rps_chain_vs_direct": round(c["rps"] / d["rps"], 2) if d["rps"] else None,
        "ratio_p50_chain_vs_direct": round(c["p50_ms"] / d["p50_ms"], 2) if d["p50_ms"] else None,
        "notes": "chain = TLS handshake at stunnel + PROXY v1 to HAProxy + HTTP to a node (3 nodes behind it); "
                 "direct = plain HTTP to web1. One connection per request on both paths.",
    }
    if args.verify_log:
        result.update(verify_figures(args.verify_log))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k not in ("chain_edge_balancer_web", "direct_one_web_node")}, indent=2))
    print("chain: %s rps p50 %s ms p99 %s ms; direct: %s rps p50 %s ms p99 %s ms"
          % (c["rps"], c["p50_ms"], c["p99_ms"], d["rps"], d["p50_ms"], d["p99_ms"]))
    plots()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
