# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the redundant tier: who shares which virtual address (keepalived)
and which HAProxy balancers synchronise their stick tables (peers)."""

from __future__ import annotations

from ansible_collections.colo.webfarm.plugins.filter.topology import _ansible_errors
from ansible_collections.colo.webfarm.plugins.module_utils import topology as _t


@_ansible_errors
def vrrp_plan(topology_, vips=None, group=None, router_id_base=None):
    return _t.vrrp_plan(topology_, vips, group, router_id_base)


@_ansible_errors
def haproxy_peers(topology_):
    return _t.haproxy_peers(topology_)


class FilterModule(object):
    """colo.webfarm VRRP filters."""

    def filters(self):
        return {
            "vrrp_plan": vrrp_plan,
            "haproxy_peers": haproxy_peers,
        }
