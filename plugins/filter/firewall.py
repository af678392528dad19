# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the firewall role."""

from __future__ import annotations

from ansible_collections.colo.webfarm.plugins.filter.topology import _ansible_errors
from ansible_collections.colo.webfarm.plugins.module_utils import firewall as _f


@_ansible_errors
def nft_rules(flows, host=None, controller=None):
    return _f.nft_rules(flows, host, controller)


class FilterModule(object):
    """colo.webfarm firewall filters."""

    def filters(self):
        return {"nft_rules": nft_rules}
