# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the monitoring role and the exporters."""

from __future__ import annotations

from ansible_collections.colo.webfarm.plugins.filter.topology import _ansible_errors
from ansible_collections.colo.webfarm.plugins.module_utils import topology as _t


@_ansible_errors
def monitoring_targets(topology_):
    return _t.monitoring_targets(topology_)


@_ansible_errors
def monitoring_host(topology_, host):
    return _t.monitoring_host(topology_, host)


@_ansible_errors
def monitoring_settings(values):
    return _t.monitoring_settings(dict(values))


class FilterModule(object):
    """colo.webfarm monitoring filters."""

    def filters(self):
        return {"monitoring_targets": monitoring_targets, "monitoring_host": monitoring_host,
                "monitoring_settings": monitoring_settings}
