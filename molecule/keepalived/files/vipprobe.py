#!/usr/bin/python3
"""Bounded request loop through the virtual address with a sticky cookie.

vipprobe URL [--count N] [--seconds S] [--interval MS] [--timeout S]
             [--cookie NAME=VALUE] [--cookie-name NAME] [--out FILE]

One new connection per request (a request in flight when the address moves
fails; the next one goes to the new holder). The loop stops after --count
requests or --seconds seconds, whichever comes first. Prints (or writes to
--out) JSON: counts, the failures' times and errors, the backend of every
request (X-Served-By) and the sticky cookie it kept.
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=50.0, help="milliseconds between requests")
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--cookie", default="")
    ap.add_argument("--cookie-name", default="WEBFARM_LB")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    cookie = a.cookie
    count = min(a.count, 100000)
    deadline = time.monotonic() + min(a.seconds, 600.0)
    reqs = []
    started = time.time()
    while len(reqs) < count and time.monotonic() < deadline:
        t0 = time.time()
        rec = {"t": round(t0, 3)}
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=a.timeout)
            conn.request("GET", u.path or "/", headers={"Cookie": cookie} if cookie else {})
            resp = conn.getresponse()
            resp.read()
            rec["status"] = resp.status
            rec["backend"] = resp.getheader("X-Served-By") or resp.getheader("X-Backend") or ""
            for raw in resp.msg.get_all("Set-Cookie") or []:
                if raw.startswith(a.cookie_name + "="):
                    cookie = raw.split(";", 1)[0]
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            rec["status"] = 0
            rec["error"] = type(exc).__name__ + ": " + str(exc)[:80]
        rec["dt"] = round(time.time() - t0, 3)
        reqs.append(rec)
        pause = a.interval / 1000.0 - rec["dt"]
        if pause > 0:
            time.sleep(pause)
    failed = [r for r in reqs if r["status"] != 200]
    out = {
        "started": started,
        "ended": time.time(),
        "total": len(reqs),
        "ok": len(reqs) - len(failed),
        "failed": len(failed),
        "failures": failed,
        "cookie": cookie,
        "backends": [r.get("backend", "") for r in reqs if r["status"] == 200],
        "requests": reqs,
    }
    text = json.dumps(out)
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            f.write(text)
        import os
        os.rename(a.out + ".tmp", a.out)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
