"""Drupal on IIS, checked on the controller (no Windows host needed).

The role's ``render`` entry point writes settings.php for every web node of a
generated farm (one Linux node, two Windows nodes: NFSv3 and SMB). Each file
passes ``php -l`` and is included by PHP the way Drupal does; the values are
asserted, and the Linux and Windows files hold the same database, salt,
reverse-proxy and host settings (one builder, tasks/settings.yml), with
Windows paths on the share. The ``windows`` entry point rejects bad input
(a code base that is not Drupal, no NFSv3/SMB share, no balancer address, a
wrong document root) naming host and variable, before contacting any host
(Windows hosts are on winrm, which would fail here). The controller-side
code-base check (files/drupal_codebase.py) is tested directly.
"""
import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import zipfile

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
PLAYBOOK = os.path.join(HERE, "entry.yml")
DUMP = os.path.join(HERE, "dump_settings.php")
FIXTURE = os.path.join(REPO, "molecule", "drupal", "fixture", "codebase")
CODEBASE = os.path.join(REPO, "roles", "drupal", "files", "drupal_codebase.py")
SALT = "salt-0123456789abcdef0123456789abcdef-'q'\\b"
DB_PASSWORD = "db-pass-'quote'-\\-backslash"
PHP_REASON = ("no PHP to run settings.php with: install php-cli (Debian: apt-get install -y php8.2-cli) "
              "or set WEBFARM_PHP to a php command that sees /tmp")


def _php():
    if os.environ.get("WEBFARM_PHP"):
        return shlex.split(os.environ["WEBFARM_PHP"])
    php = shutil.which("php")
    return [php] if php else None


def _archive(path, members):
    """A .tar.gz with a top directory (like drupal-10.x.y/) holding members {name: bytes}."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo("drupal-x/" + name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return str(path)


def _inventory(tmp, windows, linux=None, balancers=True, farm_vars=None):
    for hv in windows.values():
        hv.setdefault("ansible_connection", "winrm")   # fails here: proves nothing connects
        hv.setdefault("web_windows_php_version", "8.3.14")
        hv.setdefault("web_windows_docroot", "C:\\inetpub\\drupal\\web")
    return {"webfarm": {
        "vars": dict({
            "webfarm_admin_networks": ["192.0.2.0/24"],
            "webfarm_db_name": "drupal",
            "webfarm_db_password": DB_PASSWORD,
            "webfarm_drupal_hash_salt": SALT,
            "drupal_trusted_host_patterns": ["^www\\.example\\.test$"],
            "drupal_source": FIXTURE,
            "drupal_render_dir": str(tmp / "render"),
        }, **(farm_vars or {})),
        "children": {
            "edge": {"hosts": {"edge1": {"webfarm_address": "10.9.0.10"}}},
            "balancers": {"hosts": {"lb1": {"webfarm_address": "10.9.0.20"}, "lb2": {"webfarm_address": "10.9.0.21"}}
                          if balancers else {}},
            "web": {"children": {
                "web_linux": {"hosts": linux if linux is not None else {"web1": {"webfarm_address": "10.9.0.31",
                                                                                 "ansible_connection": "local"}}},
                "web_windows": {"hosts": windows},
            }},
            "db": {"children": {
                "db_primary": {"hosts": {"db1": {"webfarm_address": "10.9.0.41"}}},
                "db_replicas": {"hosts": {"db2": {"webfarm_address": "10.9.0.42"}}},
            }},
            "nfs": {"hosts": {"nfs1": {"webfarm_address": "10.9.0.51"}}},
        },
    }}


def _run(tmp, inventory, entry):
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_FORKS="4",
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), PLAYBOOK, "-e", "drupal_test_entry=" + entry],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    data = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]
    per_host = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                per_host.setdefault(host, []).append(dict(res, task=task["task"]["name"]))
    return proc.returncode, per_host, proc.stdout + proc.stderr


WINDOWS = {
    "win1": {"webfarm_address": "10.9.0.35"},
    "win2": {"webfarm_address": "10.9.0.36", "web_windows_files_backend": "smb",
             "web_windows_smb_path": "\\\\files1\\webfarm\\"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drupal_windows")
    # win2 from an archive, the others from the fixture directory
    archive = tmp / "drupal-fixture.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(FIXTURE, arcname="drupal-fixture")
    windows = {h: dict(v) for h, v in WINDOWS.items()}
    windows["win2"]["drupal_source"] = str(archive)
    rc, per_host, raw = _run(tmp, _inventory(tmp, windows), "render")
    assert rc == 0, raw[-5000:]
    for host in ("web1", "win1", "win2"):
        assert not any(r.get("unreachable") or r.get("failed") for r in per_host[host]), raw[-3000:]
    return tmp / "render"


def _settings(rendered, host):
    php = _php()
    if not php:
        pytest.skip(PHP_REASON)
    path = str(rendered / host / "settings.php")
    lint = subprocess.run(php + ["-l", path], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and "No syntax errors" in lint.stdout, lint.stdout + lint.stderr
    proc = subprocess.run(php + [DUMP, path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_windows_settings_php_holds_the_farm_values(rendered):
    s = _settings(rendered, "win1")
    db = s["databases"]["default"]
    assert db["default"]["host"] == "10.9.0.41"
    assert db["default"]["database"] == "drupal" and db["default"]["username"] == "webfarm"
    assert db["default"]["password"] == DB_PASSWORD          # quote and backslash survive
    assert db["default"]["port"] == 3306 and db["default"]["driver"] == "mysql"
    assert [r["host"] for r in db["replica"]] == ["10.9.0.42"]
    st = s["settings"]
    assert st["hash_salt"] == SALT
    assert st["reverse_proxy"] is True
    assert st["reverse_proxy_addresses"] == ["10.9.0.20", "10.9.0.21", "10.9.0.10"]
    assert st["reverse_proxy_trusted_headers"] == 0b000010 | 0b001000      # X_FORWARDED_FOR | X_FORWARDED_PROTO
    assert st["trusted_host_patterns"] == ["^www\\.example\\.test$"]
    assert st["file_public_path"] == "sites/default/files"
    # shared files: the nfs host's export by UNC path, the same subdirectories as on Linux
    assert st["file_private_path"] == "\\\\10.9.0.51\\srv\\webfarm\\export\\drupal\\private"
    assert st["file_temp_path"] == "C:\\ProgramData\\webfarm\\drupal\\tmp"
    assert st["php_storage"]["twig"]["directory"] == "C:\\ProgramData\\webfarm\\drupal\\php"
    assert "\\\\10.9.0.51\\srv\\webfarm\\export\\drupal\\public" in (rendered / "win1" / "settings.php").read_text()


def test_smb_share_gives_the_private_path(rendered):
    st = _settings(rendered, "win2")["settings"]
    assert st["file_private_path"] == "\\\\files1\\webfarm\\drupal\\private"


def test_linux_and_windows_get_the_same_values_from_one_builder(rendered):
    linux, win = _settings(rendered, "web1"), _settings(rendered, "win1")
    assert linux["databases"] == win["databases"]
    paths = {"file_private_path", "file_temp_path", "php_storage"}
    assert {k: v for k, v in linux["settings"].items() if k not in paths} == \
        {k: v for k, v in win["settings"].items() if k not in paths}
    assert linux["settings"]["file_private_path"] == "/srv/webfarm/files/drupal/private"
    assert linux["settings"]["file_temp_path"] == "/var/lib/drupal/tmp"


def test_settings_php_is_ansible_managed(rendered):
    for host in ("web1", "win1", "win2"):
        assert "Ansible managed" in (rendered / host / "settings.php").read_text()[:300]


# -------------------------------------------------------------- bad input --

@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drupal_windows_bad")
    not_drupal = _archive(tmp / "not-drupal.tar.gz", {"web/index.php": b"<?php\n", "README.txt": b"hello\n"})
    windows = {
        "good": {"webfarm_address": "10.9.0.70"},
        "notdrupal": {"webfarm_address": "10.9.0.71", "drupal_source": not_drupal},
        "noshare": {"webfarm_address": "10.9.0.72", "web_windows_files_backend": "none"},
        "smbpath": {"webfarm_address": "10.9.0.73", "web_windows_files_backend": "smb",
                    "web_windows_smb_path": "/mnt/share"},
        "docroot": {"webfarm_address": "10.9.0.74", "web_windows_docroot": "C:\\inetpub\\webfarm\\app\\public"},
        "nophp": {"webfarm_address": "10.9.0.75", "web_windows_php_version": ""},
    }
    return _run(tmp, _inventory(tmp, windows, linux={}), "windows")


BAD = {
    "notdrupal": ["drupal_source", "not-drupal.tar.gz", "not a Drupal code base", "web/core/lib/Drupal.php",
                  "leading path component"],
    "noshare": ["drupal_windows_files_backend", "'none'", "NFSv3", "smb"],
    "smbpath": ["drupal_windows_smb_path", "'/mnt/share'"],
    "docroot": ["web_windows_docroot", "C:\\inetpub\\drupal\\web"],
    "nophp": ["drupal_windows_php_exe", "php.exe"],
}


@pytest.mark.parametrize("host", sorted(BAD))
def test_windows_entry_point_rejects_bad_input_naming_host_and_variable(bad_run, host):
    rc, per_host, raw = bad_run
    assert rc != 0
    failed = [r for r in per_host[host] if r.get("failed")]
    assert len(failed) == 1, "%s was accepted:\n%s" % (host, json.dumps(per_host[host], indent=1)[-3000:])
    msg = failed[0].get("msg", "")
    assert "host '%s'" % host in msg, failed[0]
    for needle in BAD[host]:
        assert needle in msg, "%r not in %r" % (needle, msg)
    assert not any(r.get("unreachable") for r in per_host[host])


def test_good_windows_host_passes_validation_and_only_then_is_contacted(bad_run):
    rc, per_host, raw = bad_run
    results = per_host["good"]
    # every check passed; the first task that needs the Windows host is the
    # first one that fails, because the host cannot be reached (winrm here)
    stopped = [r for r in results if r.get("failed") or r.get("unreachable")]
    assert len(stopped) == 1, [(r["task"], r.get("msg")) for r in stopped]
    assert stopped[0]["task"].endswith("Create the code, per-node and staging directories"), stopped[0]["task"]
    items = stopped[0].get("results") or [stopped[0]]
    # unreachable, or pywinrm missing on this controller: either way, the connection
    assert all(i.get("unreachable") or "winrm" in i.get("msg", "") for i in items), items


def test_empty_balancer_list_is_rejected(tmp_path):
    inv = _inventory(tmp_path, {"win1": {"webfarm_address": "10.9.0.35"}}, linux={}, balancers=False)
    rc, per_host, raw = _run(tmp_path, inv, "windows")
    assert rc != 0
    failed = [r for r in per_host["win1"] if r.get("failed")]
    assert len(failed) == 1, per_host["win1"]
    for needle in ("host 'win1'", "'balancers'", "drupal_reverse_proxy_addresses", "empty"):
        assert needle in failed[0]["msg"], (needle, failed[0]["msg"])
    assert not any(r.get("unreachable") for r in per_host["win1"])


# ------------------------------------------------- the code-base check itself --

def _check(*args):
    proc = subprocess.run(["python3", CODEBASE] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_codebase_check_accepts_drupal_directories_and_archives(tmp_path):
    assert _check(FIXTURE, 1, "web", "default") == {"ok": True, "kind": "directory", "missing": [],
                                                   "version": "10.3.0-fixture", "error": ""}
    tgz = tmp_path / "d.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(FIXTURE, arcname="drupal-10.3.0")
    assert _check(tgz, 1, "web", "default")["ok"]
    # a zip is unpacked as it is (no component stripped)
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for base, _, files in os.walk(FIXTURE):
            for f in files:
                full = os.path.join(base, f)
                zf.write(full, os.path.relpath(full, FIXTURE))
    assert _check(z, 1, "web", "default")["ok"]


def test_codebase_check_names_what_is_missing(tmp_path):
    tgz = tmp_path / "d.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(FIXTURE, arcname="drupal-10.3.0")
    # wrong strip count or docroot or site: not a Drupal web root
    assert _check(tgz, 0, "web", "default")["missing"] == ["core/lib/Drupal.php", "index.php", "sites/default/"]
    assert _check(tgz, 1, "", "default")["missing"] == ["core/lib/Drupal.php", "index.php", "sites/default/"]
    assert _check(tgz, 1, "web", "other")["missing"] == ["sites/other/"]
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"not an archive")
    r = _check(bad, 1, "web", "default")
    assert not r["ok"] and "cannot read the archive" in r["error"]


# ------------------------------- playbooks/web_windows.yml, Drupal on IIS --

def test_web_windows_playbook_renders_drupal_on_iis(tmp_path):
    """The one playbook for Windows nodes, in preview mode: web_windows' files
    and Drupal's settings.php for the node, web.config for Drupal's web root."""
    zip_path = tmp_path / "php-8.3.14-nts-Win32-vs16-x64.zip"
    zip_path.write_bytes(b"PK")
    msi = tmp_path / "rewrite_amd64_en-US.msi"
    msi.write_bytes(b"msi")
    render = tmp_path / "preview"
    inv = _inventory(tmp_path, {"win1": {"webfarm_address": "10.9.0.35"}}, linux={}, farm_vars={
        "web_windows_php_zip": str(zip_path), "web_windows_urlrewrite_msi": str(msi),
        "web_windows_render_dir": str(render), "tls_cert_source": "selfsigned"})
    inv["all"] = {"vars": {"preflight_required_groups": ["web_windows"]}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"),
                           os.path.join(REPO, "playbooks", "web_windows.yml")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in (render / "win1").iterdir())
    assert {"settings.php", "web.config", "php.ini", "config.php"} <= set(files), files
    st = _settings(render, "win1")["settings"]
    assert st["file_private_path"] == "\\\\10.9.0.51\\srv\\webfarm\\export\\drupal\\private"
    web_config = (render / "win1" / "web.config").read_text()
    # the document root is Drupal's: the health path goes to the reference app
    assert "webfarm health to the reference app" in web_config
    assert "C:\\inetpub\\drupal\\web" in web_config
