"""NFSv3 on (second converge with webfarm_nfs_v3=true): rpcbind and pinned ports."""

import json

import pytest

from conftest import SERVER, WEB_UID, converge, nfs_put, url

testinfra_hosts = ["ansible://nfs-nfs1"]

PINNED = {"mountd": 20048, "statd": 32765, "lockd": 32768}
PROGRAMS = {"mountd": "100005", "statd": "100024", "lockd": "100021"}


@pytest.fixture(scope="module")
def v3_on(hosts, request):
    # back to NFSv4 only afterwards, even when this converge fails halfway
    request.addfinalizer(converge)
    converge("-e", json.dumps({"webfarm_nfs_v3": True, "webfarm_nfs_v3_ports": PINNED}))



def registrations(host):
    out = host.check_output("pmap_dump %s" % SERVER)
    return {tuple(line.split()) for line in out.splitlines()}


@pytest.mark.parametrize("service", sorted(PINNED))
def test_helpers_are_registered_on_the_pinned_ports(hosts, v3_on, service):
    regs = registrations(hosts["web1"])
    ports = {(proto, port) for prog, _vers, proto, port in regs if prog == PROGRAMS[service]}
    assert ports == {("tcp", str(PINNED[service])), ("udp", str(PINNED[service]))}, regs


def test_nfs_v3_is_registered(hosts, v3_on):
    assert ("100003", "3", "tcp", "2049") in registrations(hosts["web1"])


def test_v3_is_accepted_from_the_web_nodes(hosts, v3_on, token):
    res = nfs_put(hosts["web1"], "/" + token, token, uid=WEB_UID, version=3)
    assert res.rc == 0, res.stderr
    got = hosts["web2"].run("timeout 20 nfs-cat '%s'" % url("/" + token, version=3, uid=WEB_UID))
    assert got.rc == 0 and got.stdout == token, got.stderr
    # and the mount daemon really answers on its pinned port
    assert hosts["web1"].run("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d'" % (SERVER, PINNED["mountd"])).rc == 0


def test_v3_root_is_squashed(hosts, v3_on, token):
    assert nfs_put(hosts["web1"], "/" + token, token, uid=0, version=3).rc == 0
    assert hosts["nfs1"].check_output("stat -c %%u /srv/webfarm/export/%s" % token) == str(WEB_UID)


def test_v3_outsider_is_refused(hosts, v3_on):
    assert hosts["outsider"].run("timeout 20 nfs-ls '%s'" % url(version=3, uid=WEB_UID)).rc != 0


def test_v4_still_served(hosts, v3_on):
    assert hosts["web2"].run("timeout 20 nfs-ls '%s'" % url(version=4, uid=WEB_UID)).rc == 0
