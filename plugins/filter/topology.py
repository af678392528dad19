# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that compute the farm's topology once, for every tier to render."""

from __future__ import annotations

import functools
import multiprocessing
import os

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.module_utils import topology as _t


def _plain_model(value):
    """The model as stored, not Ansible's lazy view of it.

    ansible-core 2.19 hands a filter its input as a lazy container: reading
    ``topology["hosts"]`` there wraps every host entry again, at a cost per
    call that grows with the farm (measured: bench/filters.py --ansible). The
    model is computed data, never a template, so the filters read the stored
    mappings themselves (one shallow copy of the model's top level). Anything
    else is passed as it is.
    """
    if type(value) is not dict and isinstance(value, dict) and "hosts" in value and "source" in value:
        copy = getattr(value, "_non_lazy_copy", None)
        if copy is not None:
            return copy()
    return value


def _ansible_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if args:
            args = (_plain_model(args[0]),) + args[1:]
        try:
            return func(*args, **kwargs)
        except _t.TopologyError as exc:
            raise AnsibleFilterError("colo.webfarm.%s: %s" % (func.__name__, exc))
    return wrapper


@_ansible_errors
def topology(groups, hostvars):
    return _t.build_topology(groups, hostvars)


# Models handed out in this worker process, by (process id, hostvars).
_WORKER_MODELS = {}


def _in_worker():
    """True in one of Ansible's forked worker processes.

    A worker runs one task for one host and exits; the inventory, the
    controller's variables and the stored model cannot change while it runs
    (results are applied by the main process afterwards). The main process
    (ansible-playbook itself, which evaluates meta task conditions) lives
    across tasks and never keeps a model here.
    """
    return multiprocessing.parent_process() is not None


def _controller_runtime_vars(hostvars):
    """The controller's variables ``model`` needs, from the run's own caches.

    ``hostvars.raw_get('localhost')`` computes every variable of the
    controller, the stored model among its facts, on every call: 5.3 ms per
    call at 200 web nodes in a run (0.3 ms here), and one call per host and
    task made the model's cost per run grow faster than the farm
    (bench/README.md, filters --ansible). Preflight stores the model with ``set_fact`` (Ansible's
    non-persistent fact cache), and whoever changes ``webfarm_db_primary``
    during a run does so with ``set_fact`` too; the inventory cannot change
    during a run. So the stored model, the controller's run-time
    ``webfarm_db_primary`` (extra vars over set_fact over include_vars, as
    Ansible's precedence has it) and the inventory's group lists (Ansible's
    cached ``groups``) are read here directly, at the cost of a few dict
    lookups. These are ansible-core's variable manager and inventory
    attributes (tests/unit/plugins/filter/test_topology.py checks them
    against ``raw_get`` with the pinned ansible-core); without them, or
    without a stored model, ``None``: the caller reads ``raw_get``.
    """
    try:
        manager = hostvars._variable_manager
        facts = manager._nonpersistent_fact_cache.get("localhost") or {}
        if "webfarm_model" not in facts:
            return None
        local = {"webfarm_model": facts["webfarm_model"], "groups": hostvars._inventory.get_groups_dict()}
        for source in (manager._vars_cache.get("localhost") or {}, facts, manager.extra_vars):
            if "webfarm_db_primary" in source:
                local["webfarm_db_primary"] = source["webfarm_db_primary"]
        return local
    except (AttributeError, TypeError):
        return None


def _controller_vars(hostvars):
    # The controller's variables, raw: the stored model is plain data (a fact)
    # and need not be templated again on every call.
    fast = _controller_runtime_vars(hostvars)
    if fast is not None:
        return fast
    try:
        local = hostvars.raw_get("localhost") if hasattr(hostvars, "raw_get") else hostvars["localhost"]
    except (KeyError, TypeError):
        return {}
    return local if hasattr(local, "get") else {}


@_ansible_errors
def model(groups, hostvars):
    """The farm model of this run, computed once.

    Preflight stores the model on the controller (``hostvars.localhost.webfarm_model``);
    every role asks for it here and gets that one while it still describes the
    inventory (same groups, same ``webfarm_db_primary``), so a run costs one
    model, not one per host and task. Outside site.yml (no stored model), or
    when it is out of date, the model is computed now.

    Cost per call: a few dict lookups and ``len()`` calls (the stored model,
    the controller's run-time primary and the group sizes come from the run's
    caches, see ``_controller_runtime_vars``; the controller's raw variables
    otherwise).
    The group sizes are read from the controller's raw ``groups`` (a plain
    dict) when ``groups`` is Ansible's lazy container, whose ``get()`` renders
    the whole host list on each call (O(hosts)). Within one worker process
    (one task on one host) the answer is kept: later calls cost a dict lookup.
    """
    key = None
    if _in_worker():
        key = (os.getpid(), id(hostvars))
        if key in _WORKER_MODELS:
            return _WORKER_MODELS[key]
    local = _controller_vars(hostvars)
    stored = local.get("webfarm_model")
    current = None
    if stored is not None:
        sizes_of = groups
        if type(groups) is not dict and isinstance(local.get("groups"), dict):
            sizes_of = local["groups"]
        current = _t.current_model(stored, sizes_of, local)
    result = current if current is not None else _t.build_topology(groups, hostvars)
    if key is not None:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = result
    return result


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
def firewall_flows(topology_, host=None):
    return _t.firewall_flows(topology_, host)


@_ansible_errors
def farm_host(topology_, host):
    return _t.farm_host(topology_, host)


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
            "farm_host": farm_host,
            "farm_settings": farm_settings,
            "app_settings": app_settings,
        }
