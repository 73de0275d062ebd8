//! DNS from a sandbox reaches the gateway's DNS listener, and the reply appears to come from
//! the resolver the application asked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use vm_tests::{TestEnv, finish, free_port};

const QUERIES: &str = r#"
import socket
def show(addr):
    print(addr[0], addr[1], flush=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"q4", ("198.51.100.53", 53)); data, addr = s.recvfrom(512); show(addr)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s6.settimeout(5)
s6.sendto(b"q6", ("2001:db8::53", 53)); data, addr = s6.recvfrom(512); show(addr)
s6.sendto(b"qm", ("::ffff:203.0.113.53", 53)); data, addr = s6.recvfrom(512); show(addr)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)
c.connect(("203.0.113.53", 53)); c.send(b"qc"); data, addr = c.recvfrom(512); show(addr)
show(c.getpeername())
"#;

/// Answers every datagram with `reply:<query>` until `done` is set (the client has finished:
/// on a slow kernel, such as one under emulation, the client may take many seconds to start).
fn responder(sock: UdpSocket, done: Arc<AtomicBool>) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    let mut reply = b"reply:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    sock.send_to(&reply, from).unwrap();
                }
                Err(_) if done.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        seen
    })
}

#[test]
fn dns_is_redirected_and_the_reply_source_restored() {
    let env = TestEnv::new();
    let dns4 = env.in_netns(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let dns_port = dns4.local_addr().unwrap().port();
    let dns6 = env.in_netns(|| UdpSocket::bind(("::1", dns_port)).unwrap());
    let capture = env.install(free_port(&env), dns_port);
    let sandbox = env.sandbox(&capture, "sb", 1);
    let done = Arc::new(AtomicBool::new(false));
    let (r4, r6) = (
        responder(dns4, Arc::clone(&done)),
        responder(dns6, Arc::clone(&done)),
    );

    let out = finish(env.spawn_python(Some(&sandbox), QUERIES));
    done.store(true, Ordering::Relaxed);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "198.51.100.53 53",
            "2001:db8::53 53",
            "::ffff:203.0.113.53 53",
            "203.0.113.53 53",
            "203.0.113.53 53",
        ],
        "{out}"
    );
    // v4-mapped queries from an IPv6 socket arrive at the IPv4 listener.
    assert_eq!(r4.join().unwrap(), ["q4", "qm", "qc"]);
    assert_eq!(r6.join().unwrap(), ["q6"]);
    assert_eq!(
        capture.conn_count().unwrap(),
        0,
        "UDP never enters the connection map"
    );
}
