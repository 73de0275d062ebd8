//! One sandbox cannot hold more live redirected TCP connections than its cap, so it cannot
//! flood the shared connection map and evict another sandbox's records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write as _;

use sluice::capture::{Capture, cgroup_id};
use vm_tests::{TestEnv, finish, free_port, read_line};

/// Opens connections until the cap, waits for a line on stdin, then tries one more, closes
/// one (RST: straight to CLOSE) and tries again.
const FLOOD: &str = r#"
import errno, socket, struct, sys
def connect():
    try:
        s = socket.create_connection(("198.51.100.7", 80), timeout=5)
        return s, "ok"
    except OSError as e:
        return None, errno.errorcode.get(e.errno, e.errno)
held = []
for _ in range(3):
    s, how = connect()
    assert s, how
    held.append(s)
print("full", flush=True)
sys.stdin.readline()
print("over", connect()[1], flush=True)
s = held.pop()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
again, how = connect()
print("after_close", how, flush=True)
"#;

const ONE: &str = r#"
import errno, socket
try:
    socket.create_connection(("198.51.100.8", 80), timeout=5); print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

#[test]
fn a_sandbox_at_its_cap_is_refused_and_others_are_not() {
    let env = TestEnv::new();
    // Connections complete in the listener's backlog; nothing needs to accept them.
    let proxy = env.listen("127.0.0.1:0");
    let cfg = sluice::capture::CaptureConfig {
        conn_cap_per_sandbox: Some(3),
        ..env.config(proxy.local_addr().unwrap().port(), free_port(&env))
    };
    let capture = Capture::install(&cfg).unwrap();
    let greedy = env.sandbox(&capture, "greedy", 1);
    let other = env.sandbox(&capture, "other", 2);

    let mut cmd = std::process::Command::new(vm_tests::python());
    cmd.arg("-c").arg(FLOOD).stdin(std::process::Stdio::piped());
    let mut flood = env.spawn(Some(&greedy), cmd);
    assert_eq!(read_line(&mut flood), "full");
    let greedy_id = cgroup_id(&greedy).unwrap();
    assert_eq!(capture.sandbox_conn_count(greedy_id).unwrap(), 3);

    // Another sandbox is not affected by the first one's cap.
    assert_eq!(finish(env.spawn_python(Some(&other), ONE)).trim(), "ok");

    flood.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(read_line(&mut flood), "over EPERM");
    assert_eq!(read_line(&mut flood), "after_close ok");
    finish(flood);
    drop(proxy);

    // Unregistering forgets the count.
    capture.unregister_sandbox(greedy_id).unwrap();
    assert_eq!(capture.sandbox_conn_count(greedy_id).unwrap(), 0);
}
