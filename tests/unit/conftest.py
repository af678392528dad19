"""Make the checkout importable as ansible_collections.colo.webfarm."""
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, ".collections"))
