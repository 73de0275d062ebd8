"""Runs inside a Sluice sandbox and reports, as one JSON line per step, what the kernel let it do."""
import json
import os
import socket
import sys


def report(**fields):
    fields.setdefault("pid", os.getpid())
    print(json.dumps(fields), flush=True)


def http_get(family, host, port, path="/hello"):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        return {"error": type(e).__name__, "errno": e.errno, "at": "socket"}
    s.settimeout(10)
    try:
        s.connect((host, port))
        peer = s.getpeername()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return {"peer": [peer[0], peer[1]], "status": data.split(b"\r\n")[0].decode()}
    except OSError as e:
        return {"error": type(e).__name__, "errno": e.errno}
    finally:
        s.close()


def attempt(fn):
    try:
        fn()
        return {"ok": True}
    except OSError as e:
        return {"ok": False, "errno": e.errno, "error": type(e).__name__}


def main():
    step = sys.argv[1]
    if step == "get":
        family = {"4": socket.AF_INET, "6": socket.AF_INET6}[sys.argv[2]]
        report(step=step, **http_get(family, sys.argv[3], int(sys.argv[4])))
    elif step == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        report(step=step, **attempt(lambda: s.sendto(b"x", (sys.argv[2], int(sys.argv[3])))))
    elif step == "raw":
        report(step=step, **attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)))
    elif step == "ping":
        report(step=step, **attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)))
    elif step == "packet":
        report(step=step, **attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)))
    elif step == "vsock":
        report(step=step, **attempt(lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)))
    elif step == "escape":
        # Move to the cgroup2 root (outside the sandbox): must be impossible.
        base = [l.split()[1] for l in open("/proc/self/mounts") if l.split()[2] == "cgroup2"][0]
        def move():
            with open(os.path.join(base, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        report(step=step, **attempt(move))
    elif step == "many":
        host, port, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        ok = 0
        for _ in range(count):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"ping")
            if s.recv(16):
                ok += 1
            s.close()
        report(step=step, ok=ok)
    elif step == "join-child":
        # Move into a child cgroup of our own, then connect: still captured. Our own cgroup is
        # the sandbox directory under the parent (argv[2]) that lists our pid.
        parent = sys.argv[2]
        own = [os.path.join(parent, d) for d in os.listdir(parent)
               if os.path.isdir(os.path.join(parent, d))
               and str(os.getpid()) in open(os.path.join(parent, d, "cgroup.procs")).read().split()][0]
        def nest():
            child = os.path.join(own, "nested")
            os.makedirs(child, exist_ok=True)
            with open(os.path.join(child, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        nesting = attempt(nest)
        report(step=step, nesting=nesting, cgroup=open("/proc/self/cgroup").read().strip(),
               **http_get(socket.AF_INET, sys.argv[3], int(sys.argv[4])))
    else:
        report(step=step, error="unknown step")


main()
