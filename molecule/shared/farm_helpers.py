"""Helpers for scenarios that drive the whole farm from their tests (grow):
inventories derived from molecule's, playbook runs and their recap, the
HAProxy runtime API, sticky users and their lbprobe loops, and the
timelines kept for the latency-over-time plots (bench/grow.py).

Every request goes to the scenario's own containers; every loop is bounded.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time

import yaml

from probe_helpers import other, start_probe, stop_probe

SOCK = "/run/haproxy/admin.sock"


def derived_inventory(groups, name):
    """A copy of molecule's inventory directory (group_vars, host_vars) whose
    groups are overridden by `groups` ({group: [hosts]}); returns its file."""
    src = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    dst = os.path.join(tempfile.gettempdir(), "molecule-inventory-" + name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    path = os.path.join(dst, os.path.basename(os.environ["MOLECULE_INVENTORY_FILE"]))
    with open(path) as f:
        inv = yaml.safe_load(f)
    # molecule writes every group at the top level, next to `all`
    for group, hosts in groups.items():
        inv[group] = dict(inv.get(group) or {}, hosts={h: {} for h in hosts})
    with open(path, "w") as f:
        yaml.safe_dump(inv, f)
    return path


def playbook(inventory, path, timeout=2400, **extra):
    """ansible-playbook with the scenario's environment; the result has
    .output (stdout + stderr) and .recap ({host: {ok, changed, failed, ...}})."""
    cmd = ["ansible-playbook", "-i", inventory, path]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    res = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=timeout)
    res.output = res.stdout + res.stderr
    res.recap = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
                 for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", res.stdout, re.M)}
    return res


def servers(lb):
    """{server: (status, weight)} of backend 'web' from the runtime API."""
    out = lb.check_output("echo 'show stat' | socat -t 5 stdio UNIX-CONNECT:%s" % SOCK)
    rows = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) > 18 and f[0] == "web" and f[1] not in ("FRONTEND", "BACKEND"):
            rows[f[1]] = (f[17], f[18])
    return rows


def wait_up(lb, names, bound=60):
    """Wait (bounded) until every server in names is UP on the balancer."""
    deadline = time.time() + bound
    while time.time() < deadline:
        rows = servers(lb)
        if all(rows.get(n, ("",))[0] == "UP" for n in names):
            return rows
        time.sleep(0.5)
    raise AssertionError("not all of %s UP within %d s: %s" % (names, bound, servers(lb)))


class Users:
    """Sticky users of the farm, each with its cookies and the session
    counter the app should answer next; their request loops run as lbprobe
    units on the client."""

    def __init__(self, client, base, served_header, lb_cookie, app_cookie):
        self.client, self.base, self.header = client, base, served_header
        self.lb_cookie, self.app_cookie = lb_cookie, app_cookie
        self.users = []

    def new(self):
        """A fresh user: one /session request; returns {node, cookies, count}."""
        r = json.loads(self.client.check_output("lbprobe %s --served-header %s --count 1 --timeout 10"
                                                % (self.base + "session", self.header)))
        assert r["status"] == {"200": 1}, r
        cookies = {}
        for raw in r["cookies"]:
            name, _, rest = raw.partition("=")
            cookies[name] = rest.split(";", 1)[0]
        assert self.lb_cookie in cookies and self.app_cookie in cookies, r["cookies"]
        user = {"node": r["first"]["served"], "cookies": cookies, "count": 1}
        self.users.append(user)
        return user

    def start(self, phase, users):
        """One bounded sticky loop per user (unit <phase>-<i>)."""
        for i, u in enumerate(users):
            start_probe(self.client, "%s-%d" % (phase, i), self.base + "session",
                        *["--cookie %s=%s" % kv for kv in sorted(u["cookies"].items())],
                        "--follow %s" % self.lb_cookie, "--served-header %s" % self.header,
                        "--count 20000 --seconds 590 --interval 0.1 --timeout 10 --timeline")

    def stop(self, phase, users):
        """Stop the loops; each user keeps its report, follows its new
        sticky cookie and counts the requests it made."""
        reports = [stop_probe(self.client, "%s-%d" % (phase, i), bound=60) for i in range(len(users))]
        for u, rep in zip(users, reports):
            u["cookies"].update(rep["final_cookies"])
            u["count"] += rep["total"]
            u["report"] = rep
        return reports

    def session(self, user):
        """One more /session request with the user's cookies (curl: the body
        lists every node the session saw, longer than lbprobe keeps); returns
        the app's answer and the node that served it."""
        cookie = "; ".join("%s=%s" % kv for kv in sorted(user["cookies"].items()))
        out = self.client.check_output("curl -sk --max-time 10 -D /tmp/farm-helpers-hdr -b %s %s"
                                       % (shlex.quote(cookie), self.base + "session"))
        headers = self.client.file("/tmp/farm-helpers-hdr").content_string
        m = re.search(r"(?im)^set-cookie: %s=([^;\r\n]*)" % re.escape(self.lb_cookie), headers)
        if m:
            user["cookies"][self.lb_cookie] = m.group(1)
        user["count"] += 1
        node = re.search(r"(?im)^%s: (\S+)" % re.escape(self.header), headers)
        return json.loads(out), node.group(1) if node else ""


def merge(first, then):
    """One report per user from two segments of its loop (lbprobe runs at most
    600 s: longer phases restart the loops with the cookies they reached)."""
    out = []
    for a, b in zip(first, then):
        m = dict(b, total=a["total"] + b["total"], timeline=a["timeline"] + b["timeline"],
                 errors=a["errors"] + b["errors"], status=dict(a["status"]), served=dict(a["served"]))
        for key in ("status", "served"):
            for k, n in b[key].items():
                m[key][k] = m[key].get(k, 0) + n
        out.append(m)
    return out


def failed(reports):
    """Requests that did not answer 200, over all reports."""
    return sum(n for r in reports for s, n in r["status"].items() if s != "200")


def served_after(report, t):
    """The nodes that answered a report's requests sent after time t."""
    return {r["served"] for r in report["timeline"] if r["t"] > t}


def record(directory, name, events, reports):
    """Keep what the probes saw (time, latency, status, node) and the times of
    the events, for the latency-over-time plots."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump({"events": events,
                   "timelines": [[{k: r.get(k) for k in ("t", "ms", "status", "served")} for r in rep["timeline"]]
                                 for rep in reports]}, f)


__all__ = ["other", "derived_inventory", "playbook", "servers", "wait_up", "Users", "merge", "failed", "served_after",
           "record"]
