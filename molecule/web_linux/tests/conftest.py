"""Helpers shared by the web tier scenarios: requests from other containers."""

import json
import os
import uuid

import pytest
import testinfra


def farm_host(name):
    return testinfra.get_host("ansible://%s" % name,
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


class Client:
    """Runs webreq (an HTTP client installed by prepare.yml) in a container."""

    def __init__(self, name):
        self.host = farm_host(name)
        self.jar = "/tmp/jar-%s" % uuid.uuid4().hex

    def request(self, url, method=None, data=None, headers=(), jar=False, timeout=5):
        cmd = ["webreq", url, "--timeout", str(timeout)]
        if method:
            cmd += ["-X", method]
        if data is not None:
            cmd += ["-d", data]
        for h in headers:
            cmd += ["-H", h]
        if jar:
            cmd += ["--jar", self.jar]
        out = self.host.check_output(" ".join("'%s'" % c.replace("'", "'\\''") for c in cmd))
        return json.loads(out)

    def json(self, url, **kw):
        r = self.request(url, **kw)
        assert r["status"] == 200, r
        return json.loads(r["body"])


@pytest.fixture(scope="module")
def farm():
    return farm_host
