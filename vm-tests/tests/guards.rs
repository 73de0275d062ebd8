//! The guards under the redirect, tried from inside a hostile sandbox (root, sharing the
//! test network namespace): binds, socket options, extension headers, IP options, inbound
//! datagrams, and the DNS client record the daemon needs to tell sandboxes apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::{SocketAddr, UdpSocket};

use gateway_common::PROTO_UDP;
use sluice::capture::{Capture, cgroup_id, netns_cookie, original_destination};
use vm_tests::{TestEnv, finish, free_port, read_line, spawn_python_in};

/// Prints `<name> ok` or `<name> <errno name>` for each attempt.
const ATTEMPT: &str = r#"
import errno, socket, struct, sys
S = socket
def attempt(name, f):
    try:
        f()
        print(name, "ok", flush=True)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno), flush=True)
"#;

fn bind_script(ports: [u16; 4]) -> String {
    let [proxy, dns, control, explicit] = ports;
    format!(
        r#"{ATTEMPT}
def bind(family, kind, addr):
    return lambda: S.socket(family, kind).bind(addr)
def bound(family, kind, addr):
    s = S.socket(family, kind)
    s.bind(addr)
    print("  ->", s.getsockname()[0], flush=True)
T, U, V4, V6 = S.SOCK_STREAM, S.SOCK_DGRAM, S.AF_INET, S.AF_INET6
attempt("tcp_any4", lambda: bound(V4, T, ("0.0.0.0", 0)))
attempt("udp_any6", lambda: bound(V6, U, ("::", 0)))
attempt("tcp_any4_port", bind(V4, T, ("0.0.0.0", 8080)))
attempt("tcp_any6_port", bind(V6, T, ("::", 8080)))
attempt("udp_any4_port", bind(V4, U, ("0.0.0.0", 5353)))
attempt("tcp_mapped_any", bind(V6, T, ("::ffff:0.0.0.0", 0)))
attempt("tcp_foreign", bind(V4, T, ("198.51.100.1", 8080)))
attempt("tcp_lo4", bind(V4, T, ("127.0.0.1", 0)))
attempt("tcp_lo4_other", bind(V4, T, ("127.0.0.2", 0)))
attempt("udp_lo6", bind(V6, U, ("::1", 0)))
attempt("tcp_mapped_lo", bind(V6, T, ("::ffff:127.0.0.1", 0)))
attempt("tcp_proxy_port", bind(V4, T, ("127.0.0.1", {proxy})))
attempt("tcp6_proxy_port", bind(V6, T, ("::1", {proxy})))
attempt("udp_dns_port", bind(V4, U, ("127.0.0.1", {dns})))
attempt("tcp_control_port", bind(V4, T, ("127.0.0.1", {control})))
attempt("tcp_explicit_port", bind(V4, T, ("127.0.0.1", {explicit})))
"#
    )
}

#[test]
fn binds_only_to_loopback_and_never_to_the_gateway_ports_even_with_the_daemon_dead() {
    let env = TestEnv::new();
    let ports = [
        free_port(&env),
        free_port(&env),
        free_port(&env),
        free_port(&env),
    ];
    let cfg = sluice::capture::CaptureConfig {
        control_port: Some(ports[2]),
        explicit_proxy_port: Some(ports[3]),
        ..env.config(ports[0], ports[1])
    };
    let capture = Capture::install(&cfg).unwrap();
    let sandbox = env.sandbox(&capture, "sb", 1);
    // The daemon is gone; its pinned guards are not.
    drop(capture);
    let out = finish(env.spawn_python(Some(&sandbox), &bind_script(ports)));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            // A client's wildcard bind to port 0 is narrowed to loopback...
            "  -> 127.0.0.1",
            "tcp_any4 ok",
            "  -> ::1",
            "udp_any6 ok",
            // ...a listener's wildcard bind is refused.
            "tcp_any4_port EPERM",
            "tcp_any6_port EPERM",
            "udp_any4_port EPERM",
            "tcp_mapped_any EPERM",
            "tcp_foreign EPERM",
            "tcp_lo4 ok",
            "tcp_lo4_other ok",
            "udp_lo6 ok",
            "tcp_mapped_lo ok",
            "tcp_proxy_port EPERM",
            "tcp6_proxy_port EPERM",
            "udp_dns_port EPERM",
            "tcp_control_port EPERM",
            "tcp_explicit_port EPERM",
        ],
        "{out}"
    );
    // Outside the sandbox the same binds work: the refusals are the guard's.
    let outside = finish(env.spawn_python(None, &bind_script(ports)));
    assert!(outside.contains("  -> 0.0.0.0"), "{outside}");
    assert!(outside.contains("tcp_any4_port ok"), "{outside}");
    assert!(outside.contains("tcp_proxy_port ok"), "{outside}");
}

const SOCKOPTS: &str = r#"
U4 = S.socket(S.AF_INET, S.SOCK_DGRAM)
U6 = S.socket(S.AF_INET6, S.SOCK_DGRAM)
T4 = S.socket(S.AF_INET, S.SOCK_STREAM)
lsrr = bytes([1, 0x83, 7, 4]) + S.inet_aton("198.51.100.9")
srh = struct.pack("BBBBBBH", 0, 4, 4, 1, 1, 0, 0) + bytes(16) + S.inet_pton(S.AF_INET6, "2001:db8:1::2")
mreq = S.inet_aton("239.1.2.3") + S.inet_aton("0.0.0.0")
mreq6 = S.inet_pton(S.AF_INET6, "ff02::1:3") + struct.pack("@I", 1)
sin = struct.pack("=HH4s8x", S.AF_INET, 0, S.inet_aton("239.1.2.3"))
group_req = struct.pack("@I4x", 1) + sin + bytes(128 - len(sin))
hop = bytes([0, 0, 1, 4, 0, 0, 0, 0])
attempt("ip_options", lambda: U4.setsockopt(S.IPPROTO_IP, 4, lsrr))
attempt("ip_options_tcp", lambda: T4.setsockopt(S.IPPROTO_IP, 4, lsrr))
attempt("ip_retopts", lambda: U4.setsockopt(S.IPPROTO_IP, 7, lsrr))
attempt("ipv6_rthdr", lambda: U6.setsockopt(S.IPPROTO_IPV6, 57, srh))
attempt("ipv6_2292rthdr", lambda: U6.setsockopt(S.IPPROTO_IPV6, 5, srh))
attempt("ipv6_hopopts", lambda: U6.setsockopt(S.IPPROTO_IPV6, 54, hop))
attempt("ipv6_dstopts", lambda: U6.setsockopt(S.IPPROTO_IPV6, 59, hop))
attempt("ip_add_membership", lambda: U4.setsockopt(S.IPPROTO_IP, 35, mreq))
attempt("ipv6_add_membership", lambda: U6.setsockopt(S.IPPROTO_IPV6, 20, mreq6))
attempt("ipv6_join_anycast", lambda: U6.setsockopt(S.IPPROTO_IPV6, 27, mreq6))
attempt("mcast_join_group", lambda: U4.setsockopt(S.IPPROTO_IP, 42, group_req))
attempt("ip_tos", lambda: U4.setsockopt(S.IPPROTO_IP, 1, 0x10))
attempt("reuseaddr", lambda: T4.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1))
attempt("nodelay", lambda: T4.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1))
attempt("v6only", lambda: U6.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1))
"#;

#[test]
fn socket_options_that_reach_the_wire_or_join_groups_are_refused() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let script = format!("{ATTEMPT}{SOCKOPTS}");
    let out = finish(env.spawn_python(Some(&sandbox), &script));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "ip_options EPERM",
            "ip_options_tcp EPERM",
            "ip_retopts EPERM",
            "ipv6_rthdr EPERM",
            "ipv6_2292rthdr EPERM",
            "ipv6_hopopts EPERM",
            "ipv6_dstopts EPERM",
            "ip_add_membership EPERM",
            "ipv6_add_membership EPERM",
            "ipv6_join_anycast EPERM",
            "mcast_join_group EPERM",
            "ip_tos ok",
            "reuseaddr ok",
            "nodelay ok",
            "v6only ok",
        ],
        "{out}"
    );
    // The same calls outside the sandbox are accepted by the kernel (the refusals are ours).
    // (IP_ADD_MEMBERSHIP without an interface needs a multicast route, which the test
    // namespace lacks: ENODEV there.)
    let outside = finish(env.spawn_python(None, &script));
    for name in [
        "ip_options",
        "ipv6_rthdr",
        "ipv6_hopopts",
        "ipv6_add_membership",
        "mcast_join_group",
    ] {
        assert!(outside.contains(&format!("{name} ok")), "{outside}");
    }
}

/// Counts datagrams whose payload contains `probe` on an interface until one containing `end`
/// arrives.
const SNIFF: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
n = 0
while True:
    data = s.recv(65535)
    if b"wire-end" in data:
        break
    if b"wire-probe" in data:
        n += 1
print(n, flush=True)
"#;

/// Sends to `sys.argv[1]` port 53 through every way of carrying an IPv6 routing header.
const ROUTING_HEADER: &str = r#"
hop = sys.argv[1]
srh = struct.pack("BBBBBBH", 0, 4, 4, 1, 1, 0, 0) + bytes(16) + S.inet_pton(S.AF_INET6, hop)
s = S.socket(S.AF_INET6, S.SOCK_DGRAM)
attempt("cmsg_rthdr", lambda: s.sendmsg([b"wire-probe"], [(S.IPPROTO_IPV6, 57, srh)], 0, ("2001:db8::53", 53)))
attempt("cmsg_2292rthdr", lambda: s.sendmsg([b"wire-probe"], [(S.IPPROTO_IPV6, 5, srh)], 0, ("2001:db8::53", 53)))
attempt("sticky_rthdr", lambda: s.setsockopt(S.IPPROTO_IPV6, 57, srh))
attempt("send", lambda: s.sendto(b"wire-probe", ("2001:db8::53", 53)))
"#;

#[test]
fn routing_headers_never_reach_the_wire() {
    let mut env = TestEnv::new();
    let wire = env.wire();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let script = format!("{ATTEMPT}{ROUTING_HEADER}");
    let hop = wire.peer.to_string();
    let end = format!(
        "import socket\nsocket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'wire-end', ('{hop}', 9))"
    );

    // Control, outside the sandbox: the sticky routing header does put the datagram on the
    // wire (the red team's finding), so the sniffer sees what a leak looks like.
    let mut sniffer = spawn_python_in(&wire.netns, SNIFF, &[&wire.peer_if]);
    assert_eq!(read_line(&mut sniffer), "ready");
    let outside = finish(env.spawn(None, python_args(&script, &hop)));
    finish(env.spawn_python(None, &end));
    let leaked = finish(sniffer);
    assert!(outside.contains("sticky_rthdr ok"), "{outside}");
    assert_ne!(
        leaked.trim(),
        "0",
        "control: nothing seen on the wire\n{outside}"
    );

    // From the sandbox: nothing.
    let mut sniffer = spawn_python_in(&wire.netns, SNIFF, &[&wire.peer_if]);
    assert_eq!(read_line(&mut sniffer), "ready");
    let inside = finish(env.spawn(Some(&sandbox), python_args(&script, &hop)));
    finish(env.spawn_python(None, &end));
    assert_eq!(finish(sniffer).trim(), "0", "a datagram escaped:\n{inside}");
    assert!(inside.contains("sticky_rthdr EPERM"), "{inside}");
}

fn python_args(script: &str, arg: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(vm_tests::python());
    cmd.arg("-c").arg(script).arg(arg);
    cmd
}

/// Datagrams to the DNS listener carrying IP options or IPv6 extension headers (as ancillary
/// data, which the setsockopt guard cannot see), then a plain one. (`IPV6_RTHDRDSTOPTS` is
/// left out: the kernel emits it only in front of a routing header.)
const EXTENSION_HEADERS: &str = r#"
nops = bytes([1, 1, 1, 0])
hop = bytes([0, 0, 1, 4, 0, 0, 0, 0])
s4 = S.socket(S.AF_INET, S.SOCK_DGRAM)
s6 = S.socket(S.AF_INET6, S.SOCK_DGRAM)
attempt("ip_retopts_cmsg", lambda: s4.sendmsg([b"opts4"], [(S.IPPROTO_IP, 7, nops)], 0, ("198.51.100.53", 53)))
attempt("hopopts_cmsg", lambda: s6.sendmsg([b"hop6"], [(S.IPPROTO_IPV6, 54, hop)], 0, ("2001:db8::53", 53)))
attempt("dstopts_cmsg", lambda: s6.sendmsg([b"dst6"], [(S.IPPROTO_IPV6, 59, hop)], 0, ("2001:db8::53", 53)))
attempt("plain4", lambda: s4.sendto(b"end4", ("198.51.100.53", 53)))
attempt("plain6", lambda: s6.sendto(b"end6", ("2001:db8::53", 53)))
"#;

/// Receive datagrams until one equals `end`.
fn until(sock: &UdpSocket, end: &str) -> Vec<String> {
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("the plain datagram arrives");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = got == end;
        seen.push(got);
        if done {
            return seen;
        }
    }
}

#[test]
fn ip_options_and_extension_headers_never_reach_the_dns_listener() {
    let env = TestEnv::new();
    let dns4 = env.in_netns(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let dns_port = dns4.local_addr().unwrap().port();
    let dns6 = env.in_netns(|| UdpSocket::bind(("::1", dns_port)).unwrap());
    let capture = env.install(free_port(&env), dns_port);
    let sandbox = env.sandbox(&capture, "sb", 1);
    let out = finish(env.spawn_python(Some(&sandbox), &format!("{ATTEMPT}{EXTENSION_HEADERS}")));
    assert!(
        out.contains("plain4 ok") && out.contains("plain6 ok"),
        "{out}"
    );
    // Loopback delivery keeps order: a datagram that passed would arrive before the end one.
    assert_eq!(until(&dns4, "end4"), ["end4"], "{out}");
    assert_eq!(until(&dns6, "end6"), ["end6"], "{out}");
}

#[test]
fn sandbox_sockets_receive_only_from_the_gateway_listeners() {
    let env = TestEnv::new();
    let dns = env.in_netns(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let dns_port = dns.local_addr().unwrap().port();
    let capture = env.install(free_port(&env), dns_port);
    let sandbox = env.sandbox(&capture, "sb", 1);
    let script = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                  s.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1], flush=True)\n\
                  print(s.recv(64).decode(), flush=True)";
    let mut child = env.spawn_python(Some(&sandbox), script);
    let port: u16 = read_line(&mut child).parse().unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let stranger = env.in_netns(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    stranger.send_to(b"from-a-stranger", target).unwrap();
    dns.send_to(b"from-the-gateway", target).unwrap();
    assert_eq!(finish(child).trim(), "from-the-gateway");
}

const DNS_CLIENTS: &str = r#"
import socket
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("203.0.113.53", 53))
c.send(b"connected")
print(c.getsockname()[1], flush=True)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.sendto(b"unconnected", ("2001:db8::53", 53))
print(u.getsockname()[1], flush=True)
"#;

#[test]
fn dns_clients_are_recorded_for_connected_and_unconnected_udp() {
    let env = TestEnv::new();
    let dns4 = env.in_netns(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let dns_port = dns4.local_addr().unwrap().port();
    let dns6 = env.in_netns(|| UdpSocket::bind(("::1", dns_port)).unwrap());
    let capture = env.install(free_port(&env), dns_port);
    let sandbox = env.sandbox(&capture, "sb", 1);
    let mut child = env.spawn_python(Some(&sandbox), DNS_CLIENTS);
    let pid = child.id();
    let ports: Vec<u16> = (0..2)
        .map(|_| read_line(&mut child).parse().unwrap())
        .collect();
    finish(child);

    for (listener, payload, port, want) in [
        (&dns4, "connected", ports[0], "203.0.113.53:53"),
        (&dns6, "unconnected", ports[1], "[2001:db8::53]:53"),
    ] {
        let mut buf = [0u8; 64];
        let (n, peer) = listener.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], payload.as_bytes());
        assert_eq!(peer.port(), port);
        let cookie = netns_cookie(listener).unwrap();
        let rec = capture
            .dns_client(cookie, peer)
            .unwrap()
            .unwrap_or_else(|| panic!("no DNS client record for {peer}"));
        assert_eq!(rec.sandbox_cgroup_id, cgroup_id(&sandbox).unwrap());
        assert_eq!(rec.cgroup_id, cgroup_id(&sandbox).unwrap());
        assert_eq!(rec.tgid, pid);
        assert_eq!(rec.uid, 0);
        assert_eq!(rec.protocol, PROTO_UDP);
        assert_eq!(rec.netns_cookie, cookie);
        assert_eq!(
            original_destination(&rec),
            want.parse::<SocketAddr>().unwrap()
        );
    }
    // Another namespace, or a port nobody sent from, is a miss.
    let cookie = netns_cookie(&dns4).unwrap();
    let peer = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    assert!(capture.dns_client(cookie + 1, peer).unwrap().is_none());
    let unused = SocketAddr::from(([127, 0, 0, 1], free_port(&env)));
    assert!(capture.dns_client(cookie, unused).unwrap().is_none());
}

/// Listens without binding (the kernel picks a wildcard address and an ephemeral port, and no
/// bind hook runs), prints the port, and reports whether anything connected.
const LISTEN_UNBOUND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
s.setblocking(False)
try:
    s.accept(); print("accepted", flush=True)
except BlockingIOError:
    print("nothing", flush=True)
"#;

const DIAL: &str = r#"
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, "timeout"))
"#;

#[test]
fn a_listener_without_bind_is_unreachable_from_the_network() {
    use std::io::Write as _;
    let mut env = TestEnv::new();
    let wire = env.wire();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let local = wire.local.to_string();
    for (cgroup, want_dial, want_accept) in [
        (None, "connected", "accepted"),
        (Some(sandbox.as_path()), "timeout", "nothing"),
    ] {
        let mut cmd = std::process::Command::new(vm_tests::python());
        cmd.arg("-c")
            .arg(LISTEN_UNBOUND)
            .stdin(std::process::Stdio::piped());
        let mut listener = env.spawn(cgroup, cmd);
        let port = read_line(&mut listener);
        let dial = finish(spawn_python_in(&wire.netns, DIAL, &[&local, &port]));
        listener.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert_eq!(dial.trim(), want_dial, "in sandbox: {}", cgroup.is_some());
        assert_eq!(finish(listener).trim(), want_accept);
    }
}
