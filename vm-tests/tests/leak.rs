//! Connection map entries are removed when the connections close.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use vm_tests::{TestEnv, finish, free_port};

const CONNECTIONS: usize = 10_000;

#[test]
fn conns_entries_are_removed_after_close() {
    let env = TestEnv::new();
    let proxy = env.listen("127.0.0.1:0");
    let capture = env.install(proxy.local_addr().unwrap().port(), free_port(&env));
    let sandbox = env.sandbox(&capture, "sb", 1);

    let script = format!(
        "import socket\n\
         for i in range({CONNECTIONS}):\n\
         \x20   s = socket.create_connection(('198.51.100.7', 80), timeout=10)\n\
         \x20   s.close()\n\
         print('done')"
    );
    let accepted = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            proxy.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match proxy.accept() {
                    Ok((stream, peer)) => {
                        // Sample some lookups while the load runs.
                        if accepted
                            .fetch_add(1, Ordering::Relaxed)
                            .is_multiple_of(1000)
                        {
                            let local = stream.local_addr().unwrap();
                            let key = sluice::capture::conn_key(&stream, peer, local).unwrap();
                            if capture.lookup(&key).unwrap().is_some() {
                                found.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let out = finish(env.spawn_python(Some(&sandbox), &script));
        assert_eq!(out.trim(), "done");
        let deadline = Instant::now() + Duration::from_secs(30);
        while accepted.load(Ordering::Relaxed) < CONNECTIONS && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(accepted.load(Ordering::Relaxed), CONNECTIONS);
    assert!(found.load(Ordering::Relaxed) > 0, "no sampled lookup hit");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = capture.conn_count().unwrap();
    while left > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        left = capture.conn_count().unwrap();
    }
    assert_eq!(
        left, 0,
        "{left} entries left after {CONNECTIONS} closed connections"
    );
    // Every count has its close: the per-sandbox cap does not creep up.
    let id = sluice::capture::cgroup_id(&sandbox).unwrap();
    assert_eq!(capture.sandbox_conn_count(id).unwrap(), 0);
}
