//! `cargo xtask test`: every test, in the order that fails fastest.
//!
//! Unit tests need nothing; the end-to-end tests (`tests/`) drive the real `sluice` binary
//! inside network namespaces they create; the kernel tests (`vm-tests/`) attach eBPF
//! programs to cgroups they create. The last two need root, which CI has.

use std::process::Command;

use anyhow::bail;

use crate::{cmd, setup, vm};

/// Runs the whole suite, optionally only tests whose names contain `filter`.
pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    if !setup::is_root() {
        bail!(
            "the test suite creates cgroups, network namespaces and eBPF programs, which needs root: \
             run `sudo -E cargo xtask test`"
        );
    }
    setup::run(setup::Needs::ALL)?;
    setup::node_bpffs()?;
    let bin = cmd::build_sluice(true)?;

    // Unit tests and end-to-end tests; vm-tests last and one at a time (they share the kernel).
    let mut suite = cargo_test();
    suite.args(["--workspace", "--exclude", "vm-tests"]);
    suite.env("SLUICE_BIN", &bin);
    // The image test runs `cargo xtask image` through this very binary (a nested cargo
    // would wait on the lock this run holds).
    if let Ok(me) = std::env::current_exe() {
        suite.env("SLUICE_XTASK", me);
    }
    with_threads(&mut suite, filter, 2);
    let mut totals = Totals::default();
    let first = run_counted(suite, &mut totals);

    let mut kernel = cargo_test();
    kernel.args(["--package", "vm-tests"]);
    kernel.env("SLUICE_BIN", &bin);
    with_threads(&mut kernel, filter, 1);
    let second = if first.is_ok() {
        run_counted(kernel, &mut totals)
    } else {
        Ok(())
    };
    // The same kernel tests on Debian 12's stock kernel, in a VM (issue 17's CI leg).
    let third = if first.is_ok() && second.is_ok() {
        vm_leg(VM_LEG, filter, &mut totals)
    } else {
        Ok(())
    };

    println!(
        "summary: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    first.and(second).and(third)
}

/// The kernel of the matrix `cargo xtask test` boots (the others: `cargo xtask vm-test`).
const VM_LEG: &str = "6.1";

/// Runs the kernel tests in a VM on `kernel`, adding its counts to `totals`.
fn vm_leg(kernel: &str, filter: Option<&str>, totals: &mut Totals) -> anyhow::Result<()> {
    let legs = vm::run_legs(&vm::select(kernel)?, filter, vm::DEFAULT_TIMEOUT_MINUTES)?;
    println!("{}", vm::table(&legs));
    for leg in &legs {
        totals.passed += leg.passed;
        totals.failed += leg.failed;
        if !leg.ok {
            bail!("kernel tests failed on {} ({})", leg.kernel, leg.release);
        }
    }
    Ok(())
}

/// Test counts summed over every `test result:` line.
#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cmd`, passing its stdout through while adding up the test counts it reports.
fn run_counted(mut cmd: Command, totals: &mut Totals) -> anyhow::Result<()> {
    use std::io::BufRead;
    eprintln!("xtask: $ {cmd:?}");
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                totals.passed += count(result, "passed");
                totals.failed += count(result, "failed");
                totals.ignored += count(result, "ignored");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}

/// The number before `word` in a `test result:` line (`ok. 3 passed; 0 failed; …`).
pub fn count(result: &str, word: &str) -> u64 {
    let words: Vec<&str> = result.split([' ', ';']).filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .find(|pair| pair[1] == word)
        .and_then(|pair| pair[0].parse().ok())
        .unwrap_or(0)
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
