"""A Python HTTPS client for the interception tests: GET https://<ip>/<path> with SNI and Host
set to <host>, trusting only <cafile>. Prints one JSON line."""
import json
import socket
import ssl
import sys

ip, host, path, cafile = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection((ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    print(json.dumps({"status": head.split(b"\r\n")[0].decode(), "issuer": issuer.get("commonName"), "body": body.decode(errors="replace")}))
except Exception as e:  # noqa: BLE001 - the test reads the error
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
