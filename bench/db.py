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

Backup mode (--backup, issue 16), against the `db_backup` scenario after
`molecule converge -s db_backup` (db_backup-db1 primary, db_backup-db2 the
replica with mariabackup):

  python3 bench/db.py --backup [--rows 1000000] [--out bench/results/db-backup.json]

A generated data set (--rows rows of about 250 B: about 250 MB of InnoDB
data) is written on the primary and replicated. On the replica, side by
side in one run:
  * physical backup (mariabackup --backup + --prepare, tar.gz, sha256sum:
    the steps of webfarm-db-backup) vs logical (mariadb-dump
    --single-transaction --all-databases | gzip, sha256sum): time and size;
  * restore: physical (stop, data directory aside, unpack, start) vs logical
    (gunzip | mariadb with sql_log_bin=0 into the running server): time;
  * replica seeding of the same data: the role's streamed method (the
    replica pulls mariadb-dump from the primary over the network straight
    into its server) vs the old method (dump to a file on the primary,
    Ansible fetch to the controller, copy to the replica, restore), both as
    ansible-playbook runs with the project's ansible.cfg.
The seeding plays leave the replica with the data but without replication
settings: destroy the scenario afterwards (`molecule destroy -s db_backup`).
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


SEED_PLAYS = r"""
- hosts: {primary}
  gather_facts: false
  tasks:
    - name: Old method - dump the primary to a file
      ansible.builtin.shell: "set -o pipefail; umask 077; {dump} > /var/tmp/bench-seed.sql"
      args: {{executable: /bin/bash}}
    - name: Old method - fetch the dump to the controller
      ansible.builtin.fetch: {{src: /var/tmp/bench-seed.sql, dest: "@TMP@/", flat: true}}
    - name: Old method - remove the dump from the primary
      ansible.builtin.file: {{path: /var/tmp/bench-seed.sql, state: absent}}
- hosts: {replica}
  gather_facts: false
  tasks:
    - name: Old method - copy the dump to the replica
      ansible.builtin.copy: {{src: "@TMP@/bench-seed.sql", dest: /var/tmp/bench-seed.sql, mode: "0600"}}
    - name: Old method - restore it
      ansible.builtin.shell: "set -o pipefail; (echo 'SET SESSION sql_log_bin=0;'; cat /var/tmp/bench-seed.sql) | mariadb"
      args: {{executable: /bin/bash}}
    - name: Old method - remove the dump from the replica
      ansible.builtin.file: {{path: /var/tmp/bench-seed.sql, state: absent}}
"""

STREAM_PLAY = r"""
- hosts: {replica}
  gather_facts: false
  tasks:
    - name: Streamed method - pull the dump from the primary into the replica
      ansible.builtin.shell: >-
        set -o pipefail; printf '[client]\nuser=bench_seed\npassword=bench-Seed-1\nhost={primary_address}\n' > /run/bench-seed.cnf;
        mariadb-dump --defaults-extra-file=/run/bench-seed.cnf {dump_args}
        | {{ echo 'SET SESSION sql_log_bin=0;'; cat; }} | mariadb; rc=$?; rm -f /run/bench-seed.cnf; exit $rc
      args: {{executable: /bin/bash}}
"""


def sh(container, script, timeout=3600):
    """Runs a bash script in the container; returns (seconds, stdout)."""
    t = time.monotonic()
    res = subprocess.run(["docker", "exec", container, "bash", "-c", "set -euo pipefail; " + script],
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        sys.exit("%s: %s failed: %s" % (container, script[:200], res.stderr.strip()[-2000:]))
    return time.monotonic() - t, res.stdout.strip()


def wait_sql(container, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "exec", container, "mariadb", "-e", "SELECT 1"], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    sys.exit("%s: the server did not answer within %d s" % (container, seconds))


def address(container):
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0]


def playbook_seconds(text, inventory, project):
    tmp = tempfile.mkdtemp(prefix="bench-db-")
    path = os.path.join(tmp, "play.yml")
    with open(path, "w") as f:
        f.write(text.replace("@TMP@", tmp))
    t = time.monotonic()
    res = subprocess.run(["ansible-playbook", "-i", inventory, path], cwd=project, capture_output=True, text=True,
                         timeout=3600, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    seconds = time.monotonic() - t
    shutil.rmtree(tmp, ignore_errors=True)
    if res.returncode != 0:
        sys.exit("playbook failed:\n" + (res.stdout + res.stderr)[-3000:])
    return seconds


def table_rows(container):
    return sql(container, "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT(id, b, c))), 0) FROM bench_data.t")


def backup_bench(args):
    pri, rep = args.primary, args.replica
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.rows < 1000 or args.rows > 5000000:
        sys.exit("--rows must be 1000..5000000")
    # the data set, in chunks of 100,000 rows (bounded transactions for the replica)
    sql(pri, "DROP DATABASE IF EXISTS bench_data; CREATE DATABASE bench_data; CREATE TABLE bench_data.t "
             "(id INT PRIMARY KEY, a BIGINT NOT NULL, b CHAR(64) NOT NULL, c VARCHAR(128) NOT NULL, KEY (a)) "
             "ENGINE=InnoDB")
    t = time.monotonic()
    for lo in range(0, args.rows, 100000):
        hi = min(args.rows, lo + 100000)
        sh(pri, "mariadb bench_data -e \"INSERT INTO bench_data.t SELECT seq, seq * 7919 %% 1000003, SHA2(seq, 256), "
                "SHA2(CONCAT('x', seq), 512) FROM seq_%d_to_%d\"" % (lo + 1, hi))
    generate = time.monotonic() - t
    want = table_rows(pri)
    deadline = time.monotonic() + 900
    while table_rows(rep) != want:
        if time.monotonic() > deadline:
            sys.exit("the replica did not catch up within 900 s")
        time.sleep(2)
    data_bytes = int(sql(rep, "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES "
                              "WHERE TABLE_SCHEMA = 'bench_data'"))
    datadir_bytes = int(sh(rep, "du -sb /var/lib/mysql | cut -f1")[1])
    sql(rep, "STOP SLAVE")
    work = "/var/tmp/bench-backup"
    sh(rep, "rm -rf %s && mkdir -p %s" % (work, work))
    # physical: the steps of webfarm-db-backup
    phys_backup, _ = sh(rep, "cd %s && mariabackup --backup --target-dir=data >backup.log 2>&1 "
                             "&& mariabackup --prepare --target-dir=data >>backup.log 2>&1 "
                             "&& tar -C data -czf data.tar.gz . && rm -rf data && sha256sum data.tar.gz > SHA256SUMS" % work)
    phys_size = int(sh(rep, "stat -c %%s %s/data.tar.gz" % work)[1])
    # logical: mariadb-dump of the same server, gzip, checksum
    log_backup, _ = sh(rep, "cd %s && mariadb-dump --single-transaction --all-databases --routines --events --triggers "
                            "| gzip > dump.sql.gz && sha256sum dump.sql.gz > DUMPSUM" % work)
    log_size = int(sh(rep, "stat -c %%s %s/dump.sql.gz" % work)[1])
    # physical restore: the steps of tasks_from restore
    phys_restore, _ = sh(rep, "systemctl stop mariadb && rm -rf /var/lib/mysql.bench-old && mv /var/lib/mysql /var/lib/mysql.bench-old "
                              "&& install -d -o mysql -g mysql -m 0755 /var/lib/mysql && tar -C /var/lib/mysql -xzf %s/data.tar.gz "
                              "&& chown -R mysql:mysql /var/lib/mysql && systemctl start mariadb "
                              "&& until mariadb -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done" % work)
    sh(rep, "rm -rf /var/lib/mysql.bench-old")
    wait_sql(rep)
    sql(rep, "STOP SLAVE")
    assert_same = table_rows(rep) == want
    # logical restore into the running server
    log_restore, _ = sh(rep, "{ echo 'SET SESSION sql_log_bin=0;'; gunzip < %s/dump.sql.gz; } | mariadb" % work)
    assert_same = assert_same and table_rows(rep) == want
    sh(rep, "rm -rf %s" % work)
    # seeding: the streamed method vs the old fetch-through-the-controller method
    sql(pri, "CREATE USER IF NOT EXISTS 'bench_seed'@'%' IDENTIFIED BY 'bench-Seed-1'; "
             "GRANT SELECT, RELOAD, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER, BINLOG MONITOR ON *.* TO 'bench_seed'@'%'")
    inv = tempfile.mkdtemp(prefix="bench-db-inv-")
    with open(os.path.join(inv, "hosts.yml"), "w") as f:
        yaml.safe_dump({"all": {"hosts": {pri: {}, rep: {}},
                                "vars": {"ansible_connection": "community.docker.docker"}}}, f)
    dump_args = "--single-transaction --master-data=2 --gtid --all-databases --routines --events --triggers"
    stream = playbook_seconds(STREAM_PLAY.format(replica=rep, primary_address=address(pri), dump_args=dump_args),
                              os.path.join(inv, "hosts.yml"), project)
    seed_same = table_rows(rep) == want
    old = playbook_seconds(SEED_PLAYS.format(primary=pri, replica=rep, dump="mariadb-dump " + dump_args),
                           os.path.join(inv, "hosts.yml"), project)
    seed_same = seed_same and table_rows(rep) == want
    shutil.rmtree(inv, ignore_errors=True)
    sql(pri, "DROP USER IF EXISTS 'bench_seed'@'%'")
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": {"primary": pri, "replica": rep, "server_version": sql(rep, "SELECT VERSION()"),
                  "rows": args.rows, "row": "INT id, BIGINT, CHAR(64) + VARCHAR(128) hex",
                  "generate_seconds": round(generate, 1), "innodb_data_and_index_bytes": data_bytes,
                  "replica_datadir_bytes": datadir_bytes,
                  "machine": "2 cores shared with 4 other engineers' scenarios (load average recorded below)",
                  "load_average": open("/proc/loadavg").read().split()[:3],
                  "notes": "old seed method: fetch without become (the docker connection is root); with become, "
                           "fetch falls back to slurp (the dump base64 in memory): not measured"},
        "backup": {"physical_seconds": round(phys_backup, 1), "logical_seconds": round(log_backup, 1),
                   "time_ratio_physical_over_logical": round(phys_backup / log_backup, 3),
                   "physical_bytes": phys_size, "logical_bytes": log_size,
                   "size_ratio_physical_over_logical": round(phys_size / log_size, 3)},
        "restore": {"physical_seconds": round(phys_restore, 1), "logical_seconds": round(log_restore, 1),
                    "time_ratio_physical_over_logical": round(phys_restore / log_restore, 3),
                    "both_restored_exactly_the_rows": assert_same},
        "seed": {"streamed_seconds": round(stream, 1), "fetch_through_controller_seconds": round(old, 1),
                 "time_ratio_streamed_over_fetch": round(stream / old, 3), "both_seeded_exactly_the_rows": seed_same},
    }


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
    ap.add_argument("--backup", action="store_true", help="backup/restore/seed benchmark (see the backup mode above)")
    ap.add_argument("--rows", type=int, default=1000000, help="rows of the backup mode's data set (about 250 B each)")
    args = ap.parse_args()
    if args.backup:
        if args.primary == "mysql-db1":
            args.primary, args.replica = "db_backup-db1", "db_backup-db2"
        if args.out.endswith("db.json"):
            args.out = args.out[:-len("db.json")] + "db-backup.json"
        result = backup_bench(args)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result, indent=2))
        return
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
