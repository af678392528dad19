#!/usr/bin/python3
"""List a host's rpcbind registrations (PMAPPROC_DUMP over TCP), one
"program version protocol port" line each. Exit 2 when rpcbind does not answer."""
import socket
import struct
import sys

PROTO = {6: "tcp", 17: "udp"}


def dump(host, timeout=3.0):
    call = struct.pack(">IIIIIIIIIII", 0x5EB1, 0, 2, 100000, 2, 4, 0, 0, 0, 0, 0)
    with socket.create_connection((host, 111), timeout=timeout) as s:
        s.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
        data = b""
        last = False
        while not last:
            hdr = _read(s, 4)
            (mark,) = struct.unpack(">I", hdr)
            last = bool(mark & 0x80000000)
            data += _read(s, mark & 0x7FFFFFFF)
    xid, mtype, stat, _flavor, vlen = struct.unpack(">IIIII", data[:20])
    pos = 20 + vlen
    (accept,) = struct.unpack(">I", data[pos:pos + 4])
    if mtype != 1 or stat != 0 or accept != 0:
        raise RuntimeError("rpcbind refused the call")
    pos += 4
    out = []
    while struct.unpack(">I", data[pos:pos + 4])[0] == 1:
        prog, vers, prot, port = struct.unpack(">IIII", data[pos + 4:pos + 20])
        out.append((prog, vers, PROTO.get(prot, prot), port))
        pos += 20
    return out


def _read(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf


if __name__ == "__main__":
    try:
        rows = dump(sys.argv[1])
    except (OSError, RuntimeError) as exc:
        print("rpcbind on %s: %s" % (sys.argv[1], exc), file=sys.stderr)
        sys.exit(2)
    for row in rows:
        print("%s %s %s %s" % row)
