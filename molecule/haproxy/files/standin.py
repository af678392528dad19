#!/usr/bin/python3
"""A web node stand-in for the balancer scenarios: answers with its own name.

GET /            -> 200, body "<name>\n", header X-Backend: <name>
GET <health>     -> 200 "ok" (and <health>/deep)
GET /headers     -> 200, the request headers as JSON (names lower-cased) (X-Forwarded-* checks)
GET /slow?ms=N   -> 200 after N milliseconds (N <= 10000)
POST             -> the same as GET (the body is read and ignored)

On SIGTERM (systemctl stop, a halting host) it answers 503 to everything for
STANDIN_STOP_GRACE seconds (default 1), as an Apache whose PHP-FPM has
already stopped does, then exits: connections still open are closed unanswered.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NAME = os.environ.get("STANDIN_NAME") or socket.gethostname()
PORT = int(os.environ.get("STANDIN_PORT", "80"))
HEALTH = os.environ.get("STANDIN_HEALTH", "/health")
STOP_GRACE = float(os.environ.get("STANDIN_STOP_GRACE", "1"))
STOPPING = []


def on_term(*_):
    if not STOPPING:
        STOPPING.append(time.time())
        threading.Timer(STOP_GRACE, os._exit, (0,)).start()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if STOPPING:
            return self._send(503, "stopping\n")
        if url.path in (HEALTH, HEALTH + "/deep"):
            return self._send(200, "ok\n")
        if url.path == "/headers":
            return self._send(200, json.dumps({k.lower(): v for k, v in self.headers.items()}), "application/json")
        if url.path == "/slow":
            ms = min(int(parse_qs(url.query).get("ms", ["1000"])[0]), 10000)
            time.sleep(ms / 1000.0)
        return self._send(200, NAME + "\n")

    do_HEAD = do_GET

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        return self.do_GET()

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("", PORT), Handler)
    sys.stdout.write("standin %s listening on %d\n" % (NAME, PORT))
    sys.stdout.flush()
    server.serve_forever()
