# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find secrets still holding placeholder values, naming them without their values."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def secret_placeholders(hostvars, hosts, variables, placeholders):
    """Return ``"host: variable"`` for each secret left at a placeholder.

    Only hosts that define the variable are checked. Values are compared,
    never returned, so the result is safe to print.
    """
    for name, value in (("hosts", hosts), ("variables", variables), ("placeholders", placeholders)):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise AnsibleFilterError("colo.webfarm.secret_placeholders: '%s' must be a list, got %r"
                                     % (name, type(value).__name__))
    bad = set(placeholders)
    found = []
    for host in hosts:
        hv = hostvars.get(host) or {}
        for var in variables:
            if var in hv and hv.get(var) in bad:
                found.append("%s: %s" % (host, var))
    return found


class FilterModule(object):
    """colo.webfarm secret checks."""

    def filters(self):
        return {"secret_placeholders": secret_placeholders}
