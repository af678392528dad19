"""The Debian release every host of a scenario must run, read from the
scenario's molecule.yml (README, Platforms): a host whose image is
${WEBFARM_IMAGE_TRIXIE:-...} runs Debian 13, one whose image is
${WEBFARM_BASE_IMAGE:-...} the release of WEBFARM_DEBIAN (default bookworm).
A test compares that with /etc/debian_version on each host, so a scenario that
claims a release for a role really ran the role there.
"""

import os
import re

import yaml

MAJOR = {"bookworm": "12", "trixie": "13"}
IMAGE = re.compile(r"\$\{(WEBFARM_[A-Z_]+):-colo-webfarm/debian:([a-z]+)\}")


def expected_releases(scenario_dir):
    """{host: Debian major version} from the scenario's platforms."""
    with open(os.path.join(scenario_dir, "molecule.yml")) as f:
        platforms = yaml.safe_load(f)["platforms"]
    out = {}
    for p in platforms:
        m = IMAGE.fullmatch(p["image"])
        assert m, "%s: image %r is neither ${WEBFARM_BASE_IMAGE:-...} nor ${WEBFARM_IMAGE_TRIXIE:-...}" % (
            p["name"], p["image"])
        var, release = m.groups()
        if var == "WEBFARM_BASE_IMAGE":
            release = os.environ.get("WEBFARM_DEBIAN", "bookworm")
        out[p["name"]] = MAJOR[release]
    return out


def running_release(host):
    """The Debian major version a testinfra host runs ("12", "13")."""
    return host.file("/etc/debian_version").content_string.strip().split(".")[0]


def check_every_host_runs_its_release():
    """The test of tests/test_platforms.py in the scenarios that pin releases."""
    import testinfra  # only in the scenarios' verify environment

    want = expected_releases(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    got = {name: running_release(testinfra.get_host("ansible://" + name, ansible_inventory=inventory))
           for name in want}
    assert got == want
