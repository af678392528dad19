#!/usr/bin/env python3
"""Cost of the exporters: requests/s through the farm (HAProxy on lb1 -> a web
node) with every exporter running and Prometheus scraping them, and with the
exporters and Prometheus stopped, interleaved in one run (on -> off -> on ->
off), and the ratio; plus Prometheus' resident memory with the scenario's
targets.

Runs from the repo root against the RUNNING molecule scenario `monitoring`
(`molecule converge -s monitoring` first; it creates no containers). The load
runs inside monitoring-outsider (the client outside the farm, HTTPS to lb1 is
open to everyone) with bench/httpload.py: a fixed request count, concurrency
and time limit, only to the scenario's own containers. The scenario scrapes
every 2 s (its shortened interval), a harsher load than the 30 s default.
Results: bench/results/monitoring.json.

    python3 bench/monitoring.py [--requests 1200] [--concurrency 8] [--path /whoami]
"""
import argparse
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = "monitoring-outsider"
URL = "https://172.29.26.20"
PROM = "http://172.29.26.5:9090"
LOAD = open(os.path.join(HERE, "httpload.py")).read()
# host -> the exporter units it runs in the scenario
UNITS = {
    "monitoring-mon1": ["prometheus-node-exporter", "prometheus"],
    "monitoring-lb1": ["prometheus-node-exporter"],
    "monitoring-web1": ["prometheus-node-exporter", "prometheus-apache-exporter"],
    "monitoring-web2": ["prometheus-node-exporter", "prometheus-apache-exporter"],
    "monitoring-db1": ["prometheus-node-exporter", "prometheus-mysqld-exporter"],
    "monitoring-db2": ["prometheus-node-exporter", "prometheus-mysqld-exporter", "prometheus-redis-exporter"],
}


def load(url, requests, concurrency, limit=120):
    out = subprocess.run(["docker", "exec", CLIENT, "python3", "-c", LOAD, url, str(requests), str(concurrency),
                          str(limit)], capture_output=True, text=True, timeout=limit + 60, check=True).stdout
    return json.loads(out)


def exporters(action):
    for host, units in UNITS.items():
        subprocess.run(["docker", "exec", host, "systemctl", action] + units, check=True, timeout=60)


def prom(expr):
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(PROM + "/api/v1/query?" + q, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=1200)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--path", default="/whoami")
    p.add_argument("--out", default=os.path.join(HERE, "results", "monitoring.json"))
    args = p.parse_args()
    args.requests = min(args.requests, 20000)
    url = URL + args.path
    exporters("start")
    time.sleep(5)
    load(url, 50, 2)  # warm-up
    on, off = [], []
    try:
        for _ in range(2):
            on.append(load(url, args.requests // 2, args.concurrency))
            exporters("stop")
            time.sleep(2)
            off.append(load(url, args.requests // 2, args.concurrency))
            exporters("start")
            time.sleep(5)
    finally:
        exporters("start")
    time.sleep(10)
    targets = prom("count(up)")
    rss = prom('process_resident_memory_bytes{job="prometheus"}')
    series = prom("prometheus_tsdb_head_series")

    def merge(runs):
        ok = sum(r["ok"] for r in runs)
        secs = sum(r["seconds"] for r in runs)
        return {"runs": runs, "ok": ok, "errors": sum(r["errors"] for r in runs), "rps": round(ok / secs, 1),
                "p50_ms": max(r["p50_ms"] for r in runs), "p99_ms": max(r["p99_ms"] for r in runs)}

    a, b = merge(on), merge(off)
    result = {
        "benchmark": "monitoring",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": "2 shared cores, other engineers' scenarios running; load average %s" % (os.getloadavg(),),
        "path": args.path, "concurrency": args.concurrency, "scrape_interval": "2s (the scenario's)",
        "with_exporters": a, "without_exporters": b,
        "ratio_rps_with_vs_without": round(a["rps"] / b["rps"], 3) if b["rps"] else None,
        "prometheus_targets": int(float(targets[0]["value"][1])) if targets else None,
        "prometheus_rss_mib": round(float(rss[0]["value"][1]) / 2 ** 20, 1) if rss else None,
        "prometheus_head_series": int(float(series[0]["value"][1])) if series else None,
        "notes": "HTTPS to HAProxy on lb1 (native TLS) -> web1/web2, one connection per request; 'without' stops "
                 "every exporter and Prometheus on all hosts; all containers share the same 2 cores, so the "
                 "exporters' and Prometheus' CPU competes with the farm's directly.",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k not in ("with_exporters", "without_exporters")}, indent=2))
    print("with: %s rps p50 %s ms; without: %s rps p50 %s ms" % (a["rps"], a["p50_ms"], b["rps"], b["p50_ms"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
