"""scripts/bootstrap.sh refuses an unknown Debian release before it does anything."""

import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SUPPORTED = "supported Debian releases: bookworm (Debian 12), trixie (Debian 13)"


def _bootstrap(*args, **env):
    e = dict(os.environ, **env)
    for k in ("WEBFARM_BASE_IMAGE", "WEBFARM_BASE_IMAGE_DERIVED"):
        e.pop(k, None)
    return subprocess.run(["bash", os.path.join(REPO, "scripts", "bootstrap.sh"), *args],
                          capture_output=True, text=True, timeout=60, env=e)


def test_unknown_release_is_refused_listing_the_supported_ones():
    run = _bootstrap("image", WEBFARM_DEBIAN="sid")
    assert run.returncode == 2
    assert "WEBFARM_DEBIAN is 'sid'; " + SUPPORTED in run.stderr
    assert "building" not in run.stderr and "starting" not in run.stderr


@pytest.mark.parametrize("releases", [["forky"], ["trixie", "forky"], ["bookworm", "Trixie"]])
def test_an_unknown_release_to_build_is_refused_before_any_build(releases):
    run = _bootstrap("image", *releases, WEBFARM_DEBIAN="bookworm")
    assert run.returncode == 2
    bad = [r for r in releases if r not in ("bookworm", "trixie")][0]
    assert "the release to build is '%s'; %s" % (bad, SUPPORTED) in run.stderr
    assert "building" not in run.stderr and "starting" not in run.stderr


def test_env_follows_a_changed_release_unless_the_image_was_set_by_hand():
    script = ('. scripts/env.sh; a=$WEBFARM_BASE_IMAGE; WEBFARM_DEBIAN=trixie; . scripts/env.sh; '
              'b=$WEBFARM_BASE_IMAGE; WEBFARM_BASE_IMAGE=my/image; . scripts/env.sh; echo "$a $b $WEBFARM_BASE_IMAGE"')
    env = {k: v for k, v in os.environ.items()
           if k not in ("WEBFARM_DEBIAN", "WEBFARM_BASE_IMAGE", "WEBFARM_BASE_IMAGE_DERIVED")}
    out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30, env=env)
    assert out.stdout.split() == ["colo-webfarm/debian:bookworm", "colo-webfarm/debian:trixie", "my/image"]
