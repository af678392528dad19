#!/usr/bin/python3
"""Bounded HTTP probe for the balancer scenarios (runs in the client container).

Sends at most --count requests, for at most --seconds, each on a new
connection, and prints one JSON summary: status counts, which backend
answered (--served-header, else the body), the Set-Cookie values seen and,
with --timeline, every answer with its time.

--cookie NAME=VALUE     send this cookie with every request
--follow NAME           take cookie NAME from the first answer that sets it
                        and send it with the following requests
--proxy-src random|IP   speak PROXY v1 first, claiming this client address
--also URL              also send to URL: requests alternate over url and
                        every --also (status counts per URL in "by_url")

SIGTERM (e.g. `systemctl stop` of a probe started with systemd-run) ends the
loop after the request in flight and still writes the summary.
"""
import argparse
import os
import http.client
import json
import random
import signal
import socket
import ssl
import sys
import time
from http.cookies import SimpleCookie
from urllib.parse import urlparse


def open_conn(url, timeout, proxy_src):
    u = urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    sock = socket.create_connection((u.hostname, port), timeout=timeout)
    if proxy_src:
        src = proxy_src
        if src == "random":
            src = "10.%d.%d.%d" % (random.randint(0, 255), random.randint(0, 255), random.randint(1, 254))
        sport = random.randint(1024, 65535)
        sock.sendall(("PROXY TCP4 %s %s %d %d\r\n" % (src, sock.getpeername()[0], sport, port)).encode())
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
        conn = http.client.HTTPSConnection(u.hostname, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, port, timeout=timeout)
    conn.sock = sock
    return conn, (u.path or "/") + (("?" + u.query) if u.query else "")


def one(args, cookies, url):
    headers = {"Connection": "close"}
    if cookies:
        headers["Cookie"] = "; ".join("%s=%s" % kv for kv in cookies.items())
    for h in args.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    t0 = time.time()
    try:
        conn, path = open_conn(url, args.timeout, args.proxy_src)
        conn.request(args.method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        lines = body.strip().splitlines()
        served = resp.getheader(args.served_header) or (lines[0] if lines and resp.status == 200 else "")
        set_cookies = resp.msg.get_all("Set-Cookie") or []
        conn.close()
        return {"t": t0, "ms": round((time.time() - t0) * 1000, 2), "status": resp.status,
                "served": served, "set_cookie": set_cookies,
                "location": resp.getheader("Location"), "headers": dict(resp.getheaders()),
                "body": body[:2000]}
    except (OSError, http.client.HTTPException) as exc:
        return {"t": t0, "ms": round((time.time() - t0) * 1000, 2), "status": 0,
                "served": "", "set_cookie": [], "error": type(exc).__name__ + ": " + str(exc)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--method", default="GET")
    p.add_argument("--cookie", action="append", default=[])
    p.add_argument("--follow")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--proxy-src")
    p.add_argument("--also", action="append", default=[])
    p.add_argument("--served-header", default="X-Served-By")
    p.add_argument("--timeline", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    args.count = min(args.count, 100000)
    args.seconds = min(args.seconds, 600.0)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    cookies = dict(c.split("=", 1) for c in args.cookie)
    summary = {"url": args.url, "total": 0, "status": {}, "served": {}, "cookies": [],
               "errors": [], "timeline": [], "by_url": {}}
    urls = [args.url] + args.also
    start = time.time()
    while summary["total"] < args.count and time.time() - start < args.seconds and not stop:
        url = urls[summary["total"] % len(urls)]
        r = one(args, cookies, url)
        summary["total"] += 1
        per_url = summary["by_url"].setdefault(url, {})
        per_url[str(r["status"])] = per_url.get(str(r["status"]), 0) + 1
        summary["status"][str(r["status"])] = summary["status"].get(str(r["status"]), 0) + 1
        if r["served"]:
            summary["served"][r["served"]] = summary["served"].get(r["served"], 0) + 1
        for raw in r["set_cookie"]:
            if raw not in summary["cookies"]:
                summary["cookies"].append(raw)
            if args.follow:
                c = SimpleCookie()
                c.load(raw)
                if args.follow in c:
                    cookies[args.follow] = c[args.follow].value
        if "error" in r and len(summary["errors"]) < 20:
            summary["errors"].append(r["error"])
        if summary["total"] == 1:
            summary["first"] = {k: r.get(k) for k in ("status", "served", "set_cookie", "location", "headers", "body")}
        if args.timeline:
            retry_after = next((v for k, v in (r.get("headers") or {}).items() if k.lower() == "retry-after"), None)
            summary["timeline"].append(dict({k: r.get(k) for k in ("t", "ms", "status", "served", "set_cookie")},
                                            url=url, retry_after=retry_after))
        if args.interval and not stop:
            time.sleep(args.interval)
    summary["seconds"] = round(time.time() - start, 3)
    summary["final_cookies"] = cookies
    out = json.dumps(summary)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(out)
        os.rename(args.out + ".tmp", args.out)
    else:
        sys.stdout.write(out + "\n")


if __name__ == "__main__":
    main()
