#!/usr/bin/env python3
"""Alertmanager webhook receiver for the monitoring scenario: appends every
notification it receives (one JSON document per line) to a file. Loopback only."""

import http.server
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "/var/lib/webhook-recorder/alerts.jsonl"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        with open(OUT, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", 9099), Handler).serve_forever()
