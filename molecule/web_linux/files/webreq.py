#!/usr/bin/python3
"""Tiny HTTP client for the scenarios: one request, JSON result on stdout.

webreq URL [-X METHOD] [-d DATA] [-H 'Name: value']... [--jar FILE] [--timeout S]
Prints {"status", "headers", "body"}; never raises on HTTP errors.
The jar (name -> value, JSON) is sent to every address, like a browser that
reaches all web nodes through one balancer name.
"""
import argparse
import json
import urllib.error
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("-X", dest="method", default=None)
p.add_argument("-d", dest="data", default=None)
p.add_argument("-H", dest="headers", action="append", default=[])
p.add_argument("--jar", default=None)
p.add_argument("--timeout", type=float, default=5.0)
a = p.parse_args()

jar = {}
if a.jar:
    try:
        with open(a.jar) as f:
            jar = json.load(f)
    except FileNotFoundError:
        pass
opener = urllib.request.build_opener()
req = urllib.request.Request(a.url, data=a.data.encode() if a.data is not None else None,
                             method=a.method)
for h in a.headers:
    k, _, v = h.partition(":")
    req.add_header(k.strip(), v.strip())
if jar:
    req.add_header("Cookie", "; ".join("%s=%s" % kv for kv in sorted(jar.items())))
try:
    resp = opener.open(req, timeout=a.timeout)
    status, headers, body = resp.status, resp.headers, resp.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, e.headers, e.read()
if a.jar:
    for value in headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    with open(a.jar, "w") as f:
        json.dump(jar, f)
print(json.dumps({"status": status, "headers": dict(headers), "body": body.decode("utf-8", "replace")}))
