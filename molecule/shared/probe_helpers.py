"""Helpers shared by the balancer scenarios' testinfra tests (haproxy,
apache_balancer, keepalived): other hosts of the scenario, and the bounded
request probes (lbprobe, vipprobe) run on the client container.

Each test module puts this directory on sys.path and imports from here.
"""

import json
import shlex
import time


def other(host, name):
    """Another host of the same scenario inventory."""
    return host.get_host("ansible://" + name, ansible_inventory=host.backend.ansible_inventory)


def quote_args(args):
    """Quote every word (cookie values carry HAProxy's '|' date suffix)."""
    return [shlex.quote(w) for a in args for w in shlex.split(a)]


def probe(host, url, *args):
    """Run lbprobe in the foreground and return its JSON report."""
    return json.loads(host.check_output("lbprobe %s %s" % (url, " ".join(quote_args(args)))))


def start_probe(host, unit, url, *args):
    """Start lbprobe as a transient unit writing /tmp/<unit>.json."""
    host.run("systemctl reset-failed %s; rm -f /tmp/%s.json" % (unit, unit))
    host.check_output("systemd-run --unit=%s /usr/local/bin/lbprobe %s --out /tmp/%s.json %s"
                      % (unit, url, unit, " ".join(quote_args(args))))


def wait_probe(host, unit, bound=60):
    """The JSON report of a probe started as a unit, waiting at most bound seconds."""
    deadline = time.time() + bound
    while time.time() < deadline:
        if host.file("/tmp/%s.json" % unit).exists:
            return json.loads(host.file("/tmp/%s.json" % unit).content_string)
        time.sleep(1)
    raise AssertionError("probe %s did not finish within %d s" % (unit, bound))


def stop_probe(host, unit, bound=60):
    """End a probe started with start_probe (SIGTERM: it finishes the request
    in flight and writes its summary) and return its JSON report."""
    host.run("systemctl stop %s" % unit)
    return wait_probe(host, unit, bound)


def play_recap(out):
    """{host: {ok, changed, unreachable, failed, skipped, ...}} from an ansible-playbook PLAY RECAP."""
    import re
    got = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", out, re.M):
        got[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return got


def drift_check(playbook, inventory=None, *args, timeout=900):
    """The playbook with --check --diff on the converged scenario: (output, recap).

    Asserts the run completed (rc 0, failed=0 and unreachable=0 on every host).
    """
    import os
    import subprocess
    # the inventory directory, as molecule passes it: its hosts file (extra
    # hosts some scenarios declare), host_vars and group_vars with it
    inventory = inventory or os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    run = subprocess.run(["ansible-playbook", "-i", inventory, playbook, "--check", "--diff"] + list(args),
                         capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    recap = play_recap(run.stdout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert recap and all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    return run.stdout + run.stderr, recap
