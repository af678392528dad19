"""Bounded concurrent GETs, one connection per request (like a browser
without keep-alive), http or https (certificate not checked: lab targets).

Run inside a container of the project, not on the host: bench/balancer.py and
bench/fullstack.py send this file's text to `python3` over `docker exec`.

    python3 httpload.py URL REQUESTS CONCURRENCY TIME_LIMIT_S

Prints one JSON line: requests, ok, errors, seconds, rps, p50_ms, p99_ms.
"""
import http.client
import json
import ssl
import sys
import threading
import time
from urllib.parse import urlparse

url, total, conc, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
u = urlparse(url)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
lat, errors, lock = [], [0], threading.Lock()
left = [total]
deadline = time.time() + limit


def worker():
    while True:
        with lock:
            if left[0] <= 0 or time.time() > deadline:
                return
            left[0] -= 1
        t = time.perf_counter()
        try:
            if u.scheme == "https":
                c = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=5, context=ctx)
            else:
                c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
            c.request("GET", u.path or "/", headers={"Connection": "close"})
            r = c.getresponse()
            r.read()
            c.close()
            ok = r.status == 200
        except Exception:
            ok = False
        ms = (time.perf_counter() - t) * 1000
        with lock:
            if ok:
                lat.append(ms)
            else:
                errors[0] += 1


start = time.time()
threads = [threading.Thread(target=worker) for _ in range(conc)]
for th in threads:
    th.start()
for th in threads:
    th.join()
secs = time.time() - start
lat.sort()


def q(p):
    return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None


print(json.dumps({"url": url, "requests": len(lat) + errors[0], "ok": len(lat), "errors": errors[0],
                  "seconds": round(secs, 3), "rps": round(len(lat) / secs, 1) if secs else 0,
                  "p50_ms": q(0.5), "p99_ms": q(0.99)}))
