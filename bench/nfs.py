#!/usr/bin/env python3
"""NFS tier benchmark: the shared files export through the server versus the
server's local disk.

Creates its own containers only (``nfsbench-nfs1`` with the export on a docker
volume, ``nfsbench-web1`` as a web node) on its own docker network, configures
the server with the colo.webfarm.nfs_server role (implementation ganesha),
then times, from the web node through NFS (libnfs ``nfs-cp``/``nfs-cat``,
NFSv3, uid 33) and on the server's local disk (``cp``/``cat`` on the same
volume):

* writing and reading ``--files`` small files (default 1,000 of 4 KiB),
* writing and reading one ``--big-mb`` file (default 100 MB).

It reports throughput and the ratio NFS/local for each, writes
``bench/results/nfs.json`` and removes what it created. Every step has a
timeout, there are no unbounded loops, and traffic goes only between the two
containers.

Caveats (also in the JSON): the test kernel has no NFS client, so each small
file costs one ``nfs-cp`` process with its own NFS session setup (a kernel
mount would reuse one session): the small-file ratio is a pessimistic bound.
The server is converged with NFSv3 on and the client speaks v3: libnfs 5.0.2
cannot encode NFSv4 WRITEs above about 3,000 bytes.
Reads of just-written data come from the server's page cache in both cases
(caches cannot be dropped from a container).

Usage: . scripts/env.sh && python3 bench/nfs.py [--files N] [--big-mb M] [--keep]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("WEBFARM_BASE_IMAGE", "colo-webfarm/debian:bookworm")
NET = "nfsbench"
VOLUME = "nfsbench-export"
SERVER, WEB = "nfsbench-nfs1", "nfsbench-web1"
EXPORT = "/srv/webfarm/export"
UID = 33
SYSTEMD = ["--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock", "--cap-add", "SYS_ADMIN"]


def sh(cmd, timeout=120, check=True):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (" ".join(cmd[:6]), res.returncode,
                                                     res.stdout[-2000:], res.stderr[-2000:]))
    return res


def dexec(container, script, timeout=600):
    return sh(["docker", "exec", container, "bash", "-c", script], timeout=timeout)


def timed(container, script, timeout=900):
    """Run script in container; return wall seconds measured inside it."""
    out = dexec(container, "set -e; s=$(date +%s.%N); " + script + "; e=$(date +%s.%N); "
                "python3 -c \"print($e - $s)\"", timeout=timeout).stdout
    return float(out.strip().splitlines()[-1])


def ip_of(container):
    return sh(["docker", "inspect", "-f",
               "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % NET, container]).stdout.strip()


def cleanup():
    sh(["docker", "rm", "-f", SERVER, WEB], check=False)
    sh(["docker", "network", "rm", NET], check=False)
    sh(["docker", "volume", "rm", VOLUME], check=False)


def setup():
    cleanup()
    sh(["docker", "network", "create", NET])
    sh(["docker", "run", "-d", "--name", SERVER, "--hostname", "nfs1", "--network", NET] + SYSTEMD
       + ["--cap-add", "DAC_READ_SEARCH", "-v", "%s:%s" % (VOLUME, EXPORT), IMAGE, "/lib/systemd/systemd"])
    sh(["docker", "run", "-d", "--name", WEB, "--hostname", "web1", "--network", NET] + SYSTEMD
       + [IMAGE, "/lib/systemd/systemd"])
    for c in (SERVER, WEB):
        dexec(c, "timeout 90 systemctl is-system-running --wait || true", timeout=120)
    dexec(WEB, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
               "apt-get install -y -q libnfs-utils >/dev/null", timeout=600)
    srv, web = ip_of(SERVER), ip_of(WEB)
    inventory = {
        "all": {"children": {"webfarm": {
            "vars": {"ansible_connection": "community.docker.docker", "webfarm_admin_networks": [],
                     "nfs_server_implementation": "ganesha", "nfs_server_graceless": True,
                     # libnfs 5.0.2 (Debian 12) cannot encode NFSv4 WRITEs above ~3,000
                     # bytes ("ZDR error: Failed to encode COMPOUND4args"); v3 writes work
                     "webfarm_nfs_v3": True},
            "children": {
                "nfs": {"hosts": {"nfs1": {"ansible_host": SERVER, "webfarm_address": srv}}},
                "web": {"children": {"web_linux": {"hosts": {
                    "web1": {"ansible_host": WEB, "webfarm_address": web}}}}},
            }}}}}
    play = [{"name": "NFS server for the benchmark", "hosts": "nfs", "gather_facts": False,
             "roles": [{"role": "colo.webfarm.nfs_server"}]}]
    with tempfile.TemporaryDirectory() as tmp:
        inv, pb = os.path.join(tmp, "inventory.json"), os.path.join(tmp, "play.yml")
        with open(inv, "w") as f:
            json.dump(inventory, f)
        with open(pb, "w") as f:
            json.dump(play, f)  # JSON is YAML
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
                   ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
        res = subprocess.run(["ansible-playbook", "-i", inv, pb], capture_output=True, text=True,
                             timeout=900, env=env, check=False)
        if res.returncode != 0:
            raise RuntimeError("converge failed: " + res.stdout[-3000:])
    return srv


def measure(srv, files, big_mb):
    url = "nfs://%s%s/%%s?version=3&uid=%d&gid=%d" % (srv, EXPORT, UID, UID)
    small = "/tmp/bench-small"
    big = "/tmp/bench-big"
    for c in (SERVER, WEB):
        dexec(c, "head -c 4096 /dev/urandom > %s && head -c %dM /dev/urandom > %s" % (small, big_mb, big))
    dexec(SERVER, "install -d -o %d -g %d %s/local %s/nfs" % (UID, UID, EXPORT, EXPORT))
    r = {}
    # small files: NFS from the web node, one nfs-cp / nfs-cat each
    r["small_write_nfs_s"] = timed(WEB, "for i in $(seq 1 %d); do nfs-cp %s \"%s\" >/dev/null; done"
                                   % (files, small, url % "nfs/f$i"))
    r["small_read_nfs_s"] = timed(WEB, "for i in $(seq 1 %d); do nfs-cat \"%s\" >/dev/null; done"
                                  % (files, url % "nfs/f$i"))
    # small files: the server's local disk (same volume), one cp / cat each
    r["small_write_local_s"] = timed(SERVER, "for i in $(seq 1 %d); do cp %s %s/local/f$i; done; sync"
                                     % (files, small, EXPORT))
    r["small_read_local_s"] = timed(SERVER, "for i in $(seq 1 %d); do cat %s/local/f$i >/dev/null; done"
                                    % (files, EXPORT))
    # one big file
    r["big_write_nfs_s"] = timed(WEB, "nfs-cp %s \"%s\" >/dev/null" % (big, url % "nfs/big"))
    r["big_read_nfs_s"] = timed(WEB, "nfs-cat \"%s\" >/dev/null" % (url % "nfs/big"))
    r["big_write_local_s"] = timed(SERVER, "cp %s %s/local/big; sync" % (big, EXPORT))
    r["big_read_local_s"] = timed(SERVER, "cat %s/local/big >/dev/null" % EXPORT)
    check = dexec(SERVER, "ls %s/nfs | wc -l; stat -c %%s %s/nfs/big" % (EXPORT, EXPORT)).stdout.split()
    assert int(check[0]) == files + 1 and int(check[1]) == big_mb * 1024 * 1024, check
    return r


def summarise(r, files, big_mb):
    def rate(n, s):
        return round(n / s, 2) if s > 0 else None
    out = {}
    for op in ("write", "read"):
        nfs_fps = rate(files, r["small_%s_nfs_s" % op])
        loc_fps = rate(files, r["small_%s_local_s" % op])
        nfs_mbs = rate(big_mb, r["big_%s_nfs_s" % op])
        loc_mbs = rate(big_mb, r["big_%s_local_s" % op])
        out["small_%s" % op] = {"nfs_files_per_s": nfs_fps, "local_files_per_s": loc_fps,
                                "ratio_nfs_to_local": round(nfs_fps / loc_fps, 3)}
        out["big_%s" % op] = {"nfs_mb_per_s": nfs_mbs, "local_mb_per_s": loc_mbs,
                              "ratio_nfs_to_local": round(nfs_mbs / loc_mbs, 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the containers afterwards")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "nfs.json"))
    args = ap.parse_args()
    if not 1 <= args.files <= 10000 or not 1 <= args.big_mb <= 1024:
        ap.error("--files 1..10000, --big-mb 1..1024")
    t0 = time.time()
    try:
        srv = setup()
        raw = measure(srv, args.files, args.big_mb)
    finally:
        if not args.keep:
            cleanup()
    result = {
        "benchmark": "nfs",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "kernel": platform.release()},
        "server": "nfs-ganesha (colo.webfarm.nfs_server, VFS backend, docker volume)",
        "client": "libnfs-utils nfs-cp/nfs-cat, NFSv3 (see notes), from a second container",
        "files": args.files, "small_file_bytes": 4096, "big_file_mb": args.big_mb,
        "seconds": raw,
        "summary": summarise(raw, args.files, args.big_mb),
        "notes": ["NFSv3, not v4: libnfs 5.0.2 (Debian 12) fails NFSv4 WRITEs above about 3,000 bytes "
                  "with 'ZDR error: Failed to encode COMPOUND4args' (a client-side encoding bug)",
                  "each small file costs one nfs-cp/nfs-cat process with its own NFS session "
                  "(no kernel NFS client here): the small-file ratio is a pessimistic bound",
                  "reads of just-written data come from page cache on both sides",
                  "the machine is shared with other test runs: figures are indicative"],
        "wall_s": round(time.time() - t0, 1),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    json.dump(result["summary"], sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
