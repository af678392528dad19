"""The topology picture draws exactly the topology's flows."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "plugins", "filter"))

import topology_graph  # noqa: E402
from test_topology import topo  # noqa: E402


def test_edges_follow_flows():
    src = topology_graph.dot_source(topo())
    assert '"internet" -> "edge1" [label="https tcp/443"]' in src
    assert '"edge1" -> "lb1" [label="http tcp/80"]' in src
    assert '"lb1" -> "web2" [label="http tcp/80"]' in src
    assert '"web3" -> "nfs1" [label="nfs tcp/2049"]' in src
    assert '"admins" -> "lb1" [label="balancer-admin tcp/8404", style=dashed, color=gray50]' in src
    # nothing reaches the database or the web nodes from the internet
    assert '"internet" -> "db1"' not in src and '"internet" -> "web1"' not in src
    assert '"edge1" -> "web1"' not in src
