//! `cargo xtask test`: every test, in the order that fails fastest.
//!
//! Unit tests need nothing; the end-to-end tests (`tests/`) drive the real `sluice` binary
//! inside network namespaces they create; the kernel tests (`vm-tests/`) attach eBPF
//! programs to cgroups they create. The last two need root, which CI has.

use std::process::Command;

use anyhow::bail;

use crate::{cmd, setup};

/// Runs the whole suite, optionally only tests whose names contain `filter`.
pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    if !setup::is_root() {
        bail!(
            "the test suite creates cgroups, network namespaces and eBPF programs, which needs root: \
             run `sudo -E cargo xtask test`"
        );
    }
    setup::run(setup::Needs::ALL)?;
    let bin = cmd::build_sluice(true)?;

    // Unit tests and end-to-end tests; vm-tests last and one at a time (they share the kernel).
    let mut suite = cargo_test();
    suite.args(["--workspace", "--exclude", "vm-tests"]);
    suite.env("SLUICE_BIN", &bin);
    with_threads(&mut suite, filter, 2);
    cmd::status(suite)?;

    let mut kernel = cargo_test();
    kernel.args(["--package", "vm-tests"]);
    kernel.env("SLUICE_BIN", &bin);
    with_threads(&mut kernel, filter, 1);
    cmd::status(kernel)
}

fn cargo_test() -> Command {
    let mut test = Command::new(cmd::cargo());
    test.args(["test", "--release"]);
    test
}

fn with_threads(test: &mut Command, filter: Option<&str>, threads: usize) {
    test.arg("--");
    if let Some(filter) = filter {
        test.arg(filter);
    }
    test.arg(format!("--test-threads={threads}"));
}
