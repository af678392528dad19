# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that compute the farm's topology once, for every tier to render."""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.module_utils import topology as _t


def _ansible_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _t.TopologyError as exc:
            raise AnsibleFilterError("colo.webfarm.%s: %s" % (func.__name__, exc))
    return wrapper


@_ansible_errors
def topology(groups, hostvars):
    return _t.build_topology(groups, hostvars)


@_ansible_errors
def model(groups, hostvars):
    """The farm model of this run, computed once.

    Preflight stores the model on the controller (``hostvars.localhost.webfarm_model``);
    every role asks for it here and gets that one while it still describes the
    inventory (same groups, same ``webfarm_db_primary``), so a run costs one
    model, not one per host and task. Outside site.yml (no stored model), or
    when it is out of date, the model is computed now.
    """
    stored = None
    local = {}
    try:
        # The stored model is plain data (a fact): read it without templating
        # the whole structure again on every call.
        local = hostvars.raw_get("localhost") if hasattr(hostvars, "raw_get") else hostvars["localhost"]
        if "webfarm_model" in local:
            stored = local["webfarm_model"]
    except (KeyError, TypeError):
        stored = None
    current = _t.current_model(stored, groups, local) if stored is not None else None
    return current if current is not None else _t.build_topology(groups, hostvars)


@_ansible_errors
def members(topology_, balancer="haproxy"):
    return _t.members(topology_, balancer)


@_ansible_errors
def route_map(topology_):
    return _t.route_map(topology_)


@_ansible_errors
def server_ids(topology_):
    return _t.server_ids(topology_)


@_ansible_errors
def firewall_flows(topology_):
    return _t.firewall_flows(topology_)


@_ansible_errors
def nfs_exports(topology_, path, options=None):
    return _t.nfs_exports(topology_, path, options)


@_ansible_errors
def farm_addresses(topology_, group):
    return _t.addresses(topology_, group)


@_ansible_errors
def app_settings(topology_, host, use_replicas=None):
    return _t.app_settings(topology_, host, use_replicas)


@_ansible_errors
def farm_settings(topology_, hostvars=None):
    return _t.farm_settings(topology_, hostvars)


class FilterModule(object):
    """colo.webfarm topology filters."""

    def filters(self):
        return {
            "topology": topology,
            "model": model,
            "members": members,
            "route_map": route_map,
            "server_ids": server_ids,
            "firewall_flows": firewall_flows,
            "nfs_exports": nfs_exports,
            "farm_addresses": farm_addresses,
            "farm_settings": farm_settings,
            "app_settings": app_settings,
        }
