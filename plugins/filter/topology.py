# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every colo.webfarm filter: the farm's topology, computed once, and what each
tier renders from it.

One file on purpose. ansible-core 2.19 resolves a collection filter by name
in each forked worker (one per task and host) and, for every name, loads the
filter map of every Python file in the collection's plugins/filter/ (it keeps
no resolved name across workers): with six files each name a task used cost
about six times as much. The logic lives in plugins/module_utils; these are
thin wrappers, documented in the sidecar plugins/filter/<filter>.yml files
(bench/README.md, filters --ansible).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.webfarm.plugins.module_utils import firewall as _f
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


# --- The firewall role's rules

@_ansible_errors
def nft_rules(flows, host=None, controller=None):
    return _f.nft_rules(flows, host, controller)


# --- Balancer routes, sticky cookie values and weights

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


# --- The redundant tier: who shares which virtual address (keepalived) and
# which HAProxy balancers synchronise their stick tables (peers)

@_ansible_errors
def vrrp_plan(topology_, vips=None, group=None, router_id_base=None):
    return _t.vrrp_plan(topology_, vips, group, router_id_base)


@_ansible_errors
def haproxy_peers(topology_):
    return _t.haproxy_peers(topology_)


# --- The monitoring role and the exporters

@_ansible_errors
def monitoring_targets(topology_):
    return _t.monitoring_targets(topology_)


@_ansible_errors
def monitoring_host(topology_, host):
    return _t.monitoring_host(topology_, host)


@_ansible_errors
def monitoring_settings(values):
    return _t.monitoring_settings(dict(values))


# --- Secrets still holding placeholder values, named without their values

def secret_placeholders(hostvars, hosts, variables, placeholders, pattern=None):
    """Return ``"host: variable"`` for each secret left at a placeholder.

    A value is a placeholder when it is one of ``placeholders`` or, whatever
    its length, when ``pattern`` (a regular expression, searched) matches it,
    so ``CHANGE_ME_PLEASE`` counts as well as ``CHANGE_ME``.
    Only hosts that define the variable are checked. Values are compared,
    never returned, so the result is safe to print.
    """
    for name, value in (("hosts", hosts), ("variables", variables), ("placeholders", placeholders)):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise AnsibleFilterError("colo.webfarm.secret_placeholders: '%s' must be a list, got %r"
                                     % (name, type(value).__name__))
    bad = set(placeholders)
    try:
        regex = re.compile(pattern) if pattern else None
    except (re.error, TypeError) as exc:
        raise AnsibleFilterError("colo.webfarm.secret_placeholders: 'pattern' is not a regular expression: %s" % exc)
    found = []
    for host in hosts:
        hv = hostvars.get(host) or {}
        for var in variables:
            if var not in hv:
                continue
            value = hv.get(var)
            if value in bad or (regex is not None and isinstance(value, str) and regex.search(value)):
                found.append("%s: %s" % (host, var))
    return found


class FilterModule(object):
    """colo.webfarm filters (every one of them: see the module docstring)."""

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
            "nft_rules": nft_rules,
            "route_id": route_id,
            "cookie_value": cookie_value,
            "cookie_route": cookie_route,
            "balancer_weight": balancer_weight,
            "vrrp_plan": vrrp_plan,
            "haproxy_peers": haproxy_peers,
            "monitoring_targets": monitoring_targets,
            "monitoring_host": monitoring_host,
            "monitoring_settings": monitoring_settings,
            "secret_placeholders": secret_placeholders,
        }
