#!/usr/bin/env python3
"""Tell whether a directory or an archive is a Drupal code base, on the controller.

    drupal_codebase.py SOURCE STRIP_COMPONENTS DOCROOT_SUBDIR SITE_DIR

Looks, after dropping STRIP_COMPONENTS leading path components of an
archive's members (none for .zip, as the role unpacks zips unchanged), for
the files every Drupal web root has under DOCROOT_SUBDIR: ``index.php``,
``core/lib/Drupal.php`` and the directory ``sites/SITE_DIR``. Prints one JSON
object: {"ok": bool, "kind": "directory"|"archive", "missing": [...],
"version": "10.3.1" or "", "error": ""}. Reads the archive's member list only;
nothing is unpacked. Exit status 0 whenever it could look (ok or not).
"""
import json
import os
import re
import sys
import tarfile
import zipfile

VERSION_RE = re.compile(rb"const VERSION = '([^']+)'")


def _wanted(docroot, site):
    prefix = (docroot.strip("/") + "/") if docroot.strip("/") else ""
    return {"index.php": prefix + "index.php",
            "core/lib/Drupal.php": prefix + "core/lib/Drupal.php",
            "sites/%s/" % site: prefix + "sites/%s/" % site}


def _strip(name, n):
    parts = re.sub(r"^(\./)+|^/+", "", name.replace("\\", "/")).split("/")
    return "/".join(parts[n:]) if len(parts) > n else ""


def check(source, strip, docroot, site):
    wanted = _wanted(docroot, site)
    result = {"ok": False, "kind": "", "missing": [], "version": "", "error": ""}
    if os.path.isdir(source):
        result["kind"] = "directory"
        found = {k for k, rel in wanted.items() if os.path.exists(os.path.join(source, rel.rstrip("/")))}
        drupal_php = os.path.join(source, wanted["core/lib/Drupal.php"])
        if os.path.isfile(drupal_php):
            with open(drupal_php, "rb") as f:
                m = VERSION_RE.search(f.read())
            result["version"] = m.group(1).decode() if m else ""
    else:
        result["kind"] = "archive"
        members, read = [], None
        try:
            if source.lower().endswith(".zip"):
                with zipfile.ZipFile(source) as z:
                    members = [(_strip(i.filename, 0), i) for i in z.infolist()]
                    read = ("zip", source)
            else:
                with tarfile.open(source) as t:
                    members = [(_strip(m.name, strip), m) for m in t.getmembers()]
                    read = ("tar", source)
        except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            result["error"] = "cannot read the archive: %s" % exc
            result["missing"] = sorted(wanted)
            return result
        names = {n for n, _ in members}
        dirs = {n.rsplit("/", 1)[0] + "/" for n in names if "/" in n} | {n for n in names if n.endswith("/")}
        found = {k for k, rel in wanted.items() if (rel in dirs if rel.endswith("/") else rel in names)}
        if "core/lib/Drupal.php" in found:
            member = dict(members)[wanted["core/lib/Drupal.php"]]
            if read[0] == "zip":
                with zipfile.ZipFile(source) as z:
                    data = z.read(member)
            else:
                with tarfile.open(source) as t:
                    f = t.extractfile(member)
                    data = f.read() if f else b""
            m = VERSION_RE.search(data)
            result["version"] = m.group(1).decode() if m else ""
    result["missing"] = sorted(set(wanted) - found)
    result["ok"] = not result["missing"]
    return result


def main(argv):
    if len(argv) != 5:
        print(json.dumps({"ok": False, "kind": "", "missing": [], "version": "", "error": __doc__.strip()}))
        return 2
    source, strip, docroot, site = argv[1], int(argv[2]), argv[3], argv[4]
    print(json.dumps(check(source, strip, docroot, site)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
