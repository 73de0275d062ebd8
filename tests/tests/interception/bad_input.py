"""Sends bad first bytes to <ip>:443 from inside a sandbox; prints what came back per case."""
import json
import socket
import struct
import sys

ip = sys.argv[1]


def hello_header(length):
    # TLS record (handshake, TLS 1.0) carrying a ClientHello of `length` bytes (truncated body).
    body = b"\x01" + struct.pack(">I", length)[1:] + b"\x03\x03" + b"\x00" * 32
    return b"\x16\x03\x01" + struct.pack(">H", len(body)) + body


cases = {
    "garbage": b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff",
    "truncated": hello_header(200)[:20],
    # A well-formed 16 KiB record whose hello declares 64 KiB: over the detection cap.
    "oversize": b"\x16\x03\x01\x40\x00" + b"\x01\x01\x00\x00" + b"\x00" * (0x4000 - 4),
    "silent": b"",
}
out = {}
for name, data in cases.items():
    s = socket.create_connection((ip, 443), timeout=15)
    try:
        if data:
            s.sendall(data)
        if name == "truncated":
            s.shutdown(socket.SHUT_WR)
        got = s.recv(4096)
        out[name] = {"closed": True, "bytes": len(got)}
    except OSError as e:
        out[name] = {"closed": True, "error": type(e).__name__}
    finally:
        s.close()
print(json.dumps(out))
