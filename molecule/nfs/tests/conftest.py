"""Helpers for the nfs scenario: hosts by name, NFS URLs, re-converging."""

import os
import subprocess
import uuid

import pytest
import testinfra

SERVER = "172.29.18.10"
EXPORT = "/srv/webfarm/export"
WEB_UID = 33
SQUASHED_ROOT = 4294967294  # libnfs/ganesha "nobody" when nothing maps root


def url(path="", version=4, uid=None, gid=None, server=SERVER):
    query = ["version=%d" % version]
    if uid is not None:
        query += ["uid=%d" % uid, "gid=%d" % (uid if gid is None else gid)]
    return "nfs://%s%s%s?%s" % (server, EXPORT, path, "&".join(query))


@pytest.fixture(scope="session")
def hosts():
    inv = os.environ["MOLECULE_INVENTORY_FILE"]
    names = ["nfs-nfs1", "nfs-web1", "nfs-web2", "nfs-outsider"]
    return {n.split("-", 1)[1]: testinfra.get_host("ansible://" + n, ansible_inventory=inv) for n in names}


@pytest.fixture
def token():
    return "t-" + uuid.uuid4().hex[:12]


def converge(*extra, limit="nfs", check=True):
    """Run the scenario's converge playbook again (bounded), return the result."""
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")]
    if limit:
        cmd += ["--limit", limit]
    cmd += list(extra)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res


def nfs_put(host, path, content, uid=None, version=4, gid=None):
    """Write content to the export with nfs-cp from host; return the command result."""
    local = "/tmp/nfs-put-%s" % uuid.uuid4().hex[:8]
    host.run("printf '%%s' %s > %s" % (content, local))
    res = host.run("timeout 20 nfs-cp %s '%s'" % (local, url(path, version, uid, gid)))
    host.run("rm -f %s" % local)
    return res


def ganesha_pid(server):
    return server.check_output("systemctl show -p MainPID --value nfs-ganesha")
