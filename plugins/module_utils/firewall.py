# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn a host's firewall flows into nftables rule matches.

Pure functions on plain data: the ``firewall`` role renders their output and
never computes in its template.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.colo.webfarm.plugins.module_utils.topology import TopologyError, _err, _int_in

PROTOS = ("tcp", "udp", "vrrp")
# Protocols matched by IP protocol number alone (no port): VRRP is 112.
PORTLESS = ("vrrp",)


def _network(value, host, var):
    if not isinstance(value, str):
        raise _err(host, var, value, "a CIDR network such as 192.0.2.0/24")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _err(host, var, value, "a CIDR network such as 192.0.2.0/24")


def _set(nets):
    return "{ %s }" % ", ".join(str(n) for n in nets)


def nft_rules(flows, host=None, controller=None):
    """nftables matches for ``flows`` (the firewall_flows list of one host).

    Returns a list of ``{"comment", "match"}``; the role writes
    ``<match> accept comment "<comment>"``. IPv4 and IPv6 sources are split
    into ``ip saddr`` and ``ip6 saddr`` sets; a flow open to both 0.0.0.0/0
    and ::/0 needs no source match. ``controller`` is an optional
    ``{"address", "port"}`` (the Ansible SSH connection) that is always
    allowed so a run can never lock out its own controller.
    A ``vrrp`` flow (from colo.webfarm.vrrp_plan) has no port and gives
    ``ip protocol vrrp ip saddr { peers }``; it is only opened to its
    listed sources (always with a source match).
    """
    if isinstance(flows, (str, dict)) or not isinstance(flows, (list, tuple)):
        raise _err(host, "flows", flows, "a list of flows from colo.webfarm.firewall_flows")
    rules = []
    for i, flow in enumerate(flows):
        var = "flows[%d]" % i
        if not isinstance(flow, dict):
            raise _err(host, var, flow, "a mapping with name, proto, port and sources")
        name = str(flow.get("name", "flow-%d" % i)).replace('"', "'")
        proto = flow.get("proto", "tcp")
        if proto not in PROTOS:
            raise _err(host, var + ".proto", proto, "tcp, udp or vrrp")
        if proto in PORTLESS:
            port = None
        else:
            port = _int_in(host, var + ".port", flow.get("port"), 1, 65535)
        sources = flow.get("sources", [])
        if isinstance(sources, str) or not isinstance(sources, (list, tuple)):
            raise _err(host, var + ".sources", sources, "a list of CIDR networks")
        nets = sorted({_network(s, host, var + ".sources") for s in sources},
                      key=lambda n: (n.version, n))
        v4 = [n for n in nets if n.version == 4]
        v6 = [n for n in nets if n.version == 6]
        any4 = any(n.prefixlen == 0 for n in v4)
        any6 = any(n.prefixlen == 0 for n in v6)
        if port is None:
            # IP protocol match (VRRP): never from anywhere, only from the
            # listed peers; "ip protocol vrrp ip saddr { peers }".
            if v4:
                rules.append({"comment": name, "match": "ip protocol %s ip saddr %s" % (proto, _set(v4))})
            if v6:
                rules.append({"comment": name, "match": "ip6 nexthdr %s ip6 saddr %s" % (proto, _set(v6))})
            continue
        dport = "%s dport %d" % (proto, port)
        if any4 and any6:
            rules.append({"comment": name, "match": dport})
            continue
        if any4:
            rules.append({"comment": name, "match": "meta nfproto ipv4 " + dport})
        elif v4:
            rules.append({"comment": name, "match": "ip saddr %s %s" % (_set(v4), dport)})
        if any6:
            rules.append({"comment": name, "match": "meta nfproto ipv6 " + dport})
        elif v6:
            rules.append({"comment": name, "match": "ip6 saddr %s %s" % (_set(v6), dport)})
    if controller:
        if not isinstance(controller, dict):
            raise _err(host, "controller", controller, "a mapping with address and port")
        try:
            address = ipaddress.ip_address(str(controller.get("address")))
        except ValueError:
            raise _err(host, "controller.address", controller.get("address"), "an IP address")
        port = _int_in(host, "controller.port", controller.get("port", 22), 1, 65535)
        family = "ip" if address.version == 4 else "ip6"
        rules.insert(0, {"comment": "ansible controller",
                         "match": "%s saddr %s tcp dport %d" % (family, address, port)})
    return rules


__all__ = ["nft_rules", "TopologyError"]
