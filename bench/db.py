#!/usr/bin/env python3
"""Database tier benchmark: replication lag under a bounded write load, with
semi-sync on and off, and the end-to-end switchover time of db_promote.yml.

Runs ONLY against the project's own containers (default: the `mysql`
molecule scenario after `molecule converge -s mysql`). The writer runs inside
the primary's container and the lag sampler inside a replica's container,
both over the unix socket with python3-pymysql (installed by the role); all
traffic stays on the scenario's docker network. Every loop is bounded in
count and time.

Lag is measured pt-heartbeat style: each transaction also updates a heartbeat
row with NOW(6) on the primary; the sampler on the replica reads
NOW(6) - heartbeat every 5 ms. Containers share the host kernel clock, so the
difference is the replication delay (plus at most one transaction interval).

  python3 bench/db.py [--transactions 3000] [--primary mysql-db1] [--replica mysql-db2]
                      [--switchover-inventory MOLECULE_INVENTORY_DIR --candidate mysql-db2 [--exclude host,...]]

The switchover is timed there and back (the scenario ends with the primary it
started with); the inventory is copied with --primary as db_primary.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

WRITER = r"""
import json, os, time, pymysql
n = int(os.environ["N"])
c = pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True)
cur = c.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS bench")
cur.execute("CREATE TABLE IF NOT EXISTS bench.hb (id INT PRIMARY KEY, ts DATETIME(6))")
cur.execute("CREATE TABLE IF NOT EXISTS bench.load (id INT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(255))")
cur.execute("REPLACE INTO bench.hb VALUES (1, NULL), (2, NULL)")  # NULL: no lag sampled before the load starts
time.sleep(1.0)
lat = []
start = time.monotonic()
for i in range(n):
    t = time.monotonic()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO bench.load (payload) VALUES (REPEAT('x', 200))")
    cur.execute("UPDATE bench.hb SET ts = NOW(6) WHERE id = 1")
    cur.execute("COMMIT")
    lat.append(time.monotonic() - t)
    if time.monotonic() - start > float(os.environ["MAX_SECONDS"]):
        break
elapsed = time.monotonic() - start
cur.execute("UPDATE bench.hb SET ts = NOW(6) WHERE id = 2")
cur.execute("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'")
semi = cur.fetchone()[1]
print(json.dumps({"transactions": len(lat), "seconds": elapsed, "commit_latency": lat, "semi_sync_status": semi}))
"""

SAMPLER = r"""
import json, os, time, pymysql
c = pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True)
cur = c.cursor()
lags = []
deadline = time.monotonic() + float(os.environ["MAX_SECONDS"]) + 30
started = False
while time.monotonic() < deadline:
    try:
        cur.execute("SELECT TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)), "
                    "(SELECT ts IS NOT NULL FROM bench.hb WHERE id = 2) FROM bench.hb WHERE id = 1")
        row = cur.fetchone()
    except pymysql.err.ProgrammingError:
        row = None                      # tables not replicated yet
    if row is not None and row[0] is not None:
        if row[1] == 1:
            break                       # the writer finished and we saw it
        started = True
        lags.append(row[0] / 1e6)
    time.sleep(0.005)
print(json.dumps({"lag": lags if started else []}))
"""


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def sql(container, query):
    res = subprocess.run(["docker", "exec", container, "mariadb", "-Nse", query],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        sys.exit("%s: %s failed: %s" % (container, query, res.stderr.strip()))
    return res.stdout.strip()


def py_in(container, script, env, timeout):
    cmd = ["docker", "exec", "-i"] + sum((["-e", "%s=%s" % kv] for kv in env.items()), []) + [container, "python3", "-"]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), \
        script, timeout


def run_load(args, semi_sync):
    sql(args.primary, "SET GLOBAL rpl_semi_sync_master_enabled = %s" % ("ON" if semi_sync else "OFF"))
    sql(args.primary, "DROP DATABASE IF EXISTS bench")
    env = {"N": args.transactions, "MAX_SECONDS": args.max_seconds}
    sampler, s_script, _ = py_in(args.replica, SAMPLER, env, args.max_seconds + 60)
    writer, w_script, _ = py_in(args.primary, WRITER, env, args.max_seconds + 60)
    sampler.stdin.write(s_script)
    sampler.stdin.close()
    w_out, w_err = writer.communicate(w_script, timeout=args.max_seconds + 60)
    s_out = sampler.stdout.read()
    sampler.wait(timeout=60)
    if writer.returncode != 0 or sampler.returncode != 0:
        sys.exit("writer/sampler failed: %s %s" % (w_err, sampler.stderr.read()))
    w = json.loads(w_out)
    lags = json.loads(s_out)["lag"]
    sql(args.primary, "DROP DATABASE IF EXISTS bench")
    return {
        "semi_sync": semi_sync,
        "semi_sync_status_at_end": w["semi_sync_status"],
        "transactions": w["transactions"],
        "tps": round(w["transactions"] / w["seconds"], 1),
        "commit_ms_p50": round(pct(w["commit_latency"], 50) * 1000, 3),
        "commit_ms_p99": round(pct(w["commit_latency"], 99) * 1000, 3),
        "lag_samples": len(lags),
        "lag_ms_p50": round(pct(lags, 50) * 1000, 3) if lags else None,
        "lag_ms_p99": round(pct(lags, 99) * 1000, 3) if lags else None,
        "lag_ms_max": round(max(lags) * 1000, 3) if lags else None,
    }


def swap_inventory(src, primary, drop=()):
    """A copy of a molecule inventory dir with `primary` in db_primary and `drop` removed from the db groups."""
    tmp = tempfile.mkdtemp(prefix="bench-db-inv-")
    dst = os.path.join(tmp, "inventory")
    shutil.copytree(src, dst)
    path = os.path.join(dst, "ansible_inventory.yml")
    with open(path) as f:
        inv = yaml.safe_load(f)
    hosts = dict(inv["db_primary"]["hosts"])
    hosts.update(inv["db_replicas"]["hosts"])
    for name in drop:
        hosts.pop(name, None)
        inv.get("db", {}).get("hosts", {}).pop(name, None)
    inv["db_primary"]["hosts"] = {primary: hosts.pop(primary)}
    inv["db_replicas"]["hosts"] = hosts
    with open(path, "w") as f:
        yaml.safe_dump(inv, f)
    return dst


def switchover(args):
    """Switch over to the candidate and back; the scenario ends as it began."""
    project = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(project, ".collections"), ANSIBLE_NOCOLOR="1")
    old = args.primary
    drop = args.exclude.split(",") if args.exclude else []
    times = []
    for inv, cand in ((swap_inventory(args.switchover_inventory, old, drop), args.candidate),
                      (swap_inventory(args.switchover_inventory, args.candidate, drop), old)):
        t = time.monotonic()
        res = subprocess.run(["ansible-playbook", "-i", inv, "playbooks/db_promote.yml", "-e", "mode=switchover",
                              "-e", "candidate=" + cand], cwd=project, env=env, capture_output=True, text=True,
                             timeout=600)
        if res.returncode != 0:
            sys.exit("switchover to %s failed:\n%s" % (cand, res.stdout[-3000:]))
        times.append(round(time.monotonic() - t, 2))
    return {"to_candidate_s": times[0], "back_s": times[1], "note": "ansible-playbook wall time, end to end"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--primary", default="mysql-db1")
    ap.add_argument("--replica", default="mysql-db2")
    ap.add_argument("--transactions", type=int, default=3000)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--switchover-inventory", help="molecule inventory dir of the scenario (enables switchover timing)")
    ap.add_argument("--candidate", default="mysql-db2")
    ap.add_argument("--exclude", default="", help="comma-separated db hosts to leave out of the switchover inventory")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "db.json"))
    args = ap.parse_args()
    if args.transactions < 1 or args.transactions > 100000 or args.max_seconds > 600:
        sys.exit("--transactions must be 1..100000 and --max-seconds at most 600")
    for c in (args.primary, args.replica):
        name = subprocess.run(["docker", "inspect", "-f", "{{.Name}}", c], capture_output=True, text=True)
        if name.returncode != 0:
            sys.exit("container %s does not exist: run `molecule converge -s mysql` first" % c)
    if sql(args.primary, "SELECT @@read_only") != "0" or sql(args.replica, "SELECT @@read_only") != "1":
        sys.exit("%s must be the writable primary and %s a read-only replica" % (args.primary, args.replica))

    runs = []
    for _ in range(args.rounds):
        for semi in (True, False):
            runs.append(run_load(args, semi))
    sql(args.primary, "SET GLOBAL rpl_semi_sync_master_enabled = ON")

    def avg(key, semi):
        vals = [r[key] for r in runs if r["semi_sync"] == semi and r[key] is not None]
        return sum(vals) / len(vals) if vals else None

    summary = {}
    for key in ("tps", "commit_ms_p50", "commit_ms_p99", "lag_ms_p50", "lag_ms_p99"):
        on, off = avg(key, True), avg(key, False)
        summary[key] = {"semi_sync_on": round(on, 3) if on is not None else None,
                        "semi_sync_off": round(off, 3) if off is not None else None,
                        "ratio_on_over_off": round(on / off, 3) if on and off else None}
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": {"primary": args.primary, "replica": args.replica, "transactions_per_run": args.transactions,
                  "rounds": args.rounds, "machine": "2 shared cores, containers of other scenarios running",
                  "load": "single client session, autocommit off, 1 insert of 200 B + heartbeat update per commit"},
        "summary": summary,
        "runs": runs,
    }
    if args.switchover_inventory:
        result["switchover"] = switchover(args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({"summary": summary, "switchover": result.get("switchover")}, indent=2))


if __name__ == "__main__":
    main()
