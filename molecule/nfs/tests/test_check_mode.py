"""Drift check of the converged NFS tier (server and nfs_client on the web
nodes): --check --diff completes with changed=0, and a hand edit of a
client's fstab entry is reported (with its diff) without being repaired."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from probe_helpers import drift_check  # noqa: E402

CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml")


def test_check_mode_on_the_converged_tier_changes_nothing(hosts):
    out, recap = drift_check(CONVERGE)
    assert {"nfs-nfs1", "nfs-web1", "nfs-web2"} <= set(recap), recap
    assert all(r["changed"] == 0 for r in recap.values()), recap


def test_check_mode_reports_a_hand_edited_fstab_entry_and_leaves_it(hosts):
    """Drift on a client: its fstab entry edited by hand (hard -> soft). The
    check run reports web1 changed, shows the entry in its diff and fails no
    verification; the file stays exactly as drifted."""
    web = hosts["web1"]
    before = web.file("/etc/fstab").content_string
    assert web.run("cp -p /etc/fstab /tmp/fstab.before").rc == 0
    try:
        assert web.run(r"sed -i '/ nfs4\? /s/\bhard\b/soft/' /etc/fstab").rc == 0
        drifted = web.file("/etc/fstab").content_string
        assert drifted != before, before
        out, recap = drift_check(CONVERGE, None, "--limit", "nfs-web1")
        assert recap["nfs-web1"]["changed"] >= 1, recap
        drift = [x for x in out.splitlines() if "DRIFT: /etc/fstab on nfs-web1" in x]
        assert drift and "soft" in drift[0] and "hard" in drift[0], out[-3000:]
        assert web.file("/etc/fstab").content_string == drifted  # check mode changed nothing
    finally:
        web.run("cp -p /tmp/fstab.before /etc/fstab && rm -f /tmp/fstab.before")
    assert web.file("/etc/fstab").content_string == before
