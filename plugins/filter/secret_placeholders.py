# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find secrets still holding placeholder values, naming them without their values."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError


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
    """colo.webfarm secret checks."""

    def filters(self):
        return {"secret_placeholders": secret_placeholders}
