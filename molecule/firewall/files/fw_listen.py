#!/usr/bin/env python3
"""Accept TCP connections on the given ports and close them; exit after a deadline.

Usage: fw_listen.py SECONDS PORT [PORT ...]
"""
import selectors
import socket
import sys
import time

deadline = time.monotonic() + float(sys.argv[1])
sel = selectors.DefaultSelector()
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(128)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        try:
            conn, _ = key.fileobj.accept()
            conn.close()
        except OSError:
            pass
