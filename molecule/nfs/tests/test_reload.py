"""An export change is applied by a reload: the ganesha process stays."""

import json

import pytest

from conftest import WEB_UID, converge, ganesha_pid, nfs_put, url

testinfra_hosts = ["ansible://nfs-nfs1"]

READ_ONLY = {"nfs_server_export_options": ["ro", "sync", "no_subtree_check", "root_squash"]}


@pytest.fixture(scope="module")
def read_only_export(hosts, request):
    pid = ganesha_pid(hosts["nfs1"])
    request.addfinalizer(converge)
    converge("-e", json.dumps(READ_ONLY))
    return pid


def test_export_change_reloads_without_restart(hosts, read_only_export, token):
    assert ganesha_pid(hosts["nfs1"]) == read_only_export
    assert "Access_Type = RO;" in hosts["nfs1"].file("/etc/ganesha/webfarm-exports.conf").content_string
    # the running server applies it: writes refused, reads still fine
    assert nfs_put(hosts["web1"], "/" + token, token, uid=WEB_UID).rc != 0
    assert hosts["web2"].run("timeout 20 nfs-ls '%s'" % url(uid=WEB_UID)).rc == 0


def test_back_to_read_write_is_a_reload_too(hosts, read_only_export, token):
    converge()
    assert ganesha_pid(hosts["nfs1"]) == read_only_export
    assert nfs_put(hosts["web1"], "/" + token, token, uid=WEB_UID).rc == 0
