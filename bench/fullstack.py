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
"""
import argparse
import json
import os
import re
import subprocess
import time

HOST = "default-lb1"
EDGE = "https://172.29.30.10"
DIRECT = "http://172.29.30.31"

# Runs inside the load host: bounded concurrent GETs, one connection each.
LOAD = r'''
import json, ssl, sys, threading, time, http.client
from urllib.parse import urlparse
url, total, conc, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
u = urlparse(url)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
lat, errors, lock = [], [0], threading.Lock()
left = [total]
deadline = time.time() + limit
def worker():
    while True:
        with lock:
            if left[0] <= 0 or time.time() > deadline:
                return
            left[0] -= 1
        t = time.perf_counter()
        try:
            if u.scheme == "https":
                c = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=5, context=ctx)
            else:
                c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
            c.request("GET", u.path or "/", headers={"Connection": "close"})
            r = c.getresponse(); r.read(); c.close()
            ok = r.status == 200
        except Exception:
            ok = False
        ms = (time.perf_counter() - t) * 1000
        with lock:
            if ok: lat.append(ms)
            else: errors[0] += 1
start = time.time()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]; [t.join() for t in ts]
secs = time.time() - start
lat.sort()
q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None
print(json.dumps({"url": url, "ok": len(lat), "errors": errors[0], "seconds": round(secs, 3),
                  "rps": round(len(lat) / secs, 1) if secs else None, "p50_ms": q(0.5), "p99_ms": q(0.99)}))
'''


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--path", default="/whoami")
    p.add_argument("--verify-log")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fullstack.json"))
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
