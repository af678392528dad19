"""Controller-side tests of the web_windows role (no Windows host needed).

The role's controller-only entry points run through ansible-playbook against
a generated inventory: ``render`` writes php.ini, web.config, config.php and
the FastCGI script for every Windows node; ``validate`` must reject bad input
with a message that names host and variable, without contacting the host
(the Windows hosts use the winrm connection, which would fail here).

php.ini and config.php are parsed by a real PHP: ``php`` on PATH, or the
command in WEBFARM_PHP (for example ``docker exec -i php-box php`` with /tmp
shared); without one those tests are skipped, saying so. The FastCGI script
is parsed with ``pwsh`` when present (not installable from Debian's
bookworm archive or PyPI; see roles/web_windows/README.md).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
PLAYBOOK = os.path.join(HERE, "render.yml")
PHP_VERSION = "8.3.14"


PHP_REASON = ("no PHP to parse php.ini/config.php with: install php-cli (Debian: apt-get install -y php8.2-cli) "
              "or set WEBFARM_PHP to a php command that sees /tmp")

# Windows nodes of the rendered farm: one per session store (the farm's
# webfarm_session_store is one value; the role variable renders the others), the legacy
# route cookie on two of them, an explicit webfarm_route and port on win2.
WINDOWS = {
    "win1.example.com": {"webfarm_address": "10.9.0.35"},
    "win2": {"webfarm_address": "10.9.0.36", "webfarm_route": "w2-route", "webfarm_port": 8080,
             "web_windows_session_store": "redis", "webfarm_redis_password": "r3dis&pw'x"},
    "win3": {"webfarm_address": "10.9.0.37", "web_windows_session_store": "files",
             "web_windows_legacy_route_cookie": False,
             "webfarm_extra_flows": [{"name": "mgmt", "proto": "tcp", "port": 5986,
                                      "sources": ["192.0.2.0/24", "172.16.0.0/12", "198.51.100.7/32"]},
                                     {"name": "any", "proto": "udp", "port": 9, "sources": ["0.0.0.0/0"]}]},
    # Drupal on IIS: the site's document root is Drupal's web root
    "win4": {"webfarm_address": "10.9.0.38", "web_windows_docroot": "C:\\inetpub\\drupal\\web",
             "web_windows_trusted_proxies": ["10.9.0.25"]},
}
ROUTES = {"win1.example.com": "win1-example-com", "win2": "w2-route", "win3": "win3", "win4": "win4"}
BALANCERS = ["10.9.0.20", "10.9.0.21"]


def _inventory(farm_vars, windows):
    """A farm with Apache balancers, one Linux web node and Windows nodes."""
    for hv in windows.values():
        hv.setdefault("ansible_connection", "winrm")   # fails here: proves nothing connects
    return {
        "webfarm": {
            "vars": dict({
                "webfarm_admin_networks": ["192.0.2.0/24"],
                "webfarm_db_password": "s3cr'et\\$x",
                "webfarm_session_store": "database",
                "webfarm_legacy_route_cookie": True,
            }, **farm_vars),
            "children": {
                "balancers": {"hosts": {"lb1": {"webfarm_address": "10.9.0.20", "webfarm_balancer": "apache"},
                                        "lb2": {"webfarm_address": "10.9.0.21", "webfarm_balancer": "apache"}}},
                "web": {"children": {
                    "web_linux": {"hosts": {"web1": {"webfarm_address": "10.9.0.31"}}},
                    "web_windows": {"hosts": windows},
                }},
                "db": {"children": {
                    "db_primary": {"hosts": {"db1": {"webfarm_address": "10.9.0.41"}}},
                    "db_replicas": {"hosts": {"db2": {"webfarm_address": "10.9.0.42"}}},
                }},
                "nfs": {"hosts": {"nfs1": {"webfarm_address": "10.9.0.51"}}},
                "cache": {"hosts": {"cache1": {"webfarm_address": "10.9.0.61"}}},
            },
        }
    }


def _run(tmp, entry, windows, farm_vars=None, edit=None):
    """ansible-playbook with the json callback; returns (rc, {host: [results]}, raw).
    ``edit`` changes the generated inventory in place first."""
    zip_path = tmp / ("php-%s-nts-Win32-vs16-x64.zip" % PHP_VERSION)
    zip_path.write_bytes(b"PK")
    msi = tmp / "rewrite_amd64_en-US.msi"
    msi.write_bytes(b"msi")
    dll = tmp / "php_redis.dll"
    dll.write_bytes(b"dll")
    base = {
        "web_windows_php_zip": str(zip_path),
        "web_windows_php_version": PHP_VERSION,
        "web_windows_urlrewrite_msi": str(msi),
        "web_windows_php_redis_dll": str(dll),
        "web_windows_render_dir": str(tmp / "render"),
        "web_windows_test_entry": entry,
        "web_windows_php_upload_max_filesize": "96M",
        "web_windows_php_post_max_size": "100M",
        "web_windows_php_timezone": "Europe/Berlin",
    }
    base.update(farm_vars or {})
    inventory = _inventory(base, windows)
    if edit:
        edit(inventory)
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_FORKS="4",
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), PLAYBOOK],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    try:
        data = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]
    except ValueError:
        raise AssertionError("no JSON from ansible-playbook:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    per_host = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                per_host.setdefault(host, []).append(dict(res, task=task["task"]["name"]))
    return proc.returncode, per_host, proc.stdout + proc.stderr


def _php():
    if os.environ.get("WEBFARM_PHP"):
        return shlex.split(os.environ["WEBFARM_PHP"])
    php = shutil.which("php")
    return [php] if php else None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render every Windows node's files once (render includes validate)."""
    tmp = tmp_path_factory.mktemp("web_windows")
    rc, per_host, raw = _run(tmp, "render", {h: dict(v) for h, v in WINDOWS.items()})
    assert rc == 0, raw[-5000:]
    for host in WINDOWS:
        assert not any(r.get("unreachable") for r in per_host[host]), raw[-3000:]
    return tmp / "render"


# --------------------------------------------------------------- web.config --

@pytest.mark.parametrize("host", ["win1.example.com", "win2"])
def test_web_config_is_xml_with_rewrite_and_this_nodes_cookie(rendered, host):
    route = ROUTES[host]
    text = (rendered / host / "web.config").read_text()
    assert "Ansible managed" in text[:200]
    root = ET.fromstring(text)
    rules = root.findall("./system.webServer/rewrite/rules/rule")
    names = [r.get("name") for r in rules]
    front = rules[names.index("Short URLs to the front controller")]
    assert front.find("action").get("type") == "Rewrite"
    assert front.find("action").get("url") == "index.php"
    conds = {(c.get("input"), c.get("matchType"), c.get("negate")) for c in front.findall("./conditions/add")}
    assert ("{REQUEST_FILENAME}", "IsFile", "true") in conds
    assert ("{REQUEST_FILENAME}", "IsDirectory", "true") in conds
    protect = rules[names.index("Protect files and directories from prying eyes")]
    assert names.index("Protect files and directories from prying eyes") < names.index("Short URLs to the front controller")
    pattern = protect.find("match").get("url")
    assert re.search(pattern, "core/modules/node/node.module")
    assert re.search(pattern, "composer.json")
    assert not re.search(pattern, "index.php")
    assert protect.find("action").get("statusCode") == "403"
    out_rules = root.findall("./system.webServer/rewrite/outboundRules/rule")
    assert len(out_rules) == 1
    assert out_rules[0].find("match").get("serverVariable") == "RESPONSE_Set_Cookie"
    assert out_rules[0].find("action").get("type") == "Rewrite"
    assert out_rules[0].find("action").get("value") == "BALANCEID=balancer.%s; path=/" % route
    # No other node's route in this node's file.
    assert not any(r in text for h, r in ROUTES.items() if h != host and r not in route)
    limit = root.find("./system.webServer/security/requestFiltering/requestLimits")
    assert limit.get("maxAllowedContentLength") == str(100 * 1024 * 1024)


def test_route_cookie_parses_back_to_the_balancers_route(rendered):
    """Apache's rule (route = cookie value after the first '.') gives the route
    colo.webfarm.route_id computes for the balancers."""
    import sys
    sys.path.insert(0, os.path.join(REPO, ".collections"))
    from ansible_collections.colo.webfarm.plugins.module_utils import topology as t
    for host, explicit in (("win1.example.com", None), ("win2", "w2-route")):
        value = ET.fromstring((rendered / host / "web.config").read_text()) \
            .find("./system.webServer/rewrite/outboundRules/rule/action").get("value")
        cookie = value.split(";")[0].split("=", 1)[1]
        assert t.cookie_route(cookie, "apache_legacy") == t.route_id(host, explicit)


def test_web_config_without_legacy_cookie_has_no_outbound_rule(rendered):
    root = ET.fromstring((rendered / "win3" / "web.config").read_text())
    assert root.find("./system.webServer/rewrite/outboundRules") is None
    assert root.find("./system.webServer/rewrite/rules/rule") is not None
    assert "BALANCEID" not in (rendered / "win3" / "web.config").read_text()


# ----------------------------------------------------------- firewall rules --

def test_firewall_rules_follow_the_flows_in_windows_address_format(rendered):
    win2 = json.loads((rendered / "win2" / "firewall.json").read_text())
    # HTTP on this node's port from the two balancers, nothing else
    assert win2 == [{"name": "colo.webfarm http tcp/8080", "proto": "tcp", "port": "8080",
                     "remoteip": "10.9.0.20,10.9.0.21"}]
    win3 = {r["name"]: r for r in json.loads((rendered / "win3" / "firewall.json").read_text())}
    assert win3["colo.webfarm http tcp/80"]["remoteip"] == "10.9.0.20,10.9.0.21"
    assert win3["colo.webfarm mgmt tcp/5986"]["remoteip"] == \
        "192.0.2.0/255.255.255.0,172.16.0.0/255.240.0.0,198.51.100.7"
    assert win3["colo.webfarm any udp/9"]["remoteip"] == "any"
    # no SSH rule on Windows nodes (firewall_flows gives ssh to Linux hosts only)
    assert not any("ssh" in n for n in win3)


# ------------------------------------------------------------------ php.ini --

def _php_ini_values(ini, names):
    php = _php()
    if not php:
        pytest.skip(PHP_REASON)
    # ini_get: the directive exists and is in force; get_cfg_var: what the
    # file says (the CLI forces some values, such as max_execution_time=0).
    code = ("$n = array_slice($argv, 1); echo json_encode(array_combine($n, array_map("
            "fn ($k) => ['ini' => ini_get($k), 'cfg' => get_cfg_var($k)], $n)));")
    # extension_dir is a Windows path: point PHP at its own so opcache loads
    # (the Windows-only extensions just warn).
    ext_dir = subprocess.run(php + ["-n", "-r", "echo ini_get('extension_dir');"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    # cwd: PHP on Linux takes the Windows error_log path as a relative file name
    proc = subprocess.run(php + ["-c", str(ini), "-d", "extension_dir=" + ext_dir, "-r", code, "--"] + names,
                          capture_output=True, text=True, timeout=60, cwd=os.path.dirname(str(ini)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "syntax error" not in out.lower() and "parse error" not in out.lower(), out
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, v in data.items():
        assert v["cfg"] is not False, "%s is not set in %s" % (name, ini)
    return {name: v["ini"] for name, v in data.items()}


def test_php_ini_parses_and_sets_the_farm_settings(rendered):
    ini = rendered / "win2" / "php.ini"
    values = _php_ini_values(ini, [
        "upload_max_filesize", "post_max_size", "date.timezone", "memory_limit",
        "session.save_path", "session.use_strict_mode", "cgi.fix_pathinfo", "cgi.force_redirect",
        "fastcgi.impersonate", "display_errors", "expose_php", "error_log", "upload_tmp_dir",
        "opcache.enable", "opcache.memory_consumption", "opcache.max_accelerated_files",
        "opcache.validate_timestamps", "opcache.revalidate_freq"])
    assert values["upload_max_filesize"] == "96M"
    assert values["post_max_size"] == "100M"
    assert values["date.timezone"] == "Europe/Berlin"
    assert values["memory_limit"] == "256M"
    # The CLI forces max_execution_time=0 at startup: read the file's value
    # with PHP's own ini parser instead.
    php = _php()
    sections = json.loads(subprocess.run(
        php + ["-n", "-r", "echo json_encode(parse_ini_file($argv[1], true));", str(ini)],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert sections["PHP"]["max_execution_time"] == "60"
    assert sections["Session"]["session.save_handler"] == "redis"
    assert sections["opcache"]["opcache.enable"] == "1"
    assert values["session.save_path"] == "tcp://10.9.0.61:6379?auth=r3dis%26pw%27x&timeout=2"
    assert values["session.use_strict_mode"] == "1"
    # cgi.* and fastcgi.* exist only in the CGI SAPI (php-cgi.exe under IIS).
    assert sections["PHP"]["cgi.fix_pathinfo"] == "1"
    assert sections["PHP"]["cgi.force_redirect"] == "0"
    assert sections["PHP"]["fastcgi.impersonate"] == "1"
    assert values["display_errors"] in ("", "0")
    assert values["expose_php"] in ("", "0")
    assert values["error_log"] == "C:\\inetpub\\webfarm\\logs\\php_errors.log"
    assert values["upload_tmp_dir"] == "C:\\inetpub\\webfarm\\tmp"
    # opcache.* only exist when opcache loaded from zend_extension = opcache
    assert values["opcache.enable"] == "1"
    assert values["opcache.memory_consumption"] == "128"
    assert values["opcache.max_accelerated_files"] == "10000"
    assert values["opcache.validate_timestamps"] == "1"
    assert values["opcache.revalidate_freq"] == "2"
    raw = ini.read_text()
    # session.save_handler = redis is only accepted once phpredis is loaded:
    # check the line itself, and that the redis extension is loaded.
    assert re.search(r"(?m)^session\.save_handler = redis$", raw)
    exts = re.findall(r"(?m)^extension = (\S+)$", raw)
    assert set(exts) >= {"pdo_mysql", "mysqli", "gd", "mbstring", "curl", "openssl", "fileinfo", "intl", "redis"}
    assert re.search(r"(?m)^zend_extension = opcache$", raw)
    assert "extension_dir = 'C:\\php\\%s\\ext'" % PHP_VERSION in raw


def test_php_ini_database_store_keeps_php_sessions_local(rendered):
    values = _php_ini_values(rendered / "win1.example.com" / "php.ini", ["session.save_handler", "session.save_path"])
    assert values["session.save_handler"] == "files"
    assert values["session.save_path"] == "C:\\inetpub\\webfarm\\sessions"
    assert "extension = redis" not in (rendered / "win1.example.com" / "php.ini").read_text()


def test_php_ini_files_store_uses_the_nfs_share(rendered):
    values = _php_ini_values(rendered / "win3" / "php.ini", ["session.save_handler", "session.save_path"])
    assert values["session.save_handler"] == "files"
    assert values["session.save_path"] == "\\\\10.9.0.51\\srv\\webfarm\\export\\sessions"


# --------------------------------------------------------------- config.php --

def _config(rendered, host):
    php = _php()
    if not php:
        pytest.skip(PHP_REASON)
    proc = subprocess.run(php + ["-n", "-r", "echo json_encode(require $argv[1]);", str(rendered / host / "config.php")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_app_config_is_php_in_the_apps_format(rendered):
    text = (rendered / "win2" / "config.php").read_text()
    linux = os.path.join(REPO, "roles", "webfarm_app", "templates", "var", "www", "webfarm", "config", "config.php.j2")
    if os.path.exists(linux):
        # the same wrapper as the Linux role's config.php (JSON in a nowdoc)
        assert "return json_decode(<<<'JSON'" in open(linux).read()
        assert "return json_decode(<<<'JSON'" in text
    c = _config(rendered, "win2")
    assert c["node"] == "win2" and c["route"] == "w2-route"
    assert c["health_path"] == "/health"
    assert c["files_path"] == "\\\\10.9.0.51\\srv\\webfarm\\export"
    assert c["db"]["host"] == "10.9.0.41" and c["db"]["port"] == 3306
    assert c["db"]["password"] == "s3cr'et\\$x"      # quote, backslash and $ survive
    assert c["db"]["replicas"] == [{"host": "10.9.0.42", "port": 3306}]
    assert c["session"] == {"store": "redis", "name": "PHPSESSID", "lifetime": 1440,
                            "save_path": "tcp://10.9.0.61:6379?auth=r3dis%26pw%27x&timeout=2"}
    c1 = _config(rendered, "win1.example.com")
    assert c1["route"] == "win1-example-com" and c1["session"]["store"] == "database"
    c3 = _config(rendered, "win3")
    assert c3["session"]["save_path"] == "\\\\10.9.0.51\\srv\\webfarm\\export\\sessions"


def test_app_config_has_every_key_the_app_reads(rendered):
    src = os.path.join(REPO, "roles", "webfarm_app", "files", "app", "src", "App.php")
    if not os.path.exists(src):
        pytest.skip("roles/webfarm_app/files/app/src/App.php is not there yet")
    app = open(src).read()
    c = _config(rendered, "win2")
    keys = set(re.findall(r"\$this->cfg\['(\w+)'\]", app))
    assert keys
    assert keys <= set(c), keys - set(c)
    for key in set(re.findall(r"\$s\['(\w+)'\]", app)):
        assert key in c["session"], key
    for key in set(re.findall(r"\$db\['(\w+)'\]", app)) - {"replicas"}:
        assert key in c["db"], key


# ------------------------------------------------------- FastCGI PowerShell --

def test_fastcgi_script_parses_with_pwsh(rendered):
    pwsh = shutil.which("pwsh")
    if not pwsh:
        pytest.skip("pwsh (PowerShell 7) is not installed: not packaged in Debian bookworm nor on PyPI/npm "
                    "without a download from outside the registries")
    script = rendered / "win2" / "Set-WebfarmFastCgi.ps1"
    code = ("$e=$null; [System.Management.Automation.Language.Parser]::ParseFile('%s',[ref]$null,[ref]$e)"
            " | Out-Null; if ($e.Count) { $e | %% { $_.ToString() }; exit 1 }" % script)
    proc = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-Command", code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _assert_balanced(text, where):
    """Delimiters balance outside PowerShell strings and comments."""
    stripped = re.sub(r"<#.*?#>", "", text, flags=re.S)
    stripped = re.sub(r"(?m)#.*$", "", stripped)
    stripped = re.sub(r"'[^']*'", "''", stripped)
    stripped = re.sub(r'"(?:`.|[^"`])*"', '""', stripped)
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for n, ch in enumerate(stripped):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack[-1] == pairs[ch], "%s: unbalanced %r near %r" % (where, ch, stripped[max(0, n - 60):n])
            stack.pop()
    assert not stack, "%s: unclosed %s" % (where, "".join(stack))


def test_fastcgi_script_structure(rendered):
    """Without pwsh: delimiters balance, and the script keeps its contract
    with win_powershell (changed only on change, nothing written in check mode)."""
    text = (rendered / "win2" / "Set-WebfarmFastCgi.ps1").read_text()
    _assert_balanced(text, "Set-WebfarmFastCgi.ps1")
    assert "[CmdletBinding(SupportsShouldProcess = $true)]" in text
    assert "$Ansible.Changed = $changes.Count -gt 0" in text
    assert re.search(r"if \(\$changes\.Count -gt 0 -and \$PSCmdlet\.ShouldProcess\(", text)
    assert text.count("$manager.CommitChanges()") == 1


def _inline_scripts():
    """Every win_powershell script: in the role, the molecule scenario and
    the drupal role's Windows entry point."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            mod = node.get("ansible.windows.win_powershell")
            if isinstance(mod, dict) and "script" in mod:
                found.append(("%s: %s" % (path, node.get("name")), mod["script"]))
            for v in node.values():
                walk(v, path)
        elif isinstance(node, list):
            for v in node:
                walk(v, path)

    for base in ("roles/web_windows/tasks", "roles/web_windows/handlers", "molecule/web_windows", "roles/drupal/tasks"):
        for name in sorted(os.listdir(os.path.join(REPO, base))):
            if name.endswith(".yml"):
                walk(yaml.safe_load(open(os.path.join(REPO, base, name))), os.path.join(base, name))
    return found


def test_inline_powershell_scripts_are_balanced_and_report_changes():
    scripts = _inline_scripts()
    assert len(scripts) >= 9
    assert any("roles/drupal/tasks/windows.yml" in where for where, _ in scripts)
    for where, script in scripts:
        _assert_balanced(script, where)
        # win_powershell reports changed unless the script says otherwise
        assert "$Ansible.Changed" in script or "Recycle()" in script, where
        if "ShouldProcess" in script:
            assert "SupportsShouldProcess" in script, where


# ------------------------------------------ client address and scheme (IIS) --

CLIENT_RULES = ["webfarm scheme from a trusted proxy", "webfarm forwarded headers only from a trusted proxy",
                "webfarm client address from a trusted proxy"]


def _rules(rendered, host):
    root = ET.fromstring((rendered / host / "web.config").read_text())
    return root.findall("./system.webServer/rewrite/rules/rule")


def _apply_client_rules(rules, server):
    """Evaluate the client-address rules the way URL Rewrite does (in order,
    MatchAll conditions, {C:1} = the last condition's first group), with
    Python's re for the ECMAScript patterns (the constructs used are the same)."""
    server = dict(server)
    for rule in rules:
        if rule.get("name") not in CLIENT_RULES:
            continue
        assert rule.find("match").get("url") == ".*"
        assert rule.find("action").get("type") == "None"
        conds = rule.findall("./conditions/add")
        assert rule.find("conditions").get("logicalGrouping") == "MatchAll"
        captures, ok = (), True
        for c in conds:
            value = server.get(c.get("input").strip("{}"), "")
            m = re.search(c.get("pattern"), value)
            hit = (m is None) if c.get("negate") == "true" else (m is not None)
            if not hit:
                ok = False
                break
            if m is not None:
                captures = m.groups()
        if not ok:
            continue
        for s in rule.findall("./serverVariables/set"):
            server[s.get("name")] = re.sub(r"\{C:(\d)\}", lambda g: captures[int(g.group(1)) - 1], s.get("value"))
    return server


def test_client_address_rules_come_first_and_trust_only_the_balancers(rendered):
    for host in ("win1.example.com", "win2", "win3"):
        rules = _rules(rendered, host)
        names = [r.get("name") for r in rules]
        assert names[:3] == CLIENT_RULES, names
        # the scheme rule reads REMOTE_ADDR before the address rule replaces it
        for r in rules[:3]:
            trusted = r.find("./conditions/add[@input='{REMOTE_ADDR}']").get("pattern")
            assert trusted == r"^(10\.9\.0\.20|10\.9\.0\.21)$", trusted
        sets = {s.get("name") for r in rules[:3] for s in r.findall("./serverVariables/set")}
        role_vars = yaml.safe_load(open(os.path.join(REPO, "roles", "web_windows", "vars", "main.yml")))
        # every variable the rules set is one the script allows in applicationHost.config
        assert sets == set(role_vars["__web_windows_rewrite_server_variables"])
    # win4 also trusts its extra proxy
    trusted = _rules(rendered, "win4")[0].find("./conditions/add[@input='{REMOTE_ADDR}']").get("pattern")
    assert trusted == r"^(10\.9\.0\.20|10\.9\.0\.21|10\.9\.0\.25)$"


@pytest.mark.parametrize("peer, xff, xfp, addr, https, kept_xff", [
    # from a balancer: the client it saw (HAProxy appends it) and the scheme
    ("10.9.0.20", "203.0.113.9", "https", "203.0.113.9", "on", "203.0.113.9"),
    ("10.9.0.21", "203.0.113.9", "http", "203.0.113.9", "off", "203.0.113.9"),
    # a client's own forged entries come before the balancer's: the right-most wins
    ("10.9.0.20", "6.6.6.6, 7.7.7.7, 203.0.113.9", "https", "203.0.113.9", "on", None),
    # trusted proxies at the end are skipped (mod_remoteip's walk from the right)
    ("10.9.0.20", "203.0.113.9, 10.9.0.21", "", "203.0.113.9", "off", None),
    ("10.9.0.20", "2001:db8::7", "", "2001:db8::7", "off", None),
    # not an address: REMOTE_ADDR stays the balancer's
    ("10.9.0.20", "<script>", "", "10.9.0.20", "off", None),
    ("10.9.0.20", "", "https", "10.9.0.20", "on", None),
    # anyone else: the headers are dropped and nothing changes
    ("198.51.100.4", "203.0.113.9", "https", "198.51.100.4", "off", ""),
    # a prefix of a balancer's address is not a balancer
    ("10.9.0.201", "203.0.113.9", "https", "10.9.0.201", "off", ""),
    ("110.9.0.20", "203.0.113.9", "https", "110.9.0.20", "off", ""),
])
def test_client_address_rules_behave_like_mod_remoteip(rendered, peer, xff, xfp, addr, https, kept_xff):
    server = _apply_client_rules(_rules(rendered, "win2"), {
        "REMOTE_ADDR": peer, "REMOTE_HOST": peer, "HTTPS": "off",
        "HTTP_X_FORWARDED_FOR": xff, "HTTP_X_FORWARDED_PROTO": xfp})
    assert server["REMOTE_ADDR"] == addr and server["REMOTE_HOST"] == addr
    assert server["HTTPS"] == https
    if kept_xff is not None:
        assert server["HTTP_X_FORWARDED_FOR"] == kept_xff
    if kept_xff == "":
        assert server["HTTP_X_FORWARDED_PROTO"] == ""


def test_health_path_reaches_the_reference_app_under_a_drupal_docroot(rendered):
    rules = _rules(rendered, "win4")
    names = [r.get("name") for r in rules]
    health = rules[names.index("webfarm health to the reference app")]
    assert names.index("webfarm health to the reference app") < names.index("Short URLs to the front controller")
    assert health.get("stopProcessing") == "true"
    assert health.find("action").get("type") == "Rewrite"
    assert health.find("action").get("url") == "webfarm-app/index.php"
    pattern = health.find("match").get("url")
    for url in ("health", "health/", "health/deep"):
        assert re.search(pattern, url), url
    for url in ("healthz", "node/health", "health/deeper", "index.php"):
        assert not re.search(pattern, url), url
    # the reference app's own document root needs no such rule
    assert "webfarm health to the reference app" not in [r.get("name") for r in _rules(rendered, "win1.example.com")]


def test_client_address_script_structure(rendered):
    text = (rendered / "win2" / "Set-WebfarmClientAddress.ps1").read_text()
    _assert_balanced(text, "Set-WebfarmClientAddress.ps1")
    assert "[CmdletBinding(SupportsShouldProcess = $true)]" in text
    assert "$Ansible.Changed = $changes.Count -gt 0" in text
    assert re.search(r"if \(\$changes\.Count -gt 0 -and \$PSCmdlet\.ShouldProcess\(", text)
    assert text.count("$manager.CommitChanges()") == 1
    assert "'system.webServer/rewrite/allowedServerVariables', $SiteName" in text
    assert "'ServerVariable'" in text


def test_client_address_script_parses_with_pwsh(rendered):
    pwsh = shutil.which("pwsh")
    if not pwsh:
        pytest.skip("pwsh (PowerShell 7) is not installed: not packaged in Debian bookworm nor on PyPI/npm "
                    "without a download from outside the registries")
    script = rendered / "win2" / "Set-WebfarmClientAddress.ps1"
    code = ("$e=$null; [System.Management.Automation.Language.Parser]::ParseFile('%s',[ref]$null,[ref]$e)"
            " | Out-Null; if ($e.Count) { $e | %% { $_.ToString() }; exit 1 }" % script)
    proc = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-Command", code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_passes_the_script_the_variables_the_rules_set():
    site = yaml.safe_load(open(os.path.join(REPO, "roles", "web_windows", "tasks", "site.yml")))
    task = [t for t in site if t.get("ansible.windows.win_powershell", {}).get("path", "").endswith(
        "Set-WebfarmClientAddress.ps1")]
    assert len(task) == 1
    params = task[0]["ansible.windows.win_powershell"]["parameters"]
    assert params["ServerVariables"] == "{{ __web_windows_rewrite_server_variables }}"
    script = open(os.path.join(REPO, "roles", "web_windows", "files", "Set-WebfarmClientAddress.ps1")).read()
    for name in params:
        assert "$%s" % name in script, name
    # the script runs before web.config is installed (a rule setting a variable
    # that is not allowed yet makes IIS answer 500.50)
    names = [t.get("name") for t in site]
    assert names.index(task[0]["name"]) < names.index("Install the checked web.config")


# ------------------------------------------- db_settings after a promotion --

@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    """The same farm after db_promote named db2 the primary (webfarm_db_primary)."""
    tmp = tmp_path_factory.mktemp("web_windows_promoted")
    rc, per_host, raw = _run(tmp, "render", {"win1.example.com": dict(WINDOWS["win1.example.com"])},
                             farm_vars={"webfarm_db_primary": "db2"})
    assert rc == 0, raw[-5000:]
    return tmp / "render"


def test_app_config_follows_the_promoted_primary(rendered, promoted):
    before = _config(rendered, "win1.example.com")
    after = _config(promoted, "win1.example.com")
    assert before["db"]["host"] == "10.9.0.41" and before["db"]["replicas"] == [{"host": "10.9.0.42", "port": 3306}]
    assert after["db"]["host"] == "10.9.0.42"
    assert after["db"]["replicas"] == [{"host": "10.9.0.41", "port": 3306}]
    assert {k: v for k, v in after.items() if k != "db"} == {k: v for k, v in before.items() if k != "db"}


def test_db_settings_entry_point_touches_only_the_app_config():
    """db_settings: validate (the primary from the model), then only the app
    config (rendered, checked by PHP that it names that primary, installed)."""
    tasks = os.path.join(REPO, "roles", "web_windows", "tasks")
    entry = yaml.safe_load(open(os.path.join(tasks, "db_settings.yml")))
    includes = [t["ansible.builtin.include_tasks"] for t in entry if "ansible.builtin.include_tasks" in t]
    assert includes == ["validate.yml", "set_vars.yml", "app_config.yml"]
    cfg = yaml.safe_load(open(os.path.join(tasks, "app_config.yml")))
    modules = [next(k for k in t if k.startswith("ansible.")) for t in cfg]
    assert modules == ["ansible.windows.win_template", "ansible.windows.win_command", "ansible.windows.win_copy"]
    check = cfg[1]["ansible.windows.win_command"]["argv"]
    assert "$c['db']['host'] === $argv[3]" in check[4] and check[-1] == "{{ __web_windows_db_host }}"
    specs = yaml.safe_load(open(os.path.join(REPO, "roles", "web_windows", "meta", "argument_specs.yml")))
    for ep in ("db_settings", "update", "web_config"):
        assert specs["argument_specs"][ep]["options"] == specs["argument_specs"]["main"]["options"], ep


# -------------------------------------------------------------- bad input --

# One Windows host per bad input; one validate run checks them all (each host
# fails at its own check, the others carry on).
BAD = {
    "nozip": ({"web_windows_php_zip": ""}, ["web_windows_php_zip", "''"]),
    "tszip": ({"web_windows_php_zip": "https://example.invalid/php-8.3.14-Win32-vs16-x64.zip"},
              ["web_windows_php_zip", "Non-Thread-Safe"]),
    "badver": ({"web_windows_php_version": "8.2.1"}, ["web_windows_php_version", "'8.2.1'"]),
    "nomsi": ({"web_windows_urlrewrite_msi": "/nonexistent/rewrite.msi"},
              ["web_windows_urlrewrite_msi", "/nonexistent/rewrite.msi"]),
    "badroute": ({"webfarm_route": "r-7", "web_windows_route": "badroute"},
                 ["web_windows_route", "'badroute'", "'r-7'"]),
    "nfsv4": ({"web_windows_nfs_version": 4}, ["web_windows_nfs_version", "'4'", "v2/v3 only"]),
    "memcache": ({"web_windows_session_store": "memcache"},
                 ["web_windows_session_store", "'memcache'", "database, redis, files"]),
    "noredisdll": ({"web_windows_session_store": "redis", "webfarm_redis_password": "x", "web_windows_php_redis_dll": ""},
                   ["web_windows_php_redis_dll"]),
    "smbpath": ({"web_windows_files_backend": "smb", "web_windows_smb_path": "/mnt/x"},
                ["web_windows_smb_path", "'/mnt/x'"]),
    "nodbpw": ({"webfarm_db_password": ""}, ["web_windows_db_password", "is empty"]),
    "noshare": ({"web_windows_files_backend": "none"}, ["web_windows_files_backend", "'none'", "NFSv3", "smb"]),
    "proxynet": ({"web_windows_trusted_proxies": ["10.0.0.0/8"]}, ["web_windows_trusted_proxies", "'10.0.0.0/8'"]),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web_windows_bad")
    windows = {"good": {"webfarm_address": "10.9.0.70"}}
    for n, (name, (hv, _)) in enumerate(sorted(BAD.items())):
        windows[name] = dict(hv, webfarm_address="10.9.0.%d" % (80 + n))
    windows["badtype"] = {"webfarm_address": "10.9.0.79", "web_windows_stop_default_site": "maybe"}
    return _run(tmp, "validate", windows)


@pytest.mark.parametrize("host", sorted(BAD))
def test_validate_rejects_bad_input_naming_host_and_variable(bad_run, host):
    rc, per_host, raw = bad_run
    assert rc != 0
    failed = [r for r in per_host[host] if r.get("failed")]
    assert len(failed) == 1, "%s was accepted:\n%s" % (host, json.dumps(per_host[host], indent=1)[-3000:])
    msg = failed[0].get("msg", "")
    assert "host '%s'" % host in msg, failed[0]
    for needle in BAD[host][1]:
        assert needle in msg, "%r not in %r" % (needle, msg)
    assert not any(r.get("unreachable") for r in per_host[host])


def test_validate_accepts_the_good_host_and_contacts_no_windows_host(bad_run):
    rc, per_host, raw = bad_run
    assert not any(r.get("failed") or r.get("unreachable") for r in per_host["good"]), raw[-3000:]
    # everything ran on the controller
    for host, results in per_host.items():
        for r in results:
            assert not r.get("unreachable"), (host, r)


def test_argument_spec_of_the_entry_point_is_applied(bad_run):
    rc, per_host, raw = bad_run
    failed = [r for r in per_host["badtype"] if r.get("failed")]
    assert len(failed) == 1, per_host["badtype"]
    assert "web_windows_stop_default_site" in failed[0]["msg"] and "bool" in failed[0]["msg"], failed[0]["msg"]
    # it stopped before the role's own checks ran
    assert not any(r["task"].endswith("Compute the farm topology") for r in per_host["badtype"])


# ------------------------------------- the role's php.ini check on the host --

def _role_check(php, ini):
    """Run the role's php.ini candidate check (same options, same failure
    rule as tasks/php.yml) with this PHP; True when the role would accept it."""
    role_vars = yaml.safe_load(open(os.path.join(REPO, "roles", "web_windows", "vars", "main.yml")))
    ext_dir = subprocess.run(php + ["-n", "-r", "echo ini_get('extension_dir');"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    proc = subprocess.run(php + ["-c", str(ini), "-d", "extension_dir=" + ext_dir]
                          + role_vars["__web_windows_php_check_args"] + ["-r", "echo 'php.ini ok ', PHP_VERSION;"],
                          capture_output=True, text=True, timeout=60, cwd=os.path.dirname(str(ini)))
    out = proc.stdout + proc.stderr
    return (proc.returncode == 0 and "php.ini ok" in proc.stdout
            and not re.search(role_vars["__web_windows_php_check_fail_re"], out)), out


def test_php_ini_check_accepts_good_and_rejects_broken_candidates(rendered, tmp_path):
    php = _php()
    if not php:
        pytest.skip(PHP_REASON)
    text = (rendered / "win1.example.com" / "php.ini").read_text()
    # The Windows-only DLLs do not exist on Linux: drop those lines, keep opcache.
    good = re.sub(r"(?m)^extension = .*$", "", text)
    logdir = tmp_path / "logs"
    good = good.replace("C:\\inetpub\\webfarm\\logs\\php_errors.log", str(logdir / "php_errors.log"))
    (tmp_path / "good.ini").write_text(good)
    ok, out = _role_check(php, tmp_path / "good.ini")
    assert ok, out
    (tmp_path / "noext.ini").write_text(good + "\nextension = no_such_extension\n")
    ok, out = _role_check(php, tmp_path / "noext.ini")
    assert not ok and "no_such_extension" in out
    (tmp_path / "syntax.ini").write_text(good + "\nmemory_limit = (\n")
    ok, out = _role_check(php, tmp_path / "syntax.ini")
    assert not ok and "syntax error" in out


def test_validate_rejects_a_farm_without_balancer_addresses(tmp_path):
    def no_balancers(inv):
        inv["webfarm"]["children"]["balancers"] = {"hosts": {}}
    rc, per_host, raw = _run(tmp_path, "validate", {"lonely": {"webfarm_address": "10.9.0.90"}}, edit=no_balancers)
    assert rc != 0
    failed = [r for r in per_host["lonely"] if r.get("failed")]
    assert len(failed) == 1, per_host["lonely"]
    msg = failed[0]["msg"]
    for needle in ("host 'lonely'", "'balancers'", "web_windows_trusted_proxies", "empty"):
        assert needle in msg, (needle, msg)
    assert not any(r.get("unreachable") for r in per_host["lonely"])
