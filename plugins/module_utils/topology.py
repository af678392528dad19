# -*- coding: utf-8 -*-
# Copyright: colo.webfarm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The colo.webfarm topology model.

One pure function, :func:`build_topology`, reads inventory groups and host
variables and returns a normalised, validated description of the farm. Every
other computation (balancer members, routes, cookies, weights, firewall flows,
NFS exports, MySQL server ids) derives from that description. Nothing here
touches the network or Ansible internals, so it is unit-tested and benchmarked
with plain dictionaries.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import ipaddress
import re
import zlib

# Inventory groups the model reads. ``web`` has children ``web_linux`` and
# ``web_windows``; ``db`` has children ``db_primary`` and ``db_replicas``.
GROUPS = ("edge", "balancers", "web", "web_linux", "web_windows",
          "db", "db_primary", "db_replicas", "nfs", "cache", "monitoring")

ROUTE_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
ROUTE_BAD_CHARS_RE = re.compile(r"[^A-Za-z0-9_-]")
ROUTE_MAX = 63
BALANCERS = ("haproxy", "apache")
COOKIE_MODES = ("haproxy", "apache", "apache_legacy")
SERVER_ID_MAX = 2 ** 32 - 1
ANYWHERE = ("0.0.0.0/0", "::/0")
_ANYWHERE_LIST = list(ANYWHERE)

# Well-known ports of the services the farm runs; each can be overridden by
# a host variable of the same name (for example ``webfarm_port`` on web nodes).
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "ssh": 22,
    "mysql": 3306,
    "nfs": 2049,
    "rpcbind": 111,
    "redis": 6379,
    "balancer_admin": 8404,
    "haproxy_peers": 10000,
}
DEFAULT_NFS_V3_PORTS = {"mountd": 20048, "statd": 32765, "lockd": 32768}


def _bulk(func):
    """Pause the cyclic garbage collector while a derivation allocates.

    These functions build many small acyclic dicts and lists; at 10,000 hosts
    the collector's repeated scans of the growing heap cost a third of the
    time. Nothing here creates cycles, and the previous state is restored.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


class TopologyError(ValueError):
    """Bad inventory input. The message names host, variable, value and rule."""


def _err(host, var, value, expected):
    where = "host '%s'" % host if host else "the inventory"
    return TopologyError(
        "%s: variable '%s' is %r; expected %s" % (where, var, value, expected))


# ---------------------------------------------------------------- scalars --

def route_id(name, route=None, host=None):
    """The balancer route for a web node.

    An explicit ``route`` is validated and returned. Otherwise the route is
    derived from the inventory name alone, so adding or removing other nodes
    never changes it: characters outside ``[A-Za-z0-9_-]`` become ``-`` and
    names longer than 63 characters keep a prefix plus a digest of the whole.
    """
    if route is not None:
        if not isinstance(route, str) or not ROUTE_RE.match(route):
            raise _err(host or name, "webfarm_route", route,
                       "1 to 63 characters from [A-Za-z0-9_-] (no '.', ';', ',', '~', '|'); "
                       "Apache takes the route after the first '.' of the cookie and "
                       "HAProxy rejects '~' and '|'")
        return route
    if not isinstance(name, str) or not name:
        raise _err(host, "inventory_hostname", name, "a non-empty host name")
    if ROUTE_RE.match(name):  # most inventory names are routes already
        return name
    derived = ROUTE_BAD_CHARS_RE.sub("-", name)
    if len(derived) > ROUTE_MAX:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        derived = derived[:ROUTE_MAX - 9] + "-" + digest
    return derived


def cookie_value(route, mode="haproxy"):
    """The sticky cookie value a balancer in ``mode`` uses for ``route``.

    * ``haproxy``: the route itself (``cookie SRV insert``).
    * ``apache``: ``.<route>``; mod_proxy_balancer reads the route after the
      first '.', and the balancer sets the cookie itself.
    * ``apache_legacy``: ``balancer.<route>``, the value each backend sets
      with mod_rewrite in the design documents' legacy mode.
    """
    route_id("route", route)
    if mode not in _COOKIE_PREFIX:
        raise _err(None, "mode", mode, "one of %s" % ", ".join(COOKIE_MODES))
    return _COOKIE_PREFIX[mode] + route


# What each mode puts before the route (the route itself is validated once, by
# route_id or build_topology).
_COOKIE_PREFIX = {"haproxy": "", "apache": ".", "apache_legacy": "balancer."}


def cookie_route(value, mode="haproxy"):
    """Parse a sticky cookie value back to its route ('' when it names none).

    Apache's parser takes what follows the first '.', cut at ';' or ',';
    a value without '.' gives no route (and silently no stickiness).
    """
    if mode not in COOKIE_MODES:
        raise _err(None, "mode", mode, "one of %s" % ", ".join(COOKIE_MODES))
    if not isinstance(value, str):
        raise _err(None, "cookie", value, "a string")
    if mode == "haproxy":
        return value if ROUTE_RE.match(value) else ""
    _, dot, rest = value.partition(".")
    if not dot:
        return ""
    route = re.split(r"[;,]", rest, maxsplit=1)[0]
    return route if ROUTE_RE.match(route) else ""


def _int_in(host, var, value, low, high):
    if isinstance(value, bool):
        raise _err(host, var, value, "a whole number from %d to %d" % (low, high))
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise _err(host, var, value, "a whole number from %d to %d" % (low, high))
    return value


def _bool(host, var, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise _err(host, var, value, "true or false")


def validate_weight(weight, host=None):
    return _int_in(host, "webfarm_weight", weight, 1, 100)


def balancer_weight(weight, balancer="haproxy", host=None):
    """Convert a ``webfarm_weight`` (1..100) to a balancer's own scale.

    HAProxy's ``weight`` takes 0..256 (0 means drain) and Apache's
    ``loadfactor`` takes 1..100. Both ranges contain 1..100, so the farm
    weight carries over unchanged: proportions stay exact, where scaling to
    256 would round them, and HAProxy's 0 stays reserved for drain.
    """
    weight = validate_weight(weight, host)
    if balancer not in BALANCERS:
        raise _err(host, "webfarm_balancer", balancer, "one of %s" % ", ".join(BALANCERS))
    return weight


_CIDR_CACHE = {}


def validate_cidr(value, host=None, var="webfarm_admin_networks"):
    if isinstance(value, str) and value in _CIDR_CACHE:
        return _CIDR_CACHE[value]
    if not isinstance(value, str):
        raise _err(host, var, value, "a list of CIDR networks such as 192.0.2.0/24")
    try:
        canonical = str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise _err(host, var, value, "a list of CIDR networks such as 192.0.2.0/24")
    if len(_CIDR_CACHE) < 4096:  # group-level networks repeat on every host
        _CIDR_CACHE[value] = canonical
    return canonical


_QUAD_RE = re.compile(r"^(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}$")


def parse_ip(text):
    """Return (canonical text, version, integer) for an IP address, or raise ValueError.

    Dotted-quad IPv4 takes a fast path (the farm model parses every address
    once; ipaddress alone would dominate a 10,000-node topology).
    """
    parts = text.split(".")
    if len(parts) == 4 and _QUAD_RE.match(text):
        a, b, c, d = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        if a <= 255 and b <= 255 and c <= 255 and d <= 255:
            return text, 4, (a << 24) | (b << 16) | (c << 8) | d
    ip = ipaddress.ip_address(text)
    return str(ip), ip.version, int(ip)



# --------------------------------------------------------------- topology --

_MYSQL_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
TLS_TERMINATORS = ("stunnel", "haproxy")
SESSION_STORES = ("database", "redis", "files")


def _choice(choices):
    def check(host, var, value):
        if value not in choices:
            raise _err(host, var, value, "one of %s" % ", ".join(choices))
        return value
    return check


def _abs_path(host, var, value):
    if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") == "" \
            or any(p in ("..", ".") for p in value.split("/")):
        raise _err(host, var, value, "an absolute path other than '/' (without '.' or '..')")
    return value.rstrip("/")


def _url_path(host, var, value):
    if not isinstance(value, str) or not _URL_PATH_RE.match(value) or value == "/":
        raise _err(host, var, value, "a URL path such as /health (letters, digits, . _ ~ - /)")
    return value.rstrip("/")


def _mysql_name(host, var, value):
    if not isinstance(value, str) or not _MYSQL_NAME_RE.match(value):
        raise _err(host, var, value, "a name of 1 to 64 letters, digits or underscores")
    return value


def _id(host, var, value):
    return _int_in(host, var, value, 0, 2 ** 32 - 2)


def _port(host, var, value):
    return _int_in(host, var, value, 1, 65535)


def _nfs_v3_ports(host, var, value):
    if not isinstance(value, dict) or set(value) != set(DEFAULT_NFS_V3_PORTS):
        raise _err(host, var, value, "a mapping with pinned ports for %s" % ", ".join(sorted(DEFAULT_NFS_V3_PORTS)))
    return {k: _port(host, "%s.%s" % (var, k), v) for k, v in sorted(value.items())}


_SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def _session_name(host, var, value):
    # PHP takes letters and digits only, and not digits alone (a numeric name
    # is read as a session id); the same on every web node, Linux and Windows.
    if not isinstance(value, str) or not _SESSION_NAME_RE.match(value) or value.isdigit():
        raise _err(host, var, value, "a cookie name of 1 to 64 letters and digits with at least one letter "
                   "(such as PHPSESSID)")
    return value


def _session_lifetime(host, var, value):
    # seconds a session lives without activity: a minute to 30 days
    return _int_in(host, var, value, 60, 30 * 24 * 3600)


def _vip(host, var, value):
    # the shape only; vrrp_plan checks the addresses against the peers
    if value in (None, ""):
        return ""
    if not isinstance(value, (str, list, dict)) or (isinstance(value, list) and not value):
        raise _err(host, var, value, "an address with its prefix such as 192.0.2.10/24, a list of such addresses "
                   "or of mappings with name, address and virtual_router_id, or empty (no virtual address)")
    return value


def _vrrp_group_setting(host, var, value):
    if value not in ("", None) + VRRP_GROUPS:
        raise _err(host, var, value, "one of %s, or empty (automatic: edge, or balancers when TLS "
                   "terminates on HAProxy)" % ", ".join(VRRP_GROUPS))
    return value or ""


def _db_primary(host, var, value):
    if value is None:
        return None
    if not isinstance(value, str):
        raise _err(host, var, value, "the name of a database host, or empty")
    return value or None


# Farm-wide settings: one value for the whole farm (group_vars of webfarm),
# with its default and its check, read by every role from the model's
# ``settings`` (the firewall included), never from a ``| default()`` copy. A
# setting defined on several hosts with different values is an error: there
# is no "first host wins". Documented once, in the README's farm table.
FARM_SETTINGS = {
    "webfarm_tls_terminator": ("stunnel", _choice(TLS_TERMINATORS)),
    "webfarm_session_store": ("database", _choice(SESSION_STORES)),
    # The PHP session cookie and how long a session lives without activity
    # (seconds): one value on every web node, so that Linux and Windows nodes
    # share sessions.
    "webfarm_session_name": ("PHPSESSID", _session_name),
    "webfarm_session_lifetime": (1440, _session_lifetime),
    "webfarm_files_path": ("/srv/webfarm/files", _abs_path),
    "webfarm_nfs_export_path": ("/srv/webfarm/export", _abs_path),
    "webfarm_health_path": ("/health", _url_path),
    "webfarm_db_name": ("webfarm", _mysql_name),
    "webfarm_db_user": ("webfarm", _mysql_name),
    "webfarm_web_uid": (33, _id),
    "webfarm_web_gid": (33, _id),
    "webfarm_legacy_route_cookie": (False, _bool),
    "webfarm_nfs_v3": (False, _bool),
    "webfarm_nfs_v3_ports": (DEFAULT_NFS_V3_PORTS, _nfs_v3_ports),
    # Service ports: each service listens on it and the firewall opens it.
    "webfarm_http_port": (DEFAULT_PORTS["http"], _port),
    "webfarm_https_port": (DEFAULT_PORTS["https"], _port),
    "webfarm_db_port": (DEFAULT_PORTS["mysql"], _port),
    "webfarm_redis_port": (DEFAULT_PORTS["redis"], _port),
    "webfarm_balancer_admin_port": (DEFAULT_PORTS["balancer_admin"], _port),
    "webfarm_haproxy_peers_port": (DEFAULT_PORTS["haproxy_peers"], _port),
    # The floating address(es) and who shares them (keepalived and the
    # firewall's VRRP rule read both from here; vrrp_plan validates them).
    "webfarm_vip": ("", _vip),
    "webfarm_vrrp_group": ("", _vrrp_group_setting),
    "webfarm_vrrp_router_id_base": (51, lambda h, v, x: _int_in(h, v, x, 1, 255)),
    # How the applications use the database: read from the replicas (falling
    # back to the primary), and the connect timeout in seconds.
    "webfarm_db_use_replicas": (True, _bool),
    "webfarm_db_timeout": (3, lambda h, v, x: _int_in(h, v, x, 1, 60)),
    # Names the database primary instead of the groups (db_promote.yml and the
    # mysql role's live state set it for the rest of a run).
    "webfarm_db_primary": (None, _db_primary),
    # The node exporter's textfile collector: every role that publishes a
    # metric of its own (virtual address state, backup age, NFS probe,
    # PHP-FPM status) writes a .prom file there.
    "webfarm_metrics_textfile_dir": ("/var/lib/prometheus/node-exporter", _abs_path),
    # HTTP-01 challenge files (tls_cert_source: acme): tls_cert writes them
    # there on the port-80 hosts, stunnel's redirector serves them.
    "webfarm_acme_challenge_dir": ("/var/lib/webfarm/acme-challenge", _abs_path),
}

# Role variables that used to copy a farm value. Setting one would move a
# service without its firewall flow (or its clients), so the model refuses
# them and names the farm setting to use instead.
REPLACED_VARIABLES = {
    "mysql_port": "webfarm_db_port",
    "webfarm_app_db_port": "webfarm_db_port",
    "drupal_db_port": "webfarm_db_port",
    "web_windows_db_port": "webfarm_db_port",
    "redis_port": "webfarm_redis_port",
    "web_linux_redis_port": "webfarm_redis_port",
    "webfarm_app_redis_port": "webfarm_redis_port",
    "drupal_redis_port": "webfarm_redis_port",
    "web_windows_redis_port": "webfarm_redis_port",
    "haproxy_stats_port": "webfarm_balancer_admin_port",
    "apache_balancer_admin_port": "webfarm_balancer_admin_port",
    "haproxy_peers_port": "webfarm_haproxy_peers_port",
    "haproxy_http_port": "webfarm_http_port",
    "apache_balancer_http_port": "webfarm_http_port",
    "stunnel_http_port": "webfarm_http_port",
    "stunnel_balancer_port": "webfarm_http_port",
    "haproxy_https_port": "webfarm_https_port",
    "stunnel_https_port": "webfarm_https_port",
    "haproxy_health_path": "webfarm_health_path",
    "apache_balancer_health_path": "webfarm_health_path",
    "web_linux_health_path": "webfarm_health_path",
    "webfarm_app_health_path": "webfarm_health_path",
    "web_windows_health_path": "webfarm_health_path",
    "mysql_app_database": "webfarm_db_name",
    "webfarm_app_db_name": "webfarm_db_name",
    "web_windows_db_name": "webfarm_db_name",
    "drupal_db_name": "webfarm_db_name",
    "mysql_app_user": "webfarm_db_user",
    "webfarm_app_db_user": "webfarm_db_user",
    "web_windows_db_user": "webfarm_db_user",
    "drupal_db_user": "webfarm_db_user",
    "webfarm_app_db_timeout": "webfarm_db_timeout",
    "webfarm_app_use_replicas": "webfarm_db_use_replicas",
    "web_linux_session_name": "webfarm_session_name",
    "webfarm_app_session_name": "webfarm_session_name",
    "web_windows_session_name": "webfarm_session_name",
    "web_linux_session_lifetime": "webfarm_session_lifetime",
    "webfarm_app_session_lifetime": "webfarm_session_lifetime",
    "web_windows_session_lifetime": "webfarm_session_lifetime",
    "drupal_use_replicas": "webfarm_db_use_replicas",
    "keepalived_vip": "webfarm_vip",
    "firewall_vrrp_vip": "webfarm_vip",
    "keepalived_group": "webfarm_vrrp_group",
    "firewall_vrrp_group": "webfarm_vrrp_group",
    "keepalived_router_id_base": "webfarm_vrrp_router_id_base",
    "exporters_textfile_dir": "webfarm_metrics_textfile_dir",
    "tls_cert_acme_challenge_dir": "webfarm_acme_challenge_dir",
    "stunnel_acme_challenge_dir": "webfarm_acme_challenge_dir",
}


_REPLACED_SET = frozenset(REPLACED_VARIABLES)
_FARM_SET = frozenset(FARM_SETTINGS)


def _settings(names, hostvars):
    """Read and validate every farm setting once over ``names`` (the farm)."""
    out = {}
    seen = {}
    for name in names:
        hv = hostvars.get(name) or {}
        keys = hv.keys()  # one pass over the host's variable names, not one lookup per setting
        replaced = _REPLACED_SET.intersection(keys)
        if replaced:
            var = sorted(replaced)[0]
            raise _err(name, var, hv.get(var),
                       "nothing: it is replaced by the farm setting '%s' (set that once in group_vars of "
                       "'webfarm'; the service, its clients and the firewall all follow it)"
                       % REPLACED_VARIABLES[var])
        for var in _FARM_SET.intersection(keys):
            value = FARM_SETTINGS[var][1](name, var, hv.get(var))
            if var not in seen:
                seen[var] = (name, value)
            elif value != seen[var][1]:
                raise TopologyError(
                    "farm setting '%s' is %r on host '%s' but %r on host '%s'; it must have one value for the "
                    "whole farm: set it once in group_vars of 'webfarm'" % (var, seen[var][1], seen[var][0], value, name))
    for var, (default, check) in FARM_SETTINGS.items():
        out[var[len("webfarm_"):]] = seen[var][1] if var in seen else default
    return out


def farm_settings(topology, hostvars=None):
    """The farm-wide settings of the model, plus the farm-level cross-checks.

    The model (:func:`build_topology`) validates every setting once: type,
    choices, one value on every host that defines it. This adds the checks of
    a farm that cannot work with them (Redis sessions without a cache host,
    no active web node), run by preflight. ``hostvars`` is accepted for
    compatibility and unused. Returns ``{setting without the webfarm_ prefix: value}``.
    """
    _require_topology(topology)
    out = dict(topology["settings"])
    groups = topology["groups"]
    if out["session_store"] == "redis" and not groups["cache"]:
        raise _err(None, "webfarm_session_store", "redis",
                   "a 'cache' group with at least one Redis host when sessions are kept in Redis "
                   "(add the host to group 'cache', or use database sessions)")
    if groups["web"] and all(topology["hosts"][n]["backup"] for n in groups["web"]):
        raise _err(groups["web"][0], "webfarm_backup", True,
                   "at least one web node that is not a backup (every web node has webfarm_backup: true, "
                   "so the balancers would have no active member)")
    return out


def _group(groups, name):
    hosts = groups.get(name) or []
    return list(hosts)


_DIGITS_RE = re.compile(r"(\d+)")


def _natural_key(name):
    """Sort key that puts web2 before web10."""
    return [int(part) if part.isdigit() else part for part in _DIGITS_RE.split(name)]


def _address(host, hv):
    address = hv.get("webfarm_address")
    var = "webfarm_address"
    if address in (None, ""):
        address = hv.get("ansible_host")
        var = "webfarm_address (defaulting to ansible_host)"
    if address in (None, ""):
        raise _err(host, "webfarm_address", address,
                   "the host's private IP address (set webfarm_address or ansible_host)")
    try:
        return parse_ip(str(address))
    except ValueError:
        raise _err(host, var, address,
                   "an IP address; the farm's firewall, exports and trusted proxies need "
                   "addresses, so set webfarm_address to the host's private IP")


def _server_id(name, explicit):
    if explicit is not None:
        return _int_in(name, "webfarm_server_id", explicit, 1, SERVER_ID_MAX)
    # crc32 of the name alone: stable when other db hosts come and go.
    return zlib.crc32(name.encode("utf-8")) % SERVER_ID_MAX + 1


class _FarmVars(dict):
    """The farm hosts' variables, each read from ``hostvars`` once."""

    def __init__(self, hostvars, names):
        super().__init__((name, hostvars.get(name)) for name in names)


@_bulk
def build_topology(groups, hostvars):
    """Validate the inventory and return the farm's topology.

    ``groups`` maps group names to host lists (Ansible's ``groups``);
    ``hostvars`` maps host names to their variables (Ansible's ``hostvars``).
    Raises :class:`TopologyError` on the first bad input.
    """
    if not hasattr(groups, "get"):
        raise _err(None, "groups", type(groups).__name__, "Ansible's 'groups' mapping")
    members_of = {g: set(_group(groups, g)) for g in GROUPS}
    # 'web' and 'db' are the parents of their children even if the inventory
    # lists the children only.
    members_of["web"] |= members_of["web_linux"] | members_of["web_windows"]
    members_of["db"] |= members_of["db_primary"] | members_of["db_replicas"]
    in_farm = set()
    for g in GROUPS:
        in_farm.update(members_of[g])
    # Natural sort keys computed once per host; every group is sorted with them.
    keys = {n: _natural_key(n) for n in in_farm}
    order = sorted(in_farm, key=keys.__getitem__)
    topo = {g: sorted(members_of[g], key=keys.__getitem__) for g in GROUPS}
    # Each farm host's variables, looked up once: with Ansible's hostvars
    # every lookup computes that host's variables again (milliseconds each).
    hostvars = _FarmVars(hostvars, order)
    settings = _settings(order, hostvars)
    # Farm-level webfarm_db_primary names the primary instead of the groups
    # (db_promote.yml sets it for the rest of its run after a promotion).
    db_primary = settings["db_primary"]
    if db_primary is not None:
        if db_primary not in members_of["db"]:
            raise _err(None, "webfarm_db_primary", db_primary,
                       "one of the database hosts (%s) or empty" % ", ".join(topo["db"]))
        topo["db_primary"] = [db_primary]
        topo["db_replicas"] = [n for n in topo["db"] if n != db_primary]

    hosts = {}
    by_address = {}
    for name in order:
        hv = hostvars.get(name)
        if hv is None:
            raise _err(name, "hostvars", None, "an inventory host")
        address, version, as_int = _address(name, hv)
        if address in by_address:
            raise TopologyError(
                "hosts '%s' and '%s' both have address %s (webfarm_address/ansible_host); "
                "every farm host needs its own address" % (by_address[address], name, address))
        by_address[address] = name
        admin = hv.get("webfarm_admin_networks", []) or []
        if isinstance(admin, str) or not isinstance(admin, (list, tuple)):
            raise _err(name, "webfarm_admin_networks", admin,
                       "a list of CIDR networks such as ['192.0.2.0/24']")
        hosts[name] = {
            "name": name,
            "address": address,
            "cidr": "%s/%d" % (address, 32 if version == 4 else 128),
            "ip_sort": (version, as_int),
            "admin_networks": [validate_cidr(n, name) for n in admin],
            "os": "windows" if name in members_of["web_windows"] else "linux",
            "groups": [],  # filled below, one pass per group
            "extra_flows": hv.get("webfarm_extra_flows", []) or [],
        }
        if name not in members_of["web_windows"]:
            # SSH is allowed on the port Ansible reaches the host on.
            hosts[name]["ssh_port"] = _int_in(
                name, "ansible_port", hv.get("ansible_port", DEFAULT_PORTS["ssh"]), 1, 65535)

    for g in GROUPS:
        for name in topo[g]:
            hosts[name]["groups"].append(g)

    both = members_of["web_linux"] & members_of["web_windows"]
    if both:
        name = sorted(both)[0]
        raise _err(name, "groups", "web_linux and web_windows", "exactly one of the two")

    routes = {}
    for name in topo["web"]:
        hv = hostvars.get(name)
        h = hosts[name]
        h["route"] = route_id(name, hv.get("webfarm_route"), host=name)
        if h["route"] in routes:
            raise TopologyError(
                "hosts '%s' and '%s' have the same route '%s' (webfarm_route, or derived from "
                "the inventory name); routes must be unique: set webfarm_route on one of them"
                % (routes[h["route"]], name, h["route"]))
        routes[h["route"]] = name
        h["weight"] = validate_weight(hv.get("webfarm_weight", 100), name)
        h["backup"] = _bool(name, "webfarm_backup", hv.get("webfarm_backup", False))
        h["port"] = _int_in(name, "webfarm_port", hv.get("webfarm_port", DEFAULT_PORTS["http"]), 1, 65535)

    for name in topo["balancers"]:
        balancer = hostvars.get(name).get("webfarm_balancer", "haproxy")
        if balancer not in BALANCERS:
            raise _err(name, "webfarm_balancer", balancer, "one of %s" % ", ".join(BALANCERS))
        hosts[name]["balancer"] = balancer
        if balancer == "haproxy":
            # HAProxy peers (stick-table sync) on the farm's peers port.
            hosts[name]["peers_port"] = settings["haproxy_peers_port"]

    if topo["db"] and len(topo["db_primary"]) != 1:
        raise _err(None, "groups.db_primary", topo["db_primary"],
                   "exactly one host in group 'db_primary' when the farm has database hosts "
                   "(found %d)" % len(topo["db_primary"]))
    if set(topo["db_primary"]) & set(topo["db_replicas"]):
        name = sorted(set(topo["db_primary"]) & set(topo["db_replicas"]))[0]
        raise _err(name, "groups", "db_primary and db_replicas", "exactly one of the two")
    server_ids = {}
    for name in topo["db"]:
        sid = _server_id(name, hostvars.get(name).get("webfarm_server_id"))
        if sid in server_ids:
            raise TopologyError(
                "hosts '%s' and '%s' have the same MySQL server_id %d; set a distinct "
                "webfarm_server_id (1..%d) on one of them" % (server_ids[sid], name, sid, SERVER_ID_MAX))
        server_ids[sid] = name
        hosts[name]["server_id"] = sid

    if len(topo["nfs"]) > 1:
        raise _err(None, "groups.nfs", topo["nfs"], "at most one NFS server in group 'nfs'")

    nfs_v3 = settings["nfs_v3"] or bool(topo["web_windows"])
    return {
        "hosts": hosts,
        "groups": topo,
        "settings": settings,
        # The inventory's own groups, so that a model kept for the run can be
        # checked against the inventory it was computed from (current_model).
        "source": {"groups": _source_groups(groups), "db_primary": db_primary},
        "tls_terminator": settings["tls_terminator"],
        "nfs_v3": nfs_v3,
        "nfs_v3_ports": settings["nfs_v3_ports"] if nfs_v3 else {},
        "monitoring": monitoring_model(topo, hosts, hostvars.get(sorted(in_farm)[0]) if in_farm else {}),
    }


def _source_groups(groups):
    # The sizes of the model's groups: a run can add hosts to the inventory
    # (add_host, group_by) but never remove one, so equal sizes mean the same
    # groups. Sizes only: reading the names would render every entry of
    # Ansible's lazy ``groups`` on every call.
    return {g: len(groups.get(g) or ()) for g in GROUPS}


def current_model(model, groups, controller_vars):
    """``model`` if it still describes the inventory, else ``None``.

    A model kept for the run (preflight stores it on the controller as
    ``webfarm_model``) is current while the inventory groups have the same
    sizes (a run can add hosts, not remove them) and
    ``webfarm_db_primary``, the one farm setting a run changes (after a
    promotion), has the value it was computed with. Whoever changes that
    setting during a run also sets it on the controller (``controller_vars``,
    the controller's variables) and stores a new model; a changed primary
    without a new model makes this return ``None``. Cost: a few ``len()`` calls.
    """
    if not isinstance(model, dict) or "source" not in model or "hosts" not in model:
        return None
    source = model["source"]
    if source.get("groups") != _source_groups(groups):
        return None
    if "webfarm_db_primary" in controller_vars and \
            (controller_vars["webfarm_db_primary"] or None) != source.get("db_primary"):
        return None
    return model


# ------------------------------------------------------------ derivations --

def _require_topology(topology):
    if not isinstance(topology, dict) or "hosts" not in topology or "groups" not in topology:
        raise _err(None, "topology", type(topology).__name__,
                   "the result of groups | colo.webfarm.topology(hostvars)")


@_bulk
def members(topology, balancer="haproxy"):
    """Balancer members: the web nodes with address, port, route, weights."""
    _require_topology(topology)
    if balancer not in BALANCERS:
        raise _err(None, "webfarm_balancer", balancer, "one of %s" % ", ".join(BALANCERS))
    prefix = _COOKIE_PREFIX["haproxy" if balancer == "haproxy" else "apache"]
    out = []
    for name in topology["groups"]["web"]:
        h = topology["hosts"][name]
        out.append({
            "name": name,
            "address": h["address"],
            "port": h["port"],
            "route": h["route"],
            "weight": h["weight"],
            "lb_weight": balancer_weight(h["weight"], balancer, name),
            "backup": h["backup"],
            "cookie": prefix + h["route"],  # routes were validated by build_topology
            "os": h["os"],
        })
    return out


def route_map(topology):
    """``ADDRESS ROUTE`` lines for a RewriteMap (txt) on the web nodes."""
    _require_topology(topology)
    hosts = [topology["hosts"][n] for n in topology["groups"]["web"]]
    hosts.sort(key=lambda h: h["ip_sort"])
    return ["%s %s" % (h["address"], h["route"]) for h in hosts]


def server_ids(topology):
    _require_topology(topology)
    return {n: topology["hosts"][n]["server_id"] for n in topology["groups"]["db"]}


def addresses(topology, group):
    _require_topology(topology)
    if group not in topology["groups"]:
        raise _err(None, "group", group, "one of %s" % ", ".join(GROUPS))
    return [topology["hosts"][n]["address"] for n in topology["groups"][group]]


def app_settings(topology, host, use_replicas=None):
    """What an application on web node ``host`` needs to know of the farm.

    The one builder of the app configuration for the Linux reference app, the
    Windows nodes and Drupal: the database primary and replicas (address and
    port), names, timeout, the session store, cookie name, lifetime and Redis host, the health
    path, the node's route and the reverse proxies to trust. Secrets and
    OS-specific paths are added by each role. ``use_replicas`` overrides the
    farm's ``webfarm_db_use_replicas``.
    """
    _require_topology(topology)
    st = topology["settings"]
    hosts = topology["hosts"]
    if host not in hosts:
        raise _err(host, "inventory_hostname", host, "a host of the farm (in group web)")
    if use_replicas is None:
        use_replicas = st["db_use_replicas"]
    use_replicas = _bool(host, "use_replicas", use_replicas)
    port = st["db_port"]
    primary = addresses(topology, "db_primary")
    cache = addresses(topology, "cache")
    return {
        "node": host,
        "route": hosts[host].get("route", host),
        "health_path": st["health_path"],
        "db": {
            "host": primary[0] if primary else "",
            "port": port,
            "name": st["db_name"],
            "user": st["db_user"],
            "timeout": st["db_timeout"],
            "replicas": [{"host": a, "port": port} for a in addresses(topology, "db_replicas")] if use_replicas else [],
        },
        "session": {
            "store": st["session_store"],
            "name": st["session_name"],
            "lifetime": st["session_lifetime"],
            "redis_host": cache[0] if cache else "",
            "redis_port": st["redis_port"],
        },
        "proxies": {"balancers": addresses(topology, "balancers"), "edge": addresses(topology, "edge")},
    }


def _cidrs(topology, group_names):
    seen = {}
    for g in group_names:
        for n in topology["groups"][g]:
            seen.setdefault(topology["hosts"][n]["cidr"], None)
    return list(seen)


def _flow(name, port, sources, proto="tcp"):
    # ``sources`` lists are shared between flows, never mutated.
    return {"name": name, "proto": proto, "port": port, "sources": sources}


def _extra_flows(topology, host):
    out = []
    for i, f in enumerate(topology["hosts"][host]["extra_flows"]):
        var = "webfarm_extra_flows[%d]" % i
        if not isinstance(f, dict):
            raise _err(host, var, f, "a mapping with name, proto, port and sources")
        port = _int_in(host, var + ".port", f.get("port"), 1, 65535)
        proto = f.get("proto", "tcp")
        if proto not in ("tcp", "udp"):
            raise _err(host, var + ".proto", proto, "tcp or udp")
        sources = f.get("sources", list(ANYWHERE))
        if isinstance(sources, str) or not isinstance(sources, (list, tuple)):
            raise _err(host, var + ".sources", sources, "a list of CIDR networks or group names")
        cidrs = []
        for s in sources:
            if isinstance(s, str) and s in topology["groups"]:
                cidrs.extend(_cidrs(topology, [s]))
            else:
                cidrs.append(validate_cidr(s, host, var + ".sources"))
        out.append(_flow(str(f.get("name", "extra-%d" % port)), port, cidrs, proto))
    return out


@_bulk
def firewall_flows(topology, host=None):
    """For every farm host, the inbound flows it must accept.

    Returns ``{host: [{name, proto, port, sources}]}``; sources are CIDRs.
    With ``host``, only that host's list (``[]`` for a host outside the
    farm): what one host's firewall renders, at a cost that depends on that
    host's own flows, not on the size of the farm (a web node's flows name
    the balancers, the admin networks and the monitoring host; a database or
    NFS server's name every web node). The firewall role asks for its own
    host's list, so a run over N hosts costs O(N), not O(N) per host.
    """
    _require_topology(topology)
    ctx = _FlowContext(topology)
    if host is not None:
        return ctx.flows(host) if host in topology["hosts"] else []
    # build_topology inserts hosts in natural order
    return {name: ctx.flows(name) for name in topology["hosts"]}


class _FlowContext(object):
    """What the hosts' flows draw on, each part computed when first needed
    (the web nodes' CIDRs only for a host that accepts the web nodes)."""

    def __init__(self, topology):
        self.topology = topology
        self.hosts = topology["hosts"]
        st = topology.get("settings") or {}
        self.ports = dict(DEFAULT_PORTS)
        self.ports.update({k: st[v] for k, v in (("http", "http_port"), ("https", "https_port"),
                                                  ("mysql", "db_port"), ("redis", "redis_port"),
                                                  ("balancer_admin", "balancer_admin_port"))
                           if v in st})
        self.native_tls = topology.get("tls_terminator") == "haproxy" or not topology["groups"]["edge"]
        self._cidrs = {}
        self._peers = None

    def cidrs(self, *group_names):
        """The CIDRs of these groups' hosts, in group then topology order,
        each once (``sources`` lists are shared between flows, never mutated)."""
        if group_names not in self._cidrs:
            self._cidrs[group_names] = _cidrs(self.topology, list(group_names))
        return self._cidrs[group_names]

    def peers(self):
        if self._peers is None:
            self._peers = {q["name"]: q for q in haproxy_peers(self.topology)}
        return self._peers

    def flows(self, name):
        topology, p, hosts = self.topology, self.ports, self.hosts
        h = hosts[name]
        groups = h["groups"]
        admin = h["admin_networks"]
        mine = []
        if h["os"] == "linux":
            mine.append(_flow("ssh", h.get("ssh_port", p["ssh"]), admin))
        if "edge" in groups:
            mine.append(_flow("http", p["http"], _ANYWHERE_LIST))
            mine.append(_flow("https", p["https"], _ANYWHERE_LIST))
        if "balancers" in groups:
            if self.native_tls:
                mine.append(_flow("http", p["http"], _ANYWHERE_LIST))
                mine.append(_flow("https", p["https"], _ANYWHERE_LIST))
            else:
                mine.append(_flow("http", p["http"], self.cidrs("edge")))
            mine.append(_flow("balancer-admin", p["balancer_admin"], admin))
            peers = self.peers()
            if name in peers:
                mine.append(_flow("haproxy-peers", peers[name]["port"],
                                  [hosts[q]["cidr"] for q in peers if q != name]))
        if "web" in groups:
            mine.append(_flow("http", h["port"], self.cidrs("balancers")))
        if "db_primary" in groups:
            mine.append(_flow("mysql", p["mysql"], self.cidrs("web", "db_replicas")))
        if "db_replicas" in groups:
            mine.append(_flow("mysql", p["mysql"], self.cidrs("web", "db_primary")))
        if "nfs" in groups:
            web = self.cidrs("web")
            mine.append(_flow("nfs", p["nfs"], web))
            if topology.get("nfs_v3"):
                mine.append(_flow("rpcbind", p["rpcbind"], web))
                mine.append(_flow("rpcbind", p["rpcbind"], web, "udp"))
                for svc in sorted(topology["nfs_v3_ports"]):
                    for proto in ("tcp", "udp"):
                        mine.append(_flow(svc, topology["nfs_v3_ports"][svc], web, proto))
        if "cache" in groups:
            mine.append(_flow("redis", p["redis"], self.cidrs("web")))
        mine.extend(monitoring_flows(topology, name))
        mine.extend(_extra_flows(topology, name))
        return [f for f in mine if f["sources"]]


def haproxy_peers(topology):
    """The HAProxy balancers that synchronise stick tables (``peers`` section).

    ``[{name, address, port}]`` in topology order when the farm has two or
    more HAProxy balancers; an empty list otherwise (a single balancer has
    nobody to share its tables with). ``port`` is the farm's
    ``webfarm_haproxy_peers_port`` (default 10000).
    """
    _require_topology(topology)
    hosts = topology["hosts"]
    out = [{"name": n, "address": hosts[n]["address"], "port": hosts[n].get("peers_port", DEFAULT_PORTS["haproxy_peers"])}
           for n in topology["groups"]["balancers"] if hosts[n].get("balancer", "haproxy") == "haproxy"]
    return out if len(out) >= 2 else []


def nfs_exports(topology, path, options=None):
    """One export of ``path`` to each web node's address, sorted by address."""
    _require_topology(topology)
    if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == "":
        raise _err(None, "nfs_server_export_path", path, "an absolute path other than '/'")
    if options is None:
        options = ["rw", "sync", "no_subtree_check", "root_squash"]
    if isinstance(options, str) or not isinstance(options, (list, tuple)):
        raise _err(None, "options", options, "a list of export options")
    clients = sorted((topology["hosts"][n] for n in topology["groups"]["web"]), key=lambda h: h["ip_sort"])
    return [{"path": path, "client": h["address"], "options": list(options)} for h in clients]


# ------------------------------------------------------------------ vrrp --

VRRP_GROUPS = ("edge", "balancers")
VRRP_PEERS_MAX = 20
VRRP_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def vrrp_priority(index, count):
    """Priority of the peer at position ``index`` (0-based) of ``count`` peers.

    200 for the first peer, 10 less for each next one (200, 190, ... 10):
    distinct, inside VRRP's 1..254, and high enough that a backup's skew time
    ((256 - priority) / 256 s) stays small. The order is the topology's
    (natural sort of the inventory names), so it never depends on the order
    of the inventory file or on which hosts a play targets.
    """
    count = _int_in(None, "vrrp peer count", count, 2, VRRP_PEERS_MAX)
    index = _int_in(None, "vrrp peer index", index, 0, count - 1)
    return 200 - 10 * index


def vrrp_group(topology):
    """The group whose hosts share the virtual addresses.

    ``edge`` (stunnel terminates TLS there), or ``balancers`` when TLS
    terminates on HAProxy or the farm has no edge hosts.
    """
    _require_topology(topology)
    if topology.get("tls_terminator") == "haproxy" or not topology["groups"]["edge"]:
        return "balancers"
    return "edge"


def _vrrp_vips(vips, router_id_base):
    if isinstance(vips, str) or isinstance(vips, dict):
        vips = [vips]
    if not isinstance(vips, (list, tuple)) or not vips:
        raise _err(None, "webfarm_vip", vips,
                   "an address with its prefix such as 192.0.2.10/24, or a non-empty list of "
                   "such addresses or of mappings with name, address and virtual_router_id")
    out = []
    names, vrids, addrs = {}, {}, {}
    for i, vip in enumerate(vips):
        var = "webfarm_vip[%d]" % i
        if isinstance(vip, str):
            vip = {"address": vip}
        if not isinstance(vip, dict):
            raise _err(None, var, vip, "an address such as 192.0.2.10/24 or a mapping with name, "
                       "address and virtual_router_id")
        name = vip.get("name", "web" if i == 0 else "vip%d" % i)
        if not isinstance(name, str) or not VRRP_NAME_RE.match(name):
            raise _err(None, var + ".name", name, "1 to 32 characters from [A-Za-z0-9_-]")
        if name in names:
            raise _err(None, var + ".name", name, "a name no other virtual address has "
                       "(webfarm_vip[%d] has it)" % names[name])
        names[name] = i
        address = vip.get("address")
        try:
            if not isinstance(address, str) or "/" not in address:
                raise ValueError(address)
            iface = ipaddress.ip_interface(address)
        except ValueError:
            raise _err(None, var + ".address", address,
                       "an IPv4 address with its prefix length, such as 192.0.2.10/24")
        if iface.version != 4 or iface.network.prefixlen > 30 or iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            raise _err(None, var + ".address", address,
                       "an IPv4 host address with a prefix of /30 or shorter (VRRPv2 is IPv4 only; "
                       "not the network or broadcast address)")
        if str(iface.ip) in addrs:
            raise _err(None, var + ".address", address, "an address no other virtual address has "
                       "(webfarm_vip[%d] has it)" % addrs[str(iface.ip)])
        addrs[str(iface.ip)] = i
        vrid = vip.get("virtual_router_id", router_id_base + i)
        vrid = _int_in(None, var + ".virtual_router_id", vrid, 1, 255)
        if vrid in vrids:
            raise _err(None, var + ".virtual_router_id", vrid,
                       "a virtual_router_id (1..255) no other VRRP group on the network uses "
                       "(webfarm_vip[%d] uses %d)" % (vrids[vrid], vrid))
        vrids[vrid] = i
        out.append({"name": name, "address": str(iface.ip), "prefix": iface.network.prefixlen,
                    "cidr": str(iface.with_prefixlen), "network": str(iface.network),
                    "virtual_router_id": vrid})
    return out


def vrrp_plan(topology, vips=None, group=None, router_id_base=None):
    """Who shares which virtual address, with which priority and peers.

    ``vips`` is ``webfarm_vip``: one IPv4 address with its prefix
    (``192.0.2.10/24``, an instance named ``web``), or a list of such
    addresses or of mappings ``{name, address, virtual_router_id}``
    (virtual_router_id defaults to ``router_id_base`` + position).
    ``group`` is ``edge`` or ``balancers``; empty picks :func:`vrrp_group`.
    Each argument left out (None) is the model's farm setting:
    ``webfarm_vip``, ``webfarm_vrrp_group``, ``webfarm_vrrp_router_id_base``.

    Returns ``{group, instances, peers, hosts}``: ``instances`` the
    normalised virtual addresses; ``peers`` the group's hosts in topology
    order with ``name``, ``address`` and ``priority``; ``hosts`` maps each
    peer to its ``priority``, ``address`` (unicast source), ``unicast_peers``
    (the other peers' addresses) and ``flows`` (the inbound VRRP flow from
    the other peers, IP protocol 112, for the firewall).
    Raises on a peer list of fewer than two hosts, a virtual address outside
    a peer's subnet or equal to a farm host's address, and duplicate names,
    addresses or virtual_router_ids.
    """
    _require_topology(topology)
    settings = topology.get("settings") or {}
    if vips is None:
        vips = settings.get("vip", "")
    if group is None:
        group = settings.get("vrrp_group", "")
    if router_id_base is None:
        router_id_base = settings.get("vrrp_router_id_base", 51)
    if group == "":
        group = vrrp_group(topology)
    if group not in VRRP_GROUPS:
        raise _err(None, "webfarm_vrrp_group", group, "one of %s (or empty: automatic)" % ", ".join(VRRP_GROUPS))
    base = _int_in(None, "webfarm_vrrp_router_id_base", router_id_base, 1, 255)
    names = topology["groups"][group]
    if len(names) < 2:
        raise _err(None, "groups.%s (the VRRP peers)" % group, list(names),
                   "at least two hosts sharing the virtual address; with one there is nothing to fail "
                   "over to (add a peer, or set webfarm_vrrp_group)")
    if len(names) > VRRP_PEERS_MAX:
        raise _err(None, "groups.%s (the VRRP peers)" % group, "%d hosts" % len(names),
                   "at most %d peers" % VRRP_PEERS_MAX)
    instances = _vrrp_vips(vips, base)
    hosts = topology["hosts"]
    farm_addresses = {h["address"]: n for n, h in hosts.items()}
    for i, inst in enumerate(instances):
        if inst["address"] in farm_addresses:
            raise _err(None, "webfarm_vip[%d].address" % i, inst["cidr"],
                       "an address no farm host has (host '%s' has it as webfarm_address)"
                       % farm_addresses[inst["address"]])
        net = ipaddress.ip_network(inst["network"])
        for n in names:
            if ipaddress.ip_address(hosts[n]["address"]) not in net:
                raise _err(n, "webfarm_vip[%d].address" % i, inst["cidr"],
                           "an address in the subnet of every VRRP peer; peer '%s' has %s, outside %s"
                           % (n, hosts[n]["address"], inst["network"]))
    peers = [{"name": n, "address": hosts[n]["address"], "priority": vrrp_priority(i, len(names))}
             for i, n in enumerate(names)]
    plan_hosts = {}
    for p in peers:
        others = [q for q in peers if q["name"] != p["name"]]
        plan_hosts[p["name"]] = {
            "priority": p["priority"],
            "address": p["address"],
            "unicast_peers": [q["address"] for q in others],
            "flows": [_flow("vrrp", None, [hosts[q["name"]]["cidr"] for q in others], "vrrp")],
        }
    return {"group": group, "instances": instances, "peers": peers, "hosts": plan_hosts}


# ------------------------------------------------------------- monitoring --
# Self-contained: the optional 'monitoring' group (Prometheus, Alertmanager,
# blackbox exporter on one host) and the exporters it scrapes. A farm without
# a monitoring host gets no targets and no flows from here.

MONITORING_PORTS = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "blackbox": 9115,
    "node": 9100,
    "apache": 9117,
    "mysqld": 9104,
    "redis": 9121,
    "windows": 9182,
    # PHP-FPM's status listener on the web nodes (loopback only: the apache
    # exporter's status virtual host proxies to it; no flow)
    "fpm_status": 9181,
}
# Exporters and whether each is on by default when the farm has a monitoring
# host (farm variable webfarm_monitoring_exporters overrides any of them).
MONITORING_EXPORTERS = {
    "node": True,
    "haproxy": True,
    "apache": True,
    "mysqld": True,
    "redis": True,
    "keepalived": True,
    # textfile metrics of the Linux web nodes (node exporter): PHP-FPM's
    # status, and whether the NFS server answers from each web node
    "phpfpm": True,
    "nfs": True,
    "windows": False,
}
MONITORING_RECEIVERS = ("webhook", "email", "none")
_DURATION_RE = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_MONITORING_DURATIONS = ("monitoring_scrape_interval", "monitoring_evaluation_interval",
                         "monitoring_alert_for", "monitoring_retention", "monitoring_scrape_timeout")
_MONITORING_TIERS = ("monitoring", "edge", "balancers", "web", "db_primary", "db_replicas", "nfs", "cache")


def monitoring_model(topo, hosts, farm):
    """The monitoring part of the model: its host (or None) and the exporters on.

    ``topo`` maps groups to sorted hosts, ``hosts`` the host entries and
    ``farm`` the farm-level variables. At most one monitoring host;
    ``webfarm_monitoring_exporters`` is a mapping of exporter names to
    booleans (unknown names and non-booleans are errors).
    """
    names = topo.get("monitoring") or []
    if len(names) > 1:
        raise _err(None, "groups.monitoring", list(names),
                   "at most one monitoring host (Prometheus and Alertmanager run on one host; "
                   "found %d: keep one in group 'monitoring')" % len(names))
    if names and hosts[names[0]]["os"] != "linux":
        raise _err(names[0], "groups", "monitoring and web_windows", "a Linux monitoring host")
    given = (farm or {}).get("webfarm_monitoring_exporters", {}) or {}
    if not isinstance(given, dict):
        raise _err(None, "webfarm_monitoring_exporters", given,
                   "a mapping of exporter names (%s) to true or false" % ", ".join(MONITORING_EXPORTERS))
    exporters = dict(MONITORING_EXPORTERS)
    for key, value in given.items():
        if key not in MONITORING_EXPORTERS:
            raise _err(None, "webfarm_monitoring_exporters.%s" % key, value,
                       "one of the exporters %s" % ", ".join(MONITORING_EXPORTERS))
        exporters[key] = _bool(None, "webfarm_monitoring_exporters.%s" % key, value)
    host = names[0] if names else None
    if host is None:
        exporters = {k: False for k in exporters}
    return {"host": host, "exporters": exporters, "ports": dict(MONITORING_PORTS)}


def _monitoring(topology):
    _require_topology(topology)
    mon = topology.get("monitoring") or {}
    if not mon.get("host"):
        return None
    return mon


def monitoring_flows(topology, name):
    """The inbound flows of ``name`` that monitoring needs.

    Every exporter port accepts the monitoring host only; the monitoring host
    accepts Prometheus and Alertmanager from the admin networks (the blackbox
    exporter listens on loopback). Empty without a monitoring host.
    """
    mon = _monitoring(topology)
    if mon is None:
        return []
    hosts = topology["hosts"]
    h = hosts[name]
    groups = h["groups"]
    on = mon["exporters"]
    port = mon["ports"]
    src = [hosts[mon["host"]]["cidr"]]
    out = []
    if name == mon["host"]:
        out.append(_flow("prometheus", port["prometheus"], h["admin_networks"]))
        out.append(_flow("alertmanager", port["alertmanager"], h["admin_networks"]))
    if h["os"] == "linux" and on["node"]:
        out.append(_flow("node-exporter", port["node"], src))
    if "balancers" in groups and h.get("balancer") == "haproxy" and on["haproxy"]:
        out.append(_flow("haproxy-metrics", _setting_port(topology, "balancer_admin_port",
                                                          DEFAULT_PORTS["balancer_admin"]), src))
    if on["apache"] and (("balancers" in groups and h.get("balancer") == "apache") or "web_linux" in groups):
        out.append(_flow("apache-exporter", port["apache"], src))
    if "db" in groups and on["mysqld"]:
        out.append(_flow("mysqld-exporter", port["mysqld"], src))
    if "cache" in groups and on["redis"]:
        out.append(_flow("redis-exporter", port["redis"], src))
    if "web_windows" in groups and on["windows"]:
        out.append(_flow("windows-exporter", port["windows"], src))
    return out


def _setting_port(topology, name, default):
    """A farm port from the model's settings (``balancer_admin_port``, ...)."""
    return (topology.get("settings") or {}).get(name, default)


def _tier(h):
    for g in _MONITORING_TIERS:
        if g in h["groups"]:
            return g
    return "other"


# The scrape jobs in their fixed order, each with who it scrapes (a host's
# model entry): monitoring_targets and monitoring_host both read this.
_SCRAPED_BY = (
    ("node", lambda h: h["os"] == "linux"),
    ("haproxy", lambda h: "balancers" in h["groups"] and h.get("balancer") == "haproxy"),
    ("apache", lambda h: ("balancers" in h["groups"] and h.get("balancer") == "apache")
     or "web_linux" in h["groups"]),
    ("mysqld", lambda h: "db" in h["groups"]),
    ("redis", lambda h: "cache" in h["groups"]),
    ("windows", lambda h: "web_windows" in h["groups"]),
)


def _web_state(topology, on, h):
    """What a Linux web node publishes through the node exporter's textfile
    collector (PHP-FPM's status, whether each NFS server answers), or None."""
    if not (on["node"] and "web_linux" in h["groups"]):
        return None
    hosts = topology["hosts"]
    nfs = [{"name": n, "address": hosts[n]["address"], "port": DEFAULT_PORTS["nfs"]}
           for n in topology["groups"]["nfs"]] if on["nfs"] else []
    # the apache exporter's status virtual host proxies to FPM's status
    state = {"phpfpm": bool(on["phpfpm"] and on["apache"]), "nfs_servers": nfs}
    return state if state["phpfpm"] or state["nfs_servers"] else None


def monitoring_targets(topology):
    """What Prometheus scrapes and probes, derived from the model.

    Returns ``{enabled, host, address, ports, exporters, jobs, tls_endpoints, hosts}``:
    ``jobs`` is a list of ``{name, path, targets: [{target, host, tier}]}``
    (one job per exporter that is on and has hosts, in a fixed order);
    ``tls_endpoints`` the ``ADDRESS:443`` of the public TLS endpoints (the edge
    with stunnel, the balancers when HAProxy terminates TLS or there is no
    edge) for the blackbox exporter; ``hosts`` maps each scraped host to
    its job names (what the exporters role installs there); ``web_state`` maps
    each Linux web node that publishes textfile metrics to ``{phpfpm,
    nfs_servers: [{name, address, port}]}``. Without a monitoring host: enabled false
    and no jobs.
    """
    mon = _monitoring(topology)
    if mon is None:
        return {"enabled": False, "host": None, "address": None, "ports": dict(MONITORING_PORTS),
                "exporters": {k: False for k in MONITORING_EXPORTERS}, "jobs": [], "tls_endpoints": [],
                "hosts": {}, "web_state": {}}
    hosts = topology["hosts"]
    g = topology["groups"]
    on = mon["exporters"]
    port = mon["ports"]

    def target(name, p):
        h = hosts[name]
        address = h["address"] if ":" not in h["address"] else "[%s]" % h["address"]
        return {"target": "%s:%d" % (address, p), "host": name, "tier": _tier(h)}

    jobs = []

    # each job's hosts in the order of its source list; who is scraped is
    # _SCRAPED_BY, shared with monitoring_host; HAProxy's metrics are on its
    # stats listener
    job_port = dict(port, haproxy=_setting_port(topology, "balancer_admin_port", DEFAULT_PORTS["balancer_admin"]))
    sources = {"node": list(hosts), "haproxy": g["balancers"], "apache": list(hosts), "mysqld": g["db"],
               "redis": g["cache"], "windows": g["web_windows"]}
    for name, scraped in _SCRAPED_BY:
        names = [n for n in sources[name] if scraped(hosts[n])] if on[name] else []
        if names:
            jobs.append({"name": name, "path": "/metrics", "targets": [target(n, job_port[name]) for n in names]})
    native_tls = topology.get("tls_terminator") == "haproxy" or not g["edge"]
    front = g["balancers"] if native_tls else g["edge"]
    https = _setting_port(topology, "https_port", DEFAULT_PORTS["https"])
    tls = ["%s:%d" % (hosts[n]["address"], https) for n in front]
    by_host = {}
    for j in jobs:
        for x in j["targets"]:
            by_host.setdefault(x["host"], []).append(j["name"])
    # what the Linux web nodes publish through the node exporter's textfile
    # collector: PHP-FPM's status, and whether each NFS server answers
    web_state = {}
    for n in g["web_linux"]:
        state = _web_state(topology, on, hosts[n])
        if state is not None:
            web_state[n] = state
    return {"enabled": True, "host": mon["host"], "address": hosts[mon["host"]]["address"],
            "ports": dict(port), "exporters": dict(on), "jobs": jobs, "tls_endpoints": tls,
            "hosts": by_host, "web_state": web_state}


def monitoring_host(topology, name):
    """What the exporters role installs on ``name``: a part of
    :func:`monitoring_targets` computed from that host alone.

    Returns ``{enabled, jobs, web_state}``: ``jobs`` the names of the jobs
    that scrape ``name`` (``monitoring_targets(...).hosts[name]``, in the same
    order), ``web_state`` its textfile state (``monitoring_targets(...)
    .web_state[name]``) or ``None``. The cost does not grow with the farm:
    every host asks for its own part (the monitoring host alone needs the
    whole :func:`monitoring_targets`).
    """
    mon = _monitoring(topology)
    if mon is None or name not in topology["hosts"]:
        return {"enabled": mon is not None, "jobs": [], "web_state": None}
    h = topology["hosts"][name]
    on = mon["exporters"]
    return {"enabled": True, "jobs": [job for job, scraped in _SCRAPED_BY if on[job] and scraped(h)],
            "web_state": _web_state(topology, on, h)}


def farm_host(topology, name):
    """``name``'s entry in the model (address, cidr, groups, os, route, port,
    weight, ...), ``{}`` for a host outside the farm. One dict lookup: a
    template that reads ``model.hosts[inventory_hostname]`` makes Ansible
    wrap the whole ``hosts`` mapping first, at a cost that grows with the farm.
    """
    _require_topology(topology)
    return topology["hosts"].get(name) or {}


def _number(var, value):
    if isinstance(value, bool):
        raise _err(None, var, value, "a number (a threshold), such as 30 or 0.5")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if "." in value else int(value.strip())
        except ValueError:
            raise _err(None, var, value, "a number (a threshold), such as 30 or 0.5")
    if not isinstance(value, (int, float)) or value < 0 or value != value:
        raise _err(None, var, value, "a number (a threshold) of 0 or more, such as 30 or 0.5")
    return value


def monitoring_settings(values):
    """Validate the monitoring variables that are set; return them normalised.

    ``values`` maps variable names to values (the monitoring host's
    ``monitoring_*`` variables in preflight, the role's own in its check
    phase). ``monitoring_threshold_*`` must be numbers of 0 or more; the
    intervals, ``monitoring_alert_for`` and ``monitoring_retention`` Prometheus
    durations (``15s``, ``15d``); ``monitoring_receiver`` a mapping whose
    ``type`` is webhook (with an http(s) ``url``), email (with ``to``, ``from``
    and ``smarthost`` HOST:PORT) or none.
    """
    if not isinstance(values, dict):
        raise _err(None, "monitoring variables", type(values).__name__, "a mapping")
    out = {}
    for var in sorted(values):
        value = values[var]
        if var.startswith("monitoring_threshold_"):
            out[var] = _number(var, value)
        elif var in _MONITORING_DURATIONS:
            if not isinstance(value, str) or not _DURATION_RE.match(value):
                raise _err(None, var, value, "a Prometheus duration such as 15s, 5m or 15d")
            out[var] = value
        elif var == "monitoring_receiver":
            out[var] = _receiver(value)
        else:
            out[var] = value
    return out


def _receiver(value):
    var = "monitoring_receiver"
    if not isinstance(value, dict):
        raise _err(None, var, value, "a mapping with 'type' (%s)" % ", ".join(MONITORING_RECEIVERS))
    kind = value.get("type")
    if kind not in MONITORING_RECEIVERS:
        raise _err(None, var + ".type", kind, "one of %s" % ", ".join(MONITORING_RECEIVERS))
    if kind == "webhook":
        url = value.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise _err(None, var + ".url", url, "an http:// or https:// URL for the webhook receiver")
    if kind == "email":
        for key in ("to", "from"):
            if not isinstance(value.get(key), str) or "@" not in value.get(key):
                raise _err(None, var + "." + key, value.get(key), "an e-mail address")
        smarthost = value.get("smarthost")
        if not isinstance(smarthost, str) or not re.match(r"^[^\s:]+:[0-9]{1,5}$", smarthost):
            raise _err(None, var + ".smarthost", smarthost, "HOST:PORT of the SMTP server, such as mail.example.com:587")
    return dict(value)
