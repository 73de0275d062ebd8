//! TCP connects from a sandbox reach the proxy listener, the kernel's record gives the
//! original destination and the process, and getpeername shows the original destination.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{io::Write as _, net::SocketAddr, time::Duration};

use sluice::capture::{cgroup_id, conn_key, original_destination};
use vm_tests::{TestEnv, accept_timeout, finish, free_port};

/// Connects to each target in turn, prints what getpeername reports, then waits for the
/// proxy to close the connection.
const CONNECT_ALL: &str = r#"
import socket
targets = [
    (socket.AF_INET, ("198.51.100.7", 80)),
    (socket.AF_INET6, ("2001:db8::7", 80)),
    (socket.AF_INET6, ("::ffff:198.51.100.7", 80)),
]
for family, addr in targets:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(addr)
    host, port = s.getpeername()[:2]
    print(f"{host} {port}", flush=True)
    s.recv(1)
    s.close()
"#;

#[test]
fn tcp_connects_are_redirected_and_recorded() {
    let env = TestEnv::new();
    let proxy4 = env.listen("127.0.0.1:0");
    let port = proxy4.local_addr().unwrap().port();
    let proxy6 = env.listen(&format!("[::1]:{port}"));
    let capture = env.install(port, free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 7);
    let sandbox_id = cgroup_id(&sandbox).unwrap();

    let child = env.spawn_python(Some(&sandbox), CONNECT_ALL);
    let pid = child.id();
    for (listener, want) in [
        (&proxy4, "198.51.100.7:80"),
        (&proxy6, "[2001:db8::7]:80"),
        (&proxy4, "198.51.100.7:80"),
    ] {
        let (mut stream, peer) = accept_timeout(listener, Duration::from_secs(10));
        let local = stream.local_addr().unwrap();
        let key = conn_key(&stream, peer, local).unwrap();
        let rec = capture
            .lookup(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("no record for {key:?}"));
        assert_eq!(
            original_destination(&rec),
            want.parse::<SocketAddr>().unwrap()
        );
        assert_eq!(rec.tgid, pid);
        assert_eq!(rec.protocol, gateway_common::PROTO_TCP);
        assert_eq!(
            (rec.cgroup_id, rec.sandbox_cgroup_id),
            (sandbox_id, sandbox_id)
        );
        assert_eq!(rec.netns_cookie, key.netns_cookie);
        stream.write_all(b"x").unwrap();
    }
    let out = finish(child);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "198.51.100.7 80",
            "2001:db8::7 80",
            "::ffff:198.51.100.7 80"
        ]
    );
}

#[test]
fn nested_cgroups_belong_to_their_sandbox() {
    let env = TestEnv::new();
    let proxy = env.listen("127.0.0.1:0");
    let capture = env.install(proxy.local_addr().unwrap().port(), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let nested = env.cgroup("sb/worker/inner");

    let child = env.spawn_python(
        Some(&nested),
        "import socket; s = socket.create_connection(('203.0.113.9', 443), timeout=10); s.recv(1)",
    );
    let (mut stream, peer) = accept_timeout(&proxy, Duration::from_secs(10));
    let key = conn_key(&stream, peer, stream.local_addr().unwrap()).unwrap();
    let rec = capture.lookup(&key).unwrap().expect("record");
    assert_eq!(
        original_destination(&rec),
        "203.0.113.9:443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(rec.cgroup_id, cgroup_id(&nested).unwrap());
    assert_eq!(rec.sandbox_cgroup_id, cgroup_id(&sandbox).unwrap());
    stream.write_all(b"x").unwrap();
    finish(child);
}

#[test]
fn extra_cgroups_are_captured_until_detached() {
    let mut env = TestEnv::new();
    let proxy = env.listen("127.0.0.1:0");
    let capture = env.install(proxy.local_addr().unwrap().port(), free_port(&env));
    let extra = env.extra_cgroup();
    capture.attach_extra(&extra).unwrap();
    capture.attach_extra(&extra).unwrap(); // re-adopts, no second attachment
    let attached = vm_tests::attached_programs(&extra);
    assert!(
        attached.values().all(|n| *n == 1)
            && attached.len() == sluice::capture::program_names().count(),
        "{attached:?}"
    );
    vm_tests::register(&capture, &extra, 3);

    let child = env.spawn_python(
        Some(&extra),
        "import socket; s = socket.create_connection(('198.51.100.8', 8080), timeout=10); s.recv(1)",
    );
    let (mut stream, peer) = accept_timeout(&proxy, Duration::from_secs(10));
    let key = conn_key(&stream, peer, stream.local_addr().unwrap()).unwrap();
    let rec = capture.lookup(&key).unwrap().expect("record");
    assert_eq!(
        original_destination(&rec),
        "198.51.100.8:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(rec.sandbox_cgroup_id, cgroup_id(&extra).unwrap());
    stream.write_all(b"x").unwrap();
    finish(child);

    capture.detach_extra(&extra).unwrap();
    assert!(vm_tests::attached_programs(&extra).is_empty());
    capture.detach_extra(&extra).unwrap();
}
