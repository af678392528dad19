"""After test_v3.py converged back without NFSv3: rpcbind and v3 are gone again."""

from conftest import SERVER, WEB_UID, url

testinfra_hosts = ["ansible://nfs-nfs1"]


def test_back_to_v4_only_stops_rpcbind_and_v3(hosts):
    web1 = hosts["web1"]
    assert web1.run("pmap_dump %s" % SERVER).rc == 2
    assert web1.run("timeout 20 nfs-ls '%s'" % url(version=3, uid=WEB_UID)).rc != 0
    assert web1.run("timeout 20 nfs-ls '%s'" % url(version=4, uid=WEB_UID)).rc == 0
    for unit in ("rpcbind.socket", "rpcbind.service", "nfs-ganesha-lock.service"):
        assert hosts["nfs1"].run("systemctl is-enabled %s" % unit).stdout.strip() == "masked"
