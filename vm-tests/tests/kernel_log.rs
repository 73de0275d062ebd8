//! Kernel debug logs reach tracing when the capture's kernel target is enabled at debug level
//! (and loading with the log map taken out still works: the logger is kept alive).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{
    io,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use vm_tests::{TestEnv, finish, free_port};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn refusals_are_logged_at_debug_level() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let env = TestEnv::new();
    let capture = env.install(free_port(&env), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);
    let script = "import socket, errno\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\nexcept OSError as e:\n    print(errno.errorcode[e.errno])";
    assert_eq!(
        finish(env.spawn_python(Some(&sandbox), script)).trim(),
        "EPERM"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
        if text.contains("sluice sock_create: refused, reason 3") {
            break;
        }
        assert!(Instant::now() < deadline, "no kernel log line in:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
}
