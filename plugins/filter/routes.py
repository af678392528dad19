# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for balancer routes, sticky cookie values and weights."""

from __future__ import annotations

from ansible_collections.colo.webfarm.plugins.filter.topology import _ansible_errors
from ansible_collections.colo.webfarm.plugins.module_utils import topology as _t


@_ansible_errors
def route_id(name, route=None):
    return _t.route_id(name, route)


@_ansible_errors
def cookie_value(route, mode="haproxy"):
    return _t.cookie_value(route, mode)


@_ansible_errors
def cookie_route(value, mode="haproxy"):
    return _t.cookie_route(value, mode)


@_ansible_errors
def balancer_weight(weight, balancer="haproxy"):
    return _t.balancer_weight(weight, balancer)


class FilterModule(object):
    """colo.webfarm route, cookie and weight filters."""

    def filters(self):
        return {
            "route_id": route_id,
            "cookie_value": cookie_value,
            "cookie_route": cookie_route,
            "balancer_weight": balancer_weight,
        }
