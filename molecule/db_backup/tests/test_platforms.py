"""Every host runs the Debian release molecule.yml names for it (README,
Platforms): what this scenario proves on Debian 12 and Debian 13."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from platforms import check_every_host_runs_its_release  # noqa: E402


def test_every_host_runs_the_release_molecule_yml_names():
    check_every_host_runs_its_release()
