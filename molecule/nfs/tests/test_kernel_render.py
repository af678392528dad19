"""The kernel implementation cannot run here (no nfsd in this kernel): render
it with --check --diff on the server container and check what it would write."""

import json

import pytest

from conftest import converge

testinfra_hosts = ["ansible://nfs-nfs1"]

OPTS = "rw,sync,no_subtree_check,root_squash,anonuid=33,anongid=33"


@pytest.fixture(scope="module")
def render():
    def run(extra):
        res = converge("--check", "--diff", "-e", json.dumps(dict(extra, nfs_server_implementation="kernel")),
                       check=False)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
        return res.stdout
    return run


def test_kernel_exports_list_exactly_the_web_nodes(hosts, render):
    out = render({})
    assert "+/srv/webfarm/export 172.29.18.31(%s)" % OPTS in out
    assert "+/srv/webfarm/export 172.29.18.32(%s)" % OPTS in out
    assert "172.29.18.50" not in out  # the outsider
    assert "+vers3 = n" in out and "+vers4 = y" in out


def test_kernel_v3_pins_the_ports(hosts, render):
    out = render({"webfarm_nfs_v3": True})
    for line in ("+vers3 = y", "+[mountd]", "+port = 20048", "+port = 32765", "+port = 32768",
                 "+fs.nfs.nlm_tcpport = 32768", "+fs.nfs.nlm_udpport = 32768"):
        assert line in out, line


def test_check_mode_changed_nothing_on_the_server(hosts):
    server = hosts["nfs1"]
    assert not server.file("/etc/exports.d/webfarm.exports").exists
    assert not server.package("nfs-kernel-server").is_installed
    assert server.service("nfs-ganesha").is_running
