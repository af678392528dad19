#!/usr/bin/env python3
"""Web tier benchmark: requests/s and p99 latency of /whoami and /session on
one web node, for the database and the redis session stores.

It needs two converged web nodes of this project, identical but for the
session store, e.g. the molecule scenarios `web_linux` (database store,
web1 at 172.29.14.31) and `redis_sessions` (redis store, web1 at 172.29.22.31):

    molecule converge -s web_linux; molecule converge -s redis_sessions
    python3 bench/web.py --database http://172.29.14.31 --redis http://172.29.22.31

Load is bounded: every measurement stops after --requests requests or
--seconds seconds, whichever comes first, with --concurrency keep-alive
connections. Only the given addresses are contacted; they must be private
(the project's containers) unless --allow-public is given.
Results: bench/results/web.json (--out).
"""

import argparse
import datetime
import http.client
import ipaddress
import json
import os
import platform
import statistics
import threading
import time
import urllib.parse

PATHS = ["/whoami", "/session"]


def percentile(values, pct):
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(pct / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def worker(base, path, quota, deadline, out, lock):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    cookie = None
    lat, errors, counts = [], 0, []
    while quota > 0 and time.monotonic() < deadline:
        quota -= 1
        headers = {"Cookie": cookie} if cookie else {}
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            dt = time.perf_counter() - t0
            if resp.status != 200:
                errors += 1
                continue
            lat.append(dt)
            sc = resp.getheader("Set-Cookie")
            if sc:
                cookie = sc.split(";", 1)[0]
            if path == "/session":
                counts.append(json.loads(body)["count"])
        except (OSError, http.client.HTTPException, ValueError):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    conn.close()
    with lock:
        out["latencies"].extend(lat)
        out["errors"] += errors
        # one session per connection: its counter must have counted every request
        if counts and counts != list(range(1, len(counts) + 1)):
            out["session_errors"] += 1


def measure(base, path, requests, seconds, concurrency):
    out = {"latencies": [], "errors": 0, "session_errors": 0}
    lock = threading.Lock()
    per = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    t0 = time.monotonic()
    deadline = t0 + seconds
    threads = [threading.Thread(target=worker, args=(base, path, q, deadline, out, lock)) for q in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat = out["latencies"]
    return {
        "requests_ok": len(lat),
        "errors": out["errors"],
        "sessions_that_lost_counts": out["session_errors"],
        "seconds": round(wall, 3),
        "requests_per_second": round(len(lat) / wall, 1) if wall > 0 else None,
        "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
    }


def check_target(base, allow_public):
    u = urllib.parse.urlsplit(base)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit("%s: expected http://ADDRESS[:PORT]" % base)
    ip = ipaddress.ip_address(u.hostname)
    if not (ip.is_private or ip.is_loopback) and not allow_public:
        raise SystemExit("%s is not a private address; the benchmark only loads the project's containers" % base)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database", required=True, help="base URL of a web node with the database session store")
    p.add_argument("--redis", required=True, help="base URL of a web node with the redis session store")
    p.add_argument("--requests", type=int, default=2000, help="requests per measurement (bound)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per measurement (bound)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=100, help="requests before each measurement")
    p.add_argument("--allow-public", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "web.json"))
    a = p.parse_args()
    for base in (a.database, a.redis):
        check_target(base, a.allow_public)

    results = {}
    for store, base in (("database", a.database), ("redis", a.redis)):
        results[store] = {}
        for path in PATHS:
            measure(base, path, a.warmup, a.seconds, min(a.concurrency, a.warmup) or 1)
            results[store][path] = measure(base, path, a.requests, a.seconds, a.concurrency)
            print(store, path, json.dumps(results[store][path]), flush=True)

    def ratio(x, y):
        return round(x / y, 3) if x and y else None

    report = {
        "benchmark": "bench/web.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
        "params": {"database": a.database, "redis": a.redis, "requests": a.requests, "seconds": a.seconds,
                   "concurrency": a.concurrency, "warmup": a.warmup},
        "results": results,
        "ratios": {
            "session_rps_redis_over_database": ratio(results["redis"]["/session"]["requests_per_second"],
                                                     results["database"]["/session"]["requests_per_second"]),
            "session_p99_database_over_redis": ratio(results["database"]["/session"]["p99_ms"],
                                                     results["redis"]["/session"]["p99_ms"]),
            "whoami_rps_redis_node_over_database_node": ratio(results["redis"]["/whoami"]["requests_per_second"],
                                                             results["database"]["/whoami"]["requests_per_second"]),
            "session_rps_over_whoami_rps_database": ratio(results["database"]["/session"]["requests_per_second"],
                                                          results["database"]["/whoami"]["requests_per_second"]),
            "session_rps_over_whoami_rps_redis": ratio(results["redis"]["/session"]["requests_per_second"],
                                                       results["redis"]["/whoami"]["requests_per_second"]),
        },
        "note": "one run, on a shared 2-core machine with other engineers' containers running: "
                "compare the ratios, not the absolute numbers",
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report["ratios"], indent=2))


if __name__ == "__main__":
    main()
