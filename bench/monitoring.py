#!/usr/bin/env python3
"""Cost of the monitoring: requests/s through the farm with the exporters
running and scraped vs with them stopped (ratio), and Prometheus' memory
with the scenario's targets.

It needs the molecule scenario `monitoring` converged (mon1, lb1 with
HAProxy terminating TLS, web1 and web2, db1 and db2, nfs1, the outsider):

    molecule converge -s monitoring
    python3 bench/monitoring.py [--rounds 3] [--requests 3000] [--concurrency 8] [--seconds 20]

Each round measures both states back to back, in alternating order:
  on   every exporter, the web node state timers and Prometheus running
       (the scenario scrapes every 2 s, 15 times the default rate)
  off  the same stopped (node, apache, mysqld, redis exporters; the
       web-state timer; Prometheus, Alertmanager and the blackbox exporter)
The load is bench/httpload.py inside the outsider container: HTTPS GETs of
the health path through lb1 (TLS at HAProxy, then a web node's Apache and
PHP-FPM), one connection per request, bounded in count and time. Everything
stopped is started again at the end. Results: bench/results/monitoring.json.

With --lab it measures only Prometheus' memory, in the lab (`make lab`: its
monitoring host mon1 scrapes the lab's 11 hosts at the default 30 s interval),
once Prometheus has run --min-uptime seconds (it waits, bounded):

    python3 bench/monitoring.py --lab [--min-uptime 600]

Results: bench/results/monitoring-lab.json.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://172.29.26.20/health"
CLIENT = "monitoring-outsider"
MON = "monitoring-mon1"
PROM = "http://172.29.26.5:9090"
LAB_MON = "lab-mon1"
LAB_PROM = "http://172.29.10.5:9090"
# container -> units stopped for "off" (started again afterwards)
UNITS = {
    "monitoring-mon1": ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter",
                        "prometheus-node-exporter"],
    "monitoring-lb1": ["prometheus-node-exporter"],
    "monitoring-web1": ["prometheus-node-exporter", "prometheus-apache-exporter", "webfarm-web-state.timer"],
    "monitoring-web2": ["prometheus-node-exporter", "prometheus-apache-exporter", "webfarm-web-state.timer"],
    "monitoring-db1": ["prometheus-node-exporter", "prometheus-mysqld-exporter"],
    "monitoring-db2": ["prometheus-node-exporter", "prometheus-mysqld-exporter", "prometheus-redis-exporter"],
}


def docker(*args, timeout=120, check=True):
    res = subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise SystemExit("docker %s: %s" % (" ".join(args), res.stdout + res.stderr))
    return res


def systemctl(action):
    for name, units in UNITS.items():
        docker("exec", name, "systemctl", action, *units)


def load(requests, concurrency, seconds):
    """bench/httpload.py inside the outsider container (its code on stdin)."""
    with open(os.path.join(HERE, "httpload.py")) as f:
        code = f.read()
    res = subprocess.run(["docker", "exec", "-i", CLIENT, "python3", "-", URL, str(requests), str(concurrency),
                          str(seconds)], input=code, capture_output=True, text=True, timeout=seconds + 60)
    if res.returncode != 0:
        raise SystemExit("httpload: " + res.stdout + res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def prom_results(expr, prom=PROM):
    """An instant query's result list from Prometheus' API (this host is in the farm's admin network)."""
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())["data"]["result"]


def prom_query(expr, prom=PROM):
    """One value from Prometheus' API."""
    out = prom_results(expr, prom)
    return float(out[0]["value"][1]) if out else None


def write_result(name, result):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", name), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def prometheus_memory(container=MON, prom=PROM):
    pid = docker("exec", container, "systemctl", "show", "-p", "MainPID", "--value", "prometheus").stdout.strip()
    rss_kb = None
    status = docker("exec", container, "cat", "/proc/%s/status" % pid, check=False).stdout
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])

    def mib(expr):
        return round((prom_query(expr, prom) or 0) / 2 ** 20, 1)
    return {
        "rss_mib": round(rss_kb / 1024, 1) if rss_kb else None,
        "process_resident_memory_mib": mib('process_resident_memory_bytes{job="prometheus"}'),
        "go_heap_inuse_mib": mib('go_memstats_heap_inuse_bytes{job="prometheus"}'),
        "prometheus_up_s": round(prom_query('time() - process_start_time_seconds{job="prometheus"}', prom) or 0),
        "targets": prom_query("count(up)", prom),
        "targets_up": prom_query("sum(up)", prom),
        "head_series": prom_query("prometheus_tsdb_head_series", prom),
        "samples_per_second": prom_query("rate(prometheus_tsdb_head_samples_appended_total[2m])", prom),
    }


def lab(min_uptime):
    """Prometheus' memory in the lab, after it has run min_uptime seconds."""
    deadline = time.time() + min_uptime + 60
    while True:
        up = prom_query('time() - process_start_time_seconds{job="prometheus"}', LAB_PROM)
        if up is not None and up >= min_uptime:
            break
        if time.time() > deadline:
            raise SystemExit("Prometheus in %s has not run %d s (up %s s)" % (LAB_MON, min_uptime, up))
        time.sleep(min(30, max(1, min_uptime - (up or 0))))
    jobs = {x["metric"]["job"]: int(float(x["value"][1])) for x in prom_results("count by (job) (up)", LAB_PROM)}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
                    "python": platform.python_version()},
        "farm": "the lab (inventories/lab: 2 edges, 2 balancers, 3 web nodes, primary + replica, NFS, mon1), "
                "the role's default scrape and evaluation intervals",
        "targets_by_job": jobs,
        "prometheus_memory": prometheus_memory(LAB_MON, LAB_PROM),
    }
    write_result("monitoring-lab.json", result)
    print(json.dumps(result, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=20, help="seconds after starting or stopping, before the load")
    ap.add_argument("--lab", action="store_true", help="only Prometheus' memory, in the lab")
    ap.add_argument("--min-uptime", type=int, default=600, help="with --lab: seconds Prometheus has run first")
    args = ap.parse_args()
    if args.lab:
        return lab(args.min_uptime)

    # Prometheus' memory after it has run with every target for a while
    memory = prometheus_memory()
    runs = {"on": [], "off": []}
    try:
        for i in range(args.rounds):
            order = ["on", "off"] if i % 2 == 0 else ["off", "on"]
            for state in order:
                systemctl("start" if state == "on" else "stop")
                # let Prometheus' start (WAL replay) and the first scrapes pass
                time.sleep(args.settle)
                r = load(args.requests, args.concurrency, args.seconds)
                r["round"] = i
                runs[state].append(r)
                print(state, json.dumps(r), flush=True)
    finally:
        systemctl("start")
    med = {s: statistics.median(x["rps"] for x in runs[s]) for s in runs}
    p50 = {s: statistics.median(x["p50_ms"] for x in runs[s]) for s in runs}
    errors = {s: sum(x["errors"] for x in runs[s]) for s in runs}
    load_avg = os.getloadavg()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 1) for x in load_avg],
                    "python": platform.python_version(),
                    "other_containers": len([n for n in docker("ps", "--format", "{{.Names}}").stdout.split()
                                              if not n.startswith("monitoring-")])},
        "scenario": "monitoring (7 farm hosts + outsider), scrape and evaluation every 2 s",
        "load": {"url": URL, "from": CLIENT, "requests": args.requests, "concurrency": args.concurrency,
                 "seconds_limit": args.seconds, "rounds": args.rounds, "settle_s": args.settle},
        "runs": runs,
        "median_rps": med,
        "median_p50_ms": p50,
        "errors": errors,
        "rps_ratio_on_vs_off": round(med["on"] / med["off"], 3),
        "p50_ratio_on_vs_off": round(p50["on"] / p50["off"], 3),
        "prometheus_memory": memory,
    }
    write_result("monitoring.json", result)
    print(json.dumps({k: result[k] for k in ("median_rps", "rps_ratio_on_vs_off", "prometheus_memory")}, indent=2))


if __name__ == "__main__":
    main()
