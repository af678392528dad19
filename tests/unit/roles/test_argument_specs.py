"""Every role's main argument spec lists exactly its defaults, with the same values."""

import os
import re

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")
NAMES = sorted(r for r in os.listdir(ROLES) if os.path.isdir(os.path.join(ROLES, r, "meta")))


def _load(role, *path):
    with open(os.path.join(ROLES, role, *path)) as f:
        return yaml.safe_load(f) or {}


@pytest.mark.parametrize("role", NAMES)
def test_main_argument_spec_matches_the_defaults(role):
    defaults = _load(role, "defaults", "main.yml") if os.path.exists(os.path.join(ROLES, role, "defaults", "main.yml")) else {}
    spec = _load(role, "meta", "argument_specs.yml")["argument_specs"]["main"].get("options", {})
    assert sorted(spec) == sorted(defaults), "spec and defaults list different variables"
    differ = {k: (spec[k]["default"], defaults[k]) for k in spec if "default" in spec[k] and spec[k]["default"] != defaults[k]}
    assert not differ, differ
    undocumented = [k for k in spec if not spec[k].get("description")]
    assert not undocumented, undocumented


MOLECULE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "molecule")
CODENAME = {"12": "bookworm", "13": "trixie"}
# The (scenario, inventory group) pairs whose hosts run each role in CI (the
# scenario's converge, or site.yml for default and ssh). A role's claim is the
# set of Debian releases those hosts run (README, Platforms).
PROVEN_BY = {
    "preflight": [("default", "webfarm"), ("ssh", "webfarm")],
    "common": [("common", "webfarm"), ("default", "webfarm")],
    "firewall": [("firewall", "webfarm"), ("default", "webfarm")],
    "tls_cert": [("stunnel", "edge"), ("default", "edge")],
    "stunnel": [("stunnel", "edge"), ("default", "edge")],
    "haproxy": [("haproxy", "balancers"), ("default", "balancers")],
    "apache_balancer": [("apache_balancer", "balancers")],
    "route_cookie": [("apache_balancer", "web")],
    "web_linux": [("web_linux", "web_linux"), ("redis_sessions", "web_linux"), ("default", "web_linux")],
    "webfarm_app": [("web_linux", "web_linux"), ("redis_sessions", "web_linux"), ("default", "web_linux")],
    "drupal": [("drupal", "web_linux")],
    "redis": [("redis_sessions", "cache")],
    "mysql": [("mysql", "db"), ("db_backup", "db"), ("db_promote", "db"), ("default", "db")],
    "nfs_server": [("nfs", "nfs"), ("default", "nfs")],
    "nfs_client": [("nfs", "web")],
    "keepalived": [("keepalived", "balancers")],
    "monitoring": [("monitoring", "monitoring")],
    "exporters": [("monitoring", "webfarm")],
}


def _platforms(scenario):
    with open(os.path.join(MOLECULE, scenario, "molecule.yml")) as f:
        return yaml.safe_load(f)["platforms"]


def _release(image):
    """The Debian release a scenario host runs in CI (WEBFARM_DEBIAN unset)."""
    m = re.fullmatch(r"\$\{(WEBFARM_BASE_IMAGE|WEBFARM_IMAGE_TRIXIE):-colo-webfarm/debian:([a-z]+)\}", image)
    assert m, "image %r: use ${WEBFARM_BASE_IMAGE:-colo-webfarm/debian:bookworm} (Debian 12, or the release of " \
              "WEBFARM_DEBIAN) or ${WEBFARM_IMAGE_TRIXIE:-colo-webfarm/debian:trixie} (Debian 13)" % image
    return "bookworm" if m.group(1) == "WEBFARM_BASE_IMAGE" else "trixie"


@pytest.mark.parametrize("scenario", sorted(s for s in os.listdir(MOLECULE)
                                            if os.path.exists(os.path.join(MOLECULE, s, "molecule.yml"))))
def test_scenario_images_name_a_release(scenario):
    for p in _platforms(scenario):
        if "image" in p:  # web_windows is delegated: no container
            assert p["image"] == "${WEBFARM_BASE_IMAGE:-colo-webfarm/debian:bookworm}" or _release(p["image"]) == "trixie"


def _proven(role):
    releases = set()
    for scenario, group in PROVEN_BY[role]:
        hosts = [p for p in _platforms(scenario) if group in p.get("groups", [])]
        assert hosts, (role, scenario, group)
        releases |= {_release(p["image"]) for p in hosts}
    return releases


@pytest.mark.parametrize("role", NAMES)
def test_platform_claims_are_only_what_a_scenario_proves(role):
    # Debian releases from the scenarios' images; Windows Server by web_windows'
    # delegated scenario and its static tests
    platforms = _load(role, "meta", "main.yml")["galaxy_info"]["platforms"]
    if role == "web_windows":
        assert [p["name"] for p in platforms] == ["Windows"], platforms
        return
    assert [p["name"] for p in platforms] == ["Debian"], (role, platforms)
    claimed = platforms[0]["versions"]
    assert claimed == sorted(claimed, key=list(CODENAME.values()).index), claimed
    assert set(claimed) == _proven(role), (role, claimed, PROVEN_BY[role])


def test_every_role_says_which_scenarios_prove_it():
    missing = sorted(set(NAMES) - set(PROVEN_BY) - {"web_windows"})
    assert not missing, "add %s to PROVEN_BY above: the (scenario, group) pairs whose hosts run it" % missing
    assert not set(PROVEN_BY) - set(NAMES), sorted(set(PROVEN_BY) - set(NAMES))


def test_the_host_check_accepts_exactly_the_tested_releases():
    tested = _load("preflight", "defaults", "main.yml")["preflight_tested_platforms"]
    every = set().union(*(_proven(r) for r in PROVEN_BY))
    assert tested == {"Debian": sorted(k for k, v in CODENAME.items() if v in every)}
