#!/usr/bin/env python3
"""Try TCP connections to ADDRESS:PORT pairs at once; print JSON results.

Usage: fw_probe.py TIMEOUT ADDRESS:PORT [ADDRESS:PORT ...]
Each result is "open" (handshake done), "refused" (RST: nothing listens, the
packet was let through) or "timeout" (no answer: dropped).
"""
import errno
import json
import selectors
import socket
import sys
import time

timeout = float(sys.argv[1])
sel = selectors.DefaultSelector()
result = {}
for target in sys.argv[2:]:
    address, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    rc = s.connect_ex((address, int(port)))
    if rc in (0, errno.EINPROGRESS):
        sel.register(s, selectors.EVENT_WRITE, target)
    else:
        result[target] = "refused" if rc == errno.ECONNREFUSED else "error %d" % rc
        s.close()
deadline = time.monotonic() + timeout
while sel.get_map() and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
        err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        result[key.data] = "open" if err == 0 else ("refused" if err == errno.ECONNREFUSED else "error %d" % err)
        sel.unregister(key.fileobj)
        key.fileobj.close()
for key in list(sel.get_map().values()):
    result[key.data] = "timeout"
    key.fileobj.close()
print(json.dumps(result, sort_keys=True))
