//! What a sandbox may not do, what an unregistered cgroup may not do, and that processes
//! outside the parent cgroup are left alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use vm_tests::{TestEnv, accept_timeout, finish, free_port};

/// Runs each attempt and prints `<name> ok` or `<name> <errno name>`.
const ATTEMPTS: &str = r#"
import errno, socket
def attempt(name, f):
    try:
        f()
        print(name, "ok", flush=True)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno), flush=True)
S = socket
attempt("udp4_sendto", lambda: S.socket(S.AF_INET, S.SOCK_DGRAM).sendto(b"x", ("198.51.100.7", 9999)))
attempt("udp6_sendto", lambda: S.socket(S.AF_INET6, S.SOCK_DGRAM).sendto(b"x", ("2001:db8::7", 9999)))
attempt("udp4_connect", lambda: S.socket(S.AF_INET, S.SOCK_DGRAM).connect(("198.51.100.7", 443)))
attempt("udp_loopback", lambda: S.socket(S.AF_INET, S.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9999)))
attempt("raw_icmp", lambda: S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP))
attempt("raw6", lambda: S.socket(S.AF_INET6, S.SOCK_RAW, S.IPPROTO_ICMPV6))
attempt("ping", lambda: S.socket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_ICMP))
attempt("netlink_route", lambda: S.socket(S.AF_NETLINK, S.SOCK_RAW, 0))
attempt("unix", lambda: S.socket(S.AF_UNIX, S.SOCK_STREAM))
attempt("tcp", lambda: S.socket(S.AF_INET, S.SOCK_STREAM))
attempt("udp", lambda: S.socket(S.AF_INET6, S.SOCK_DGRAM))
"#;

#[test]
fn sandbox_may_only_use_tcp_dns_unix_and_route_netlink() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let out = finish(env.spawn_python(Some(&sandbox), ATTEMPTS));
    // Ping sockets are refused by net.ipv4.ping_group_range (EACCES) before our hook runs.
    let got: Vec<String> = out
        .lines()
        .map(|l| l.replace("ping EACCES", "ping EPERM"))
        .collect();
    assert_eq!(
        got,
        [
            "udp4_sendto EPERM",
            "udp6_sendto EPERM",
            "udp4_connect EPERM",
            "udp_loopback EPERM",
            "raw_icmp EPERM",
            "raw6 EPERM",
            "ping EPERM",
            "netlink_route ok",
            "unix ok",
            "tcp ok",
            "udp ok",
        ],
        "{out}"
    );
}

/// `cgroup/sock_create` only runs for `AF_INET`/`AF_INET6`, and BPF LSM programs cannot be
/// loaded on these machines (lockdown): packet sockets are stopped by the kernel's own
/// CAP_NET_RAW check, so sandbox workloads must run without CAP_NET_RAW.
#[test]
fn packet_sockets_need_cap_net_raw() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set=-net_raw", "--inh-caps=-net_raw"])
        .arg(vm_tests::python())
        .arg("-c")
        .arg(
            "import socket, errno\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); \
             print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])",
        );
    assert_eq!(
        vm_tests::finish(env.spawn(Some(&sandbox), cmd)).trim(),
        "EPERM"
    );
}

#[test]
fn mptcp_is_refused() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let script = "import socket, errno\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])";
    let out = finish(env.spawn_python(Some(&sandbox), script));
    // EPROTONOSUPPORT when the kernel has no MPTCP at all; never "ok".
    assert!(matches!(out.trim(), "EPERM" | "EPROTONOSUPPORT"), "{out}");
}

#[test]
fn unregistered_cgroups_under_the_parent_are_refused() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let _registered = env.sandbox(&capture, "sb", 1);
    let stranger = env.cgroup("stranger");
    let script = r#"
import errno, socket
for name, f in [
    ("tcp", lambda: socket.create_connection(("198.51.100.7", 80), timeout=5)),
    ("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
    ("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
]:
    try:
        f(); print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;
    let out = finish(env.spawn_python(Some(&stranger), script));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["tcp EPERM", "udp EPERM", "unix ok"],
        "{out}"
    );
}

#[test]
fn unregistering_a_sandbox_refuses_it() {
    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let id = sluice::capture::cgroup_id(&sandbox).unwrap();
    assert_eq!(capture.sandboxes().unwrap().len(), 1);
    capture.unregister_sandbox(id).unwrap();
    capture.unregister_sandbox(id).unwrap();
    assert!(capture.sandboxes().unwrap().is_empty());
    let script = "import socket, errno\ntry:\n    socket.socket(); print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])";
    assert_eq!(
        finish(env.spawn_python(Some(&sandbox), script)).trim(),
        "EPERM"
    );
}

#[test]
fn processes_outside_the_parent_are_unaffected() {
    let env = TestEnv::new();
    let proxy = env.listen("127.0.0.1:0");
    let capture = env.install(proxy.local_addr().unwrap().port(), free_port(&env));
    let _sandbox = env.sandbox(&capture, "sb", 1);
    let other = env.listen("127.0.0.1:0");
    let port = other.local_addr().unwrap().port();
    let script = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n\
         print(s.getpeername()[1])\ns.recv(1)"
    );
    let child = env.spawn_python(None, &script);
    let (stream, _) = accept_timeout(&other, Duration::from_secs(10));
    drop(stream);
    assert_eq!(finish(child).trim(), port.to_string());
    assert_eq!(capture.conn_count().unwrap(), 0);
}
