"""scripts/bootstrap.sh refuses an unknown Debian release before it does anything."""

import os
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_unknown_release_is_refused_listing_the_supported_ones():
    env = dict(os.environ, WEBFARM_DEBIAN="sid")
    env.pop("WEBFARM_BASE_IMAGE", None)
    run = subprocess.run(["bash", os.path.join(REPO, "scripts", "bootstrap.sh"), "image"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2
    assert "WEBFARM_DEBIAN is 'sid'; supported releases: bookworm (Debian 12, tested), trixie" in run.stderr
    assert "building" not in run.stderr and "starting" not in run.stderr
