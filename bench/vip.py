#!/usr/bin/env python3
"""Failover benchmark for the keepalived virtual address: time until the
address moves, time until the client is served again, and failed requests,
over N repeated failovers (p50/max).

It needs the molecule scenario `keepalived` converged (two HAProxy balancers
sharing 172.29.21.100, two web stand-ins):

    molecule converge -s keepalived
    python3 bench/vip.py                       # 10 failovers per failure kind
    python3 bench/vip.py --failures service --rounds 5

Failure kinds (each round fails whichever balancer holds the address):
  service  HAProxy killed on the holder (masked so systemd cannot restart it);
           restored after the round
  stop     `docker stop` of the holder (clean shutdown); started again after
  crash    `docker kill` of the holder (no shutdown: 3 missed adverts);
           timed from the container's death (State.FinishedAt)

Traffic goes only to the scenario's own containers (the address must lie in
172.29.21.0/24): one request every --interval ms with a sticky cookie from
this host, each round bounded to --seconds. Results: bench/results/vip.json.
"""

import argparse
import datetime
import http.client
import ipaddress
import json
import os
import platform
import statistics
import subprocess
import threading
import time

LBS = ["keepalived-lb1", "keepalived-lb2"]
SUBNET = ipaddress.ip_network("172.29.21.0/24")
# the journal survives a container restart: only lines after the last start count
STATE_CMD = ("journalctl -u keepalived --no-pager -o cat | awk '/Starting Keepalived/ {s=\"\"} "
             "match($0, /Entering [A-Z]+ STATE/) {s=substr($0, RSTART+9, RLENGTH-15)} END {print s}'")


def docker(*args, timeout=60):
    return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout)


def holds(name, vip):
    res = docker("exec", name, "ip", "-4", "-o", "addr", "show", "dev", "eth0", timeout=10)
    return res.returncode == 0 and (" %s/" % vip) in res.stdout


def holders(vip):
    return [n for n in LBS if holds(n, vip)]


def state(name):
    """The VRRP state keepalived last logged since it (re)started ("" = none yet)."""
    res = docker("exec", name, "bash", "-c", STATE_CMD, timeout=20)
    return res.stdout.strip() if res.returncode == 0 else ""


def wait_ready(name, bound=120):
    deadline = time.time() + bound
    while time.time() < deadline:
        r = docker("exec", name, "systemctl", "is-active", "haproxy", "keepalived", timeout=20)
        if r.returncode == 0 and state(name) in ("BACKUP", "MASTER"):
            return
        time.sleep(1)
    raise SystemExit("%s not ready within %d s" % (name, bound))


def restore(name):
    if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
        docker("start", name)
    docker("exec", name, "bash", "-c",
           "systemctl unmask --runtime haproxy; systemctl reset-failed haproxy; systemctl start haproxy", timeout=60)
    wait_ready(name)


def died_at(name):
    """When the container stopped (host clock), from docker's State.FinishedAt."""
    out = docker("inspect", "-f", "{{.State.FinishedAt}}", name).stdout.strip()
    try:
        stamp, frac = out.rstrip("Z").split(".")
        when = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
        return when.timestamp() + float("0." + frac)
    except ValueError:
        return None


def fail(kind, name):
    """Fail ``name``; returns the time of the failure (host clock = container clock)."""
    if kind == "service":
        out = docker("exec", name, "bash", "-c",
                     "systemctl mask --runtime haproxy; date +%s.%N; systemctl kill -s KILL haproxy").stdout
        return float(out.split()[-1]), None
    t0 = time.time()
    cmd = ["docker", "stop", name] if kind == "stop" else ["docker", "kill", name]
    return t0, subprocess.Popen(cmd, stdout=subprocess.DEVNULL)


class Loop(threading.Thread):
    """Bounded request loop with a sticky cookie (one connection per request)."""

    def __init__(self, vip, interval, timeout, seconds):
        super().__init__(daemon=True)
        self.vip, self.interval, self.timeout = vip, interval, timeout
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.cookie = ""
        self.reqs = []

    def run(self):
        while not self.stop.is_set() and time.monotonic() < self.deadline and len(self.reqs) < 20000:
            t = time.time()
            rec = {"t": t, "ok": False, "backend": ""}
            try:
                c = http.client.HTTPConnection(self.vip, 80, timeout=self.timeout)
                c.request("GET", "/", headers={"Cookie": self.cookie} if self.cookie else {})
                r = c.getresponse()
                r.read()
                rec["ok"] = r.status == 200
                rec["backend"] = r.getheader("X-Served-By") or ""
                for raw in r.msg.get_all("Set-Cookie") or []:
                    if raw.startswith("WEBFARM_LB="):
                        self.cookie = raw.split(";", 1)[0]
                c.close()
            except (OSError, http.client.HTTPException):
                pass
            self.reqs.append(rec)
            pause = self.interval - (time.time() - t)
            if pause > 0:
                time.sleep(pause)


def one_round(kind, vip, args):
    held = holders(vip)
    if len(held) != 1:
        raise SystemExit("expected one holder of %s, found %s" % (vip, held))
    active, other = held[0], [n for n in LBS if n != held[0]][0]
    loop = Loop(vip, args.interval / 1000.0, args.timeout, args.seconds)
    loop.start()
    time.sleep(1.5)
    t0, proc = fail(kind, active)
    moved_at = None
    while time.time() - t0 < args.seconds - 2:
        if holds(other, vip):
            moved_at = time.time()
            break
        time.sleep(0.05)
    time.sleep(3)
    loop.stop.set()
    loop.join(10)
    if proc:
        proc.wait(timeout=60)
    if kind == "crash":
        # on a loaded machine `docker kill` may take a while to act: count
        # from the moment the container died (SIGKILL: no shutdown at all)
        t0 = max(t0, died_at(active) or t0)
    moved = (moved_at - t0) if moved_at is not None else None
    # requests that failed before the failure (load timeouts) are not the failover's
    failed = [r for r in loop.reqs if not r["ok"] and r["t"] >= t0 - args.timeout]
    if failed:
        last = max(r["t"] for r in failed)
        after = [r["t"] for r in loop.reqs if r["ok"] and r["t"] > last]
        served = (min(after) - t0) if after else None
    else:
        served = 0.0
    backends = sorted({r["backend"] for r in loop.reqs if r["ok"]})
    restore(active)
    return {"failed_node": active, "new_holder": other, "move_s": round(moved, 3) if moved is not None else None,
            "served_again_s": round(served, 3) if served is not None else None, "failed_requests": len(failed),
            "requests": len(loop.reqs), "backends": backends, "same_backend": len(backends) == 1}


def vrrp_settings(name):
    """advert_int, VRRP version and check timing as configured on ``name`` (keepalived.conf)."""
    conf = docker("exec", name, "cat", "/etc/keepalived/keepalived.conf", timeout=20).stdout
    words = {}
    for line in conf.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("advert_int", "vrrp_version", "interval", "fall", "timeout"):
            words.setdefault(parts[0], parts[1])
    return {"vrrp_version": int(words.get("vrrp_version", 2)), "advert_int_s": float(words.get("advert_int", 1)),
            "check": "interval %s s, timeout %s s, fall %s" % (words.get("interval", "?"), words.get("timeout", "?"),
                                                              words.get("fall", "?"))}


def summary(rounds, key):
    vals = [r[key] for r in rounds if r[key] is not None]
    if not vals:
        return {"p50": None, "max": None, "missing": len(rounds)}
    return {"p50": round(statistics.median(vals), 3), "max": round(max(vals), 3),
            "missing": len(rounds) - len(vals)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vip", default="172.29.21.100")
    ap.add_argument("--failures", default="service,stop")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--interval", type=float, default=50.0, help="ms between requests")
    ap.add_argument("--timeout", type=float, default=0.5, help="seconds per request")
    ap.add_argument("--seconds", type=float, default=15.0, help="bound of one round's request loop")
    ap.add_argument("--merge", action="store_true", help="keep the other failure kinds already in --out")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vip.json"))
    args = ap.parse_args()
    if ipaddress.ip_address(args.vip) not in SUBNET:
        raise SystemExit("--vip must be the scenario's own address in %s" % SUBNET)
    args.rounds = max(1, min(args.rounds, 50))
    args.seconds = max(5.0, min(args.seconds, 60.0))
    kinds = [k for k in args.failures.split(",") if k]
    if any(k not in ("service", "stop", "crash") for k in kinds):
        raise SystemExit("--failures takes service, stop, crash")
    for name in LBS:
        restore(name)
    results = {}
    for kind in kinds:
        rounds = []
        for i in range(args.rounds):
            r = one_round(kind, args.vip, args)
            print("%-7s round %2d: %s -> %s moved %ss, served again %ss, failed %d/%d, backends %s" % (
                kind, i + 1, r["failed_node"], r["new_holder"], r["move_s"], r["served_again_s"],
                r["failed_requests"], r["requests"], r["backends"]), flush=True)
            rounds.append(r)
        results[kind] = {"move_s": summary(rounds, "move_s"), "served_again_s": summary(rounds, "served_again_s"),
                         "failed_requests": summary(rounds, "failed_requests"),
                         "same_backend_every_round": all(r["same_backend"] for r in rounds), "rounds": rounds}
    out = {
        "benchmark": "vip failover (keepalived, molecule scenario keepalived)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": dict({"vip": args.vip, "rounds": args.rounds, "interval_ms": args.interval,
                          "request_timeout_s": args.timeout}, **vrrp_settings(LBS[0])),
        "results": results,
    }
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f).get("results", {})
        old.update(results)
        out["results"] = results = old
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    for kind, r in results.items():
        print("%s: move p50 %s max %s s; served again p50 %s max %s s; failed requests p50 %s max %s" % (
            kind, r["move_s"]["p50"], r["move_s"]["max"], r["served_again_s"]["p50"], r["served_again_s"]["max"],
            r["failed_requests"]["p50"], r["failed_requests"]["max"]))
    print("results: %s" % args.out)


if __name__ == "__main__":
    main()
