#!/usr/bin/env python3
"""Balancer benchmark: throughput/latency through each balancer (HAProxy and
Apache) vs. directly to one backend, and failover time with the failed-request
count, in one run.

Runs from the repo root against the RUNNING molecule scenarios of the balancer
tier (it creates no containers): `molecule converge -s haproxy` and
`molecule converge -s apache_balancer` first. Load is generated inside each
scenario's own client container (`<scenario>-client`) with a bounded Python
client (fixed request count, concurrency and time limit), and only goes to
that scenario's containers. For Apache it also compares the role's
`apache_balancer_initial_not_pooled` on and off (re-applying the role with
molecule's inventory of the scenario and restoring the default at the end).
Results: bench/results/balancer.json.

    python3 bench/balancer.py [--requests 2000] [--concurrency 8] [--failovers 3]
                              [--scenarios haproxy apache_balancer]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

SCENARIOS = {
    "haproxy": {
        "lb": "http://172.29.12.10/", "direct": "http://172.29.12.31/",
        "victim": "haproxy-web2", "victim_service": "standin", "cookie": "WEBFARM_LB=haproxy-web2",
        "down_cmd": "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock | grep -q '^web,haproxy-web2,.*,DOWN'",
        "up_cmd": "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock | grep -q '^web,haproxy-web2,.*,UP'",
        "lb_host": "haproxy-lb1",
    },
    "apache_balancer": {
        "lb": "http://172.29.13.10/", "direct": "http://172.29.13.31/",
        "victim": "apache_balancer-web2", "victim_service": "apache2", "cookie": "ROUTEID=.apache_balancer-web2",
        "down_cmd": "curl -sf http://127.0.0.1:8404/balancer-manager | grep -E -q '<td>apache_balancer-web2</td>.*(Err|HcFl)'",
        "up_cmd": "curl -sf http://127.0.0.1:8404/balancer-manager | grep -E '<td>apache_balancer-web2</td>' "
                  "| grep -v -E '(Err|HcFl)' | grep -q Ok",
        "lb_host": "apache_balancer-lb1",
        # role variable compared on/off: (name, [(label, extra vars)]); the
        # last variant is the role's default, so the scenario ends as it began
        "variants": ("apache_balancer_initial_not_pooled",
                     [("off", {"apache_balancer_initial_not_pooled": False}), ("on (default)", {})]),
        "playbook": "molecule/apache_balancer/mode.yml",
    },
}

# Runs inside the client container: bench/httpload.py (bounded GETs).
LOAD = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "httpload.py")).read()

# Runs inside the client container: sticky requests every 20 ms for a bounded time.
LOOP = r'''
import json, sys, time, http.client
host, cookie, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
out, end = [], time.time() + secs
while time.time() < end:
    t = time.time()
    try:
        c = http.client.HTTPConnection(host, 80, timeout=3)
        c.request("GET", "/", headers={"Cookie": cookie, "Connection": "close"})
        r = c.getresponse(); r.read(); c.close(); s = r.status
    except Exception:
        s = 0
    out.append([t, s])
    time.sleep(0.02)
print(json.dumps(out))
'''


def dexec(container, *cmd, stdin=None, timeout=300):
    res = subprocess.run(["docker", "exec", "-i", container] + list(cmd), input=stdin,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError("%s %s: %s" % (container, cmd, res.stderr.strip()[-500:]))
    return res.stdout


def running(container):
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() == "true"


def load(client, url, args):
    return json.loads(dexec(client, "python3", "-", url, str(args.requests), str(args.concurrency), str(args.limit), stdin=LOAD))


def failover(name, s, client):
    victim, lb = "%s" % s["victim"], s["lb_host"]
    host = s["lb"].split("/")[2]
    proc = subprocess.Popen(["docker", "exec", "-i", client, "python3", "-", host, s["cookie"], "8"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write(LOOP)
    proc.stdin.close()
    time.sleep(1.5)
    t_stop = float(dexec(victim, "sh", "-c", "date +%s.%N; systemctl stop " + s["victim_service"]).split()[0])
    t_down = None
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            if subprocess.run(["docker", "exec", lb, "sh", "-c", s["down_cmd"]]).returncode == 0:
                t_down = float(dexec(lb, "date", "+%s.%N"))
                break
            time.sleep(0.1)
        samples = json.loads(proc.stdout.read())
        proc.wait(timeout=30)
    finally:
        dexec(victim, "systemctl", "start", s["victim_service"])
        wait_for(lb, s["up_cmd"], 60)
    failed = [round(t - t_stop, 2) for t, st in samples if st != 200]
    return {"victim": victim, "detection_s": round(t_down - t_stop, 2) if t_down else None,
            "detection_resolution_s": 0.1, "requests": len(samples), "failed_requests": len(failed),
            "failed_at_s_after_stop": failed}


def wait_for(container, cmd, bound):
    """Wait (at most bound seconds) until cmd succeeds in container."""
    deadline = time.time() + bound
    while time.time() < deadline:
        if subprocess.run(["docker", "exec", container, "sh", "-c", cmd]).returncode == 0:
            return True
        time.sleep(0.5)
    raise RuntimeError("%s: '%s' did not succeed within %d s" % (container, cmd, bound))


def inventory(name):
    """molecule's inventory of a running scenario (the newest one)."""
    found = sorted(glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.%s/inventory/ansible_inventory.yml" % name)),
                   key=os.path.getmtime)
    if not found:
        raise RuntimeError("no molecule inventory for %s under ~/.ansible/tmp" % name)
    return found[-1]


def apply_role(name, s, extra):
    """Re-apply the scenario's balancer role with extra variables."""
    cmd = ["ansible-playbook", "-i", inventory(name), s["playbook"], "-e", json.dumps(extra)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), res.stdout[-2000:]))


def failovers(name, s, client, n):
    runs = [failover(name, s, client) for _ in range(n)]
    det = sorted(r["detection_s"] for r in runs if r["detection_s"] is not None)
    return {"runs": runs, "detection_s_max": det[-1] if det else None,
            "detection_s_median": det[len(det) // 2] if det else None,
            "failed_requests_total": sum(r["failed_requests"] for r in runs),
            "requests_total": sum(r["requests"] for r in runs)}


def ratios(via, direct):
    return {"rps_ratio_balancer_vs_direct": round(via["rps"] / direct["rps"], 3) if direct["rps"] else None,
            "p50_ratio": round(via["p50_ms"] / direct["p50_ms"], 3) if direct["p50_ms"] and via["p50_ms"] else None,
            "p99_ratio": round(via["p99_ms"] / direct["p99_ms"], 3) if direct["p99_ms"] and via["p99_ms"] else None}


def measure(name, s, client, args):
    """direct, through the balancer and failover; the load runs alternate
    direct and balanced so both see the same machine load."""
    direct = load(client, s["direct"], args)
    via = load(client, s["lb"], args)
    direct2 = load(client, s["direct"], args)
    best = direct if direct["rps"] >= direct2["rps"] else direct2
    r = {"direct_one_backend": best, "direct_runs_rps": [direct["rps"], direct2["rps"]], "through_balancer": via}
    r.update(ratios(via, best))
    r["failover"] = failovers(name, s, client, args.failovers)
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--limit", type=float, default=120.0, help="seconds per load run (bound)")
    p.add_argument("--failovers", type=int, default=3, help="failovers per balancer (and variant)")
    p.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    p.add_argument("--out", default="bench/results/balancer.json")
    args = p.parse_args()
    args.requests = min(args.requests, 20000)
    args.concurrency = min(args.concurrency, 32)
    args.failovers = max(1, min(args.failovers, 10))
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "requests": args.requests,
               "concurrency": args.concurrency, "failovers": args.failovers,
               "load": subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout.strip(),
               "client": "bounded python3 http.client, one connection per request",
               "balancers": {}}
    for name in args.scenarios:
        s = SCENARIOS[name]
        client = "%s-client" % name
        if not running(client):
            print("skip %s: container %s is not running (molecule converge -s %s first)" % (name, client, name))
            continue
        if "variants" not in s:
            r = measure(name, s, client, args)
        else:
            var, variants = s["variants"]
            r = {"variants": {}}
            try:
                for label, extra in variants:
                    apply_role(name, s, extra)
                    r["variants"]["%s %s" % (var, label)] = measure(name, s, client, args)
            except BaseException:
                apply_role(name, s, {})   # back to the role's default
                raise
            off, on = (r["variants"]["%s %s" % (var, label)] for label, _ in variants)
            r["%s_cost" % var] = {
                "rps_on_vs_off": round(on["through_balancer"]["rps"] / off["through_balancer"]["rps"], 3),
                "p50_on_vs_off": round(on["through_balancer"]["p50_ms"] / off["through_balancer"]["p50_ms"], 3),
                "p99_on_vs_off": round(on["through_balancer"]["p99_ms"] / off["through_balancer"]["p99_ms"], 3),
                # each variant's balancer/direct ratio, on over off (corrects for machine load between the runs)
                "rps_ratio_to_direct_on_vs_off": round(on["rps_ratio_balancer_vs_direct"]
                                                       / off["rps_ratio_balancer_vs_direct"], 3),
                "failed_requests_on": on["failover"]["failed_requests_total"],
                "failed_requests_off": off["failover"]["failed_requests_total"]}
        results["balancers"][name] = r
        print(json.dumps({name: r}, indent=1))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote", args.out)
    return 0 if results["balancers"] else 1


if __name__ == "__main__":
    sys.exit(main())
