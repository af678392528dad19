"""Bad input fails before the server is touched, naming the variable."""

import json
import os
import tempfile

import pytest

from conftest import converge, ganesha_pid

testinfra_hosts = ["ansible://nfs-nfs1"]

WATCHED = "/etc/ganesha/ganesha.conf /etc/ganesha/webfarm-exports.conf /etc/nfs.conf.d/webfarm.conf"


def server_state(server):
    sums = server.check_output("md5sum %s" % WATCHED)
    return sums, ganesha_pid(server), server.check_output("ls -A /etc/ganesha | sort")


@pytest.mark.parametrize("extra,variable", [
    ({"nfs_server_export_path": "srv/webfarm/export"}, "nfs_server_export_path"),
    ({"nfs_server_export_path": "/"}, "nfs_server_export_path"),
    ({"nfs_server_export_path": "//"}, "nfs_server_export_path"),
    ({"webfarm_nfs_v3": True, "webfarm_nfs_v3_ports": {"mountd": 20048}}, "webfarm_nfs_v3_ports"),
    ({"webfarm_nfs_v3": True, "webfarm_nfs_v3_ports": {"mountd": 20048, "statd": 20048, "lockd": 32768}},
     "webfarm_nfs_v3_ports"),
    ({"nfs_server_export_options": ["rw", "ro", "root_squash"]}, "nfs_server_export_options"),
], ids=["relative", "root", "double-slash", "v3-unpinned", "v3-same-port", "rw-and-ro"])
def test_bad_variable_fails_before_touching_the_server(hosts, extra, variable):
    before = server_state(hosts["nfs1"])
    res = converge("-e", json.dumps(extra), check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "'%s'" % variable in out, out[-3000:]
    assert server_state(hosts["nfs1"]) == before


def test_two_nfs_servers_fail_naming_the_group(hosts):
    before = server_state(hosts["nfs1"])
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as extra_inv:
        extra_inv.write("nfs:\n  hosts:\n    nfs-outsider:\n")
    try:
        res = converge("-i", extra_inv.name, limit="nfs-nfs1", check=False)
    finally:
        os.unlink(extra_inv.name)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "groups.nfs" in out and "at most one NFS server" in out, out[-3000:]
    assert server_state(hosts["nfs1"]) == before
