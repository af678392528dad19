"""The shared files export across containers, spoken from userspace (libnfs)."""

import pytest

from conftest import EXPORT, SQUASHED_ROOT, WEB_UID, nfs_put, url

testinfra_hosts = ["ansible://nfs-nfs1"]


def server_owner(hosts, name):
    return hosts["nfs1"].check_output("stat -c %%u:%%g %s/%s" % (EXPORT, name))


def test_file_written_on_web1_is_read_on_web2(hosts, token):
    assert nfs_put(hosts["web1"], "/" + token, token, uid=WEB_UID).rc == 0
    got = hosts["web2"].run("timeout 20 nfs-cat '%s'" % url("/" + token, uid=WEB_UID))
    assert got.rc == 0, got.stderr
    assert got.stdout == token


def test_file_is_owned_by_the_web_user(hosts, token):
    assert nfs_put(hosts["web1"], "/" + token, token, uid=WEB_UID).rc == 0
    assert server_owner(hosts, token) == "%d:%d" % (WEB_UID, WEB_UID)
    # and web2 sees the same numeric owner (Only_Numeric_Owners: no idmap)
    listing = hosts["web2"].check_output("timeout 20 nfs-ls '%s'" % url(uid=WEB_UID))
    row = [line.split() for line in listing.splitlines() if line.split()[-1:] == [token]]
    assert row and row[0][2:4] == [str(WEB_UID), str(WEB_UID)], listing


def test_root_is_squashed_to_the_web_user(hosts, token):
    res = nfs_put(hosts["web1"], "/" + token, token, uid=0)
    assert res.rc == 0, res.stderr
    owner = server_owner(hosts, token)
    assert owner == "%d:%d" % (WEB_UID, WEB_UID), owner
    assert owner not in ("0:0", "%d:%d" % (SQUASHED_ROOT, SQUASHED_ROOT))


def test_other_users_are_not_squashed(hosts, token):
    # root_squash, not all_squash: a normal uid keeps its identity (gid 33
    # gives it write access to the group-writable export directory)
    res = nfs_put(hosts["web2"], "/" + token, token, uid=1234, gid=WEB_UID)
    assert res.rc == 0, res.stderr
    assert server_owner(hosts, token) == "1234:%d" % WEB_UID


def test_outsider_is_refused(hosts, token):
    for uid in (WEB_UID, 0):
        ls = hosts["outsider"].run("timeout 20 nfs-ls '%s'" % url(uid=uid))
        assert ls.rc != 0, ls.stdout
        assert nfs_put(hosts["outsider"], "/" + token, token, uid=uid).rc != 0
    assert not hosts["nfs1"].file("%s/%s" % (EXPORT, token)).exists
    # the same request from a web node works, so the refusal is the export's doing
    assert hosts["web1"].run("timeout 20 nfs-ls '%s'" % url(uid=WEB_UID)).rc == 0


def test_nfsv3_is_refused_when_only_v4_is_served(hosts):
    web1 = hosts["web1"]
    v3 = web1.run("timeout 20 nfs-ls '%s'" % url(version=3, uid=WEB_UID))
    assert v3.rc != 0, v3.stdout
    assert web1.run("pmap_dump %s" % "172.29.18.10").rc == 2  # no rpcbind at all
    listening = hosts["nfs1"].check_output("ss -Hltn")
    for port in (111, 20048, 32765, 32768):
        assert ":%d " % port not in listening, listening
    assert web1.run("timeout 20 nfs-ls '%s'" % url(version=4, uid=WEB_UID)).rc == 0


def test_export_directory_owner_and_mode(hosts):
    d = hosts["nfs1"].file(EXPORT)
    assert d.is_directory
    assert (d.uid, d.gid, d.mode) == (WEB_UID, WEB_UID, 0o2775)


@pytest.mark.parametrize("path", ["/etc/ganesha/ganesha.conf", "/etc/ganesha/webfarm-exports.conf"])
def test_config_is_managed(hosts, path):
    assert hosts["nfs1"].file(path).content_string.startswith("#\n# Ansible managed")


@pytest.mark.parametrize("web", ["web1", "web2"])
def test_fstab_entry_is_exactly_as_configured(hosts, web):
    lines = [line.split() for line in hosts[web].file("/etc/fstab").content_string.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    mine = [f for f in lines if f[1:2] == ["/srv/webfarm/files"]]
    assert mine == [["172.29.18.10:/srv/webfarm/export", "/srv/webfarm/files", "nfs",
                     "vers=4.2,hard,proto=tcp,noatime,_netdev,nofail", "0", "0"]]
    assert hosts[web].file("/srv/webfarm/files").is_directory


def test_outsider_has_no_fstab_entry(hosts):
    assert "/srv/webfarm/files" not in hosts["outsider"].file("/etc/fstab").content_string
