"""Every role's main argument spec lists exactly its defaults, with the same values."""

import os

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


def test_platform_claims_are_only_what_a_scenario_proves():
    # Debian 12 by every scenario; Windows Server by web_windows' delegated scenario and its static tests
    for role in NAMES:
        platforms = _load(role, "meta", "main.yml")["galaxy_info"]["platforms"]
        allowed = {"Windows"} if role == "web_windows" else {"Debian"}
        assert {p["name"] for p in platforms} == allowed, (role, platforms)
        for p in platforms:
            if p["name"] == "Debian":
                assert p["versions"] == ["bookworm"], (role, p)
    tested = _load("preflight", "defaults", "main.yml")["preflight_tested_platforms"]
    assert tested == {"Debian": ["12"]}
