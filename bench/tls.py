#!/usr/bin/env python3
"""TLS benchmark: stunnel -> HAProxy versus HAProxy's native TLS.

Both paths share the certificate (made by colo.webfarm.tls_cert), the
Mozilla intermediate profile and the backend:

  stunnel path : client -> stunnel-edge1:443 (stunnel, TLS) -> PROXY v1 ->
                 HAProxy stand-ins :80 (accept-proxy) -> echo backend
  native path  : client -> stunnel-lb1:443 (HAProxy ssl crt webfarm.pem) ->
                 echo backend

It uses the containers of the molecule scenario `stunnel` (172.29.19.0/24):
if they are not running it creates and converges them (`molecule converge -s
stunnel`) and destroys them afterwards (unless --keep). Every load runs from
the scenario's own client container against the scenario's own containers,
bounded by a request count and a timeout. One run per figure, as the issue
asks; the numbers depend on the machine's load (recorded in the result).

Figures (from stunnel-client, TLS 1.3, ECDSA P-256 certificate):
  handshakes_per_s   openssl s_time -new: full handshakes per real second,
                     one connection at a time
  requests_per_s_keepalive   ab -k -c C -n N: HTTPS requests per second over
                     C keep-alive connections
  requests_per_s_new_conn    ab -c C -n N (no keep-alive): a handshake per request

Usage: bench/tls.py [--seconds 10] [--requests 3000] [--concurrency 8] [--keep]
Writes bench/results/tls.json.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = "stunnel-client"
EDGE = "172.29.19.10"
NATIVE = "172.29.19.20"
CONTAINERS = ["stunnel-edge1", "stunnel-lb1", "stunnel-lb2", "stunnel-web1", CLIENT]


def sh(cmd, timeout=900, check=True):
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and run.returncode != 0:
        raise SystemExit("command failed (%d): %s\n%s\n%s" % (run.returncode, cmd, run.stdout[-2000:],
                                                             run.stderr[-2000:]))
    return run


def in_client(cmd, timeout):
    return sh("docker exec %s sh -c %s" % (CLIENT, json.dumps(cmd)), timeout=timeout + 30)


def running():
    out = sh("docker ps --format '{{.Names}}'").stdout.split()
    return all(c in out for c in CONTAINERS)


def molecule(action):
    sh(". scripts/env.sh && molecule %s -s stunnel > /tmp/bench-tls-molecule-%s.log 2>&1" % (action, action),
       timeout=3600)


def handshakes(target, seconds):
    # wall clock around s_time: its own "real seconds" is rounded to whole seconds
    out = in_client("date +%%s.%%N; timeout %d openssl s_time -connect %s -new -time %d 2>&1; date +%%s.%%N"
                    % (seconds + 20, target, seconds), seconds).stdout
    lines = out.strip().splitlines()
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not m:
        raise SystemExit("s_time gave no figure for %s:\n%s" % (target, out[-1500:]))
    wall = float(lines[-1]) - float(lines[0])
    return {"connections": int(m.group(1)), "wall_seconds": round(wall, 3),
            "handshakes_per_s": round(int(m.group(1)) / wall, 1)}


def ab(url, n, c, keepalive):
    cmd = "timeout 300 ab -q %s -n %d -c %d %s 2>&1" % ("-k" if keepalive else "", n, c, url)
    out = in_client(cmd, 300).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if not rps:
        raise SystemExit("ab gave no figure for %s:\n%s" % (url, out[-1500:]))
    return {"requests": n, "concurrency": c, "requests_per_s": float(rps.group(1)),
            "failed": int(failed.group(1)) if failed else None}


def measure(target, args):
    url = "https://%s/bench" % target
    # warm up (bounded): the first connections pay for caches and lazy setup
    ab(url, 100, 2, True)
    hs = handshakes("%s:443" % target, args.seconds)
    keep = ab(url, args.requests, args.concurrency, True)
    new = ab(url, max(100, args.requests // 3), args.concurrency, False)
    return {"handshakes_per_s": hs["handshakes_per_s"], "handshakes": hs,
            "requests_per_s_keepalive": keep["requests_per_s"], "keepalive": keep,
            "requests_per_s_new_conn": new["requests_per_s"], "new_conn": new}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=10, help="seconds of s_time per path (max 60)")
    p.add_argument("--requests", type=int, default=3000, help="ab requests per keep-alive run (max 20000)")
    p.add_argument("--concurrency", type=int, default=8, help="ab concurrency (max 32)")
    p.add_argument("--keep", action="store_true", help="keep the containers it created")
    p.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "tls.json"))
    args = p.parse_args()
    args.seconds = max(1, min(args.seconds, 60))
    args.requests = max(100, min(args.requests, 20000))
    args.concurrency = max(1, min(args.concurrency, 32))

    created = False
    if not running():
        molecule("converge")
        created = True
    try:
        load_before = os.getloadavg()
        stunnel = measure(EDGE, args)
        native = measure(NATIVE, args)
        load_after = os.getloadavg()
        proto = in_client("openssl s_client -connect %s:443 </dev/null 2>&1 | grep -E 'Protocol|Cipher is' | head -2"
                          % EDGE, 30).stdout.split("\n")
    finally:
        if created and not args.keep:
            molecule("destroy")

    def ratio(key):
        return round(native[key] / stunnel[key], 2) if stunnel[key] else None

    result = {
        "benchmark": "tls",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": 1,
        "setup": {
            "scenario": "molecule/stunnel (172.29.19.0/24), containers on one host",
            "stunnel_path": "client -> stunnel 5.68 (edge1:443) -> PROXY v1 -> HAProxy 2.6 :80 accept-proxy (lb1/lb2 rr) "
                            "-> python echo backend",
            "native_path": "client -> HAProxy 2.6 (lb1:443 ssl crt webfarm.pem) -> python echo backend",
            "certificate": "same /etc/ssl/webfarm material (ECDSA P-256, lab CA), Mozilla intermediate on both",
            "negotiated": [x.strip() for x in proto if x.strip()],
            "tools": "openssl s_time -new (sequential full handshakes), ApacheBench (ab) -k / without -k",
            "params": {"seconds": args.seconds, "requests": args.requests, "concurrency": args.concurrency},
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "stunnel_haproxy": stunnel,
        "haproxy_native": native,
        "ratio_native_over_stunnel": {k: ratio(k) for k in
                                      ("handshakes_per_s", "requests_per_s_keepalive", "requests_per_s_new_conn")},
        "lab_default": "stunnel (webfarm_tls_terminator default): the first design document's layout, the balancers "
                       "stay off the public network and take only PROXY-protocol HTTP from the edge; native TLS "
                       "(webfarm_tls_terminator: haproxy) saves a hop and offers HTTP/2 (ALPN) and is the choice "
                       "when the figures above matter more than the separate edge tier.",
    }
    if load_before[0] > 2 * (os.cpu_count() or 1):
        result["caveat"] = ("the host was overloaded (1-minute load %.1f on %d CPUs, shared with other test runs): "
                            "absolute figures are far below what these daemons do on an idle machine; only the "
                            "ratios carry over, and they are noisy (one run)" % (load_before[0], os.cpu_count()))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps({"stunnel_haproxy": {k: stunnel[k] for k in ("handshakes_per_s", "requests_per_s_keepalive",
                                                                  "requests_per_s_new_conn")},
                      "haproxy_native": {k: native[k] for k in ("handshakes_per_s", "requests_per_s_keepalive",
                                                                "requests_per_s_new_conn")},
                      "ratio_native_over_stunnel": result["ratio_native_over_stunnel"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
