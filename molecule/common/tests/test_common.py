"""Behaviour of colo.webfarm.common across three farm hosts."""

import pytest

FARM = {"common-lb1": "172.29.11.20", "common-web1": "172.29.11.31", "common-db1": "172.29.11.41"}

testinfra_hosts = ["ansible://webfarm"]


def test_hostname_is_inventory_name(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


@pytest.mark.parametrize("name,address", sorted(FARM.items()))
def test_every_farm_name_resolves_to_its_private_address(host, name, address):
    # getent goes through nsswitch, so this is what every service sees.
    assert host.check_output("getent hosts %s" % name).split()[0] == address


def test_hosts_block_is_managed_once(host):
    content = host.file("/etc/hosts").content_string
    assert content.count("# BEGIN colo.webfarm farm hosts") == 1
    assert content.count("# END colo.webfarm farm hosts") == 1


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Berlin"
    assert host.file("/etc/timezone").content_string == "Europe/Berlin\n"
    assert host.check_output("date +%Z") in ("CET", "CEST")


@pytest.mark.parametrize("pkg", ["tzdata", "ca-certificates", "curl", "less"])
def test_packages(host, pkg):
    assert host.package(pkg).is_installed


def test_farm_hosts_reach_each_other_by_name(host):
    # a real packet across the docker network, by the names the role wrote
    for name in FARM:
        cmd = host.run("python3 -c \"import socket; s=socket.socket(); s.settimeout(2); "
                       "print(s.connect_ex(('%s', 9)))\"" % name)
        # 111 = connection refused: the peer answered, so name and route work
        assert cmd.stdout.strip() in ("111", "0"), (name, cmd.stdout, cmd.stderr)
