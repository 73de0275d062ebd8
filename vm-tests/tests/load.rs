//! Every kernel program passes the verifier and is attached exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use sluice::capture::program_names;
use vm_tests::{TestEnv, attached_programs, free_port};

#[test]
fn every_program_loads_and_attaches_once() {
    let env = TestEnv::new();
    // install names the failing program and includes the verifier log on failure.
    let capture = env.install(free_port(&env), free_port(&env));
    let attached = attached_programs(&env.parent);
    for name in program_names() {
        assert_eq!(attached.get(name), Some(&1), "{name} in {attached:?}");
    }
    assert_eq!(attached.len(), program_names().count(), "{attached:?}");
    assert_eq!(capture.conn_count().unwrap(), 0);
    assert!(capture.sandboxes().unwrap().is_empty());
}
