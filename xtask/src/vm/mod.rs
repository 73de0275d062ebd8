//! `cargo xtask vm-test`: the kernel tests (`vm-tests/`) on every kernel of the matrix.
//!
//! The host kernel runs them natively. Every other kernel comes from Debian's package
//! registry and boots in a throwaway qemu VM (TCG: nested KVM does not work on these
//! machines) whose initramfs mounts this machine's root filesystem read-only over 9p and the
//! kernel's own modules beside it, so the VM runs the very test binaries this build made,
//! with the machine's `ip`, `bpftool` and Python, as root on the other kernel.

mod initramfs;
mod kernel;
mod qemu;

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{cmd, setup};

pub use kernel::MATRIX;

/// How long one VM may run before it is killed.
pub const DEFAULT_TIMEOUT_MINUTES: u64 = 30;

/// `cargo xtask vm-test` arguments.
#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Which kernels: a release of the matrix (`5.10`, `6.1`), `host` (this machine's, run
    /// natively), `vms` (every kernel but the host's) or `all`.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Only run tests whose name contains this filter.
    pub filter: Option<String>,
    /// Give up on one VM after this many minutes (the VM is killed and the leg fails).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MINUTES)]
    pub timeout_minutes: u64,
}

/// One leg's outcome.
#[derive(Debug)]
pub struct Leg {
    pub kernel: String,
    pub release: String,
    pub passed: u64,
    pub failed: u64,
    pub ok: bool,
    pub seconds: u64,
    pub note: String,
}

/// Runs the kernel tests on each selected kernel and prints a table of the results.
pub fn run(args: &VmArgs) -> anyhow::Result<()> {
    let selected = select(&args.kernel)?;
    if !setup::is_root() {
        bail!(
            "the kernel tests attach eBPF programs and boot VMs, which needs root: run `sudo -E cargo xtask vm-test`"
        );
    }
    setup::run(setup::Needs::ALL)?;
    let legs = run_legs(&selected, args.filter.as_deref(), args.timeout_minutes)?;
    println!("{}", table(&legs));
    let failed: Vec<&str> = legs
        .iter()
        .filter(|l| !l.ok)
        .map(|l| l.kernel.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("kernel tests failed on: {}", failed.join(", "))
    }
}

/// Runs the selected legs (already set up) and returns their outcomes; used by
/// `cargo xtask test` for its VM leg too.
pub fn run_legs(
    selected: &[Selected],
    filter: Option<&str>,
    timeout_minutes: u64,
) -> anyhow::Result<Vec<Leg>> {
    let sluice = cmd::build_sluice(true)?;
    let tests = build_tests()?;
    let mut legs = Vec::new();
    for which in selected {
        let start = Instant::now();
        let mut leg = match which {
            Selected::Host => host_leg(&tests, &sluice, filter)?,
            Selected::Vm(spec) => {
                let kernel = kernel::fetch(spec)?;
                let filter = spec.refused.or(filter);
                let show_output = spec.refused.is_some();
                let image = initramfs::build(&kernel, &tests, &sluice, filter, show_output)?;
                let mut leg = qemu::boot(spec, &kernel, &image, timeout_minutes)?;
                if spec.refused.is_some() && leg.ok {
                    leg.note = "refused by the feature probe, as it must be".into();
                }
                leg
            }
        };
        leg.seconds = start.elapsed().as_secs();
        eprintln!(
            "xtask: kernel {} ({}): {} passed, {} failed in {} s{}",
            leg.kernel,
            leg.release,
            leg.passed,
            leg.failed,
            leg.seconds,
            if leg.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", leg.note)
            }
        );
        legs.push(leg);
    }
    Ok(legs)
}

/// A kernel the run covers.
#[derive(Debug, Clone, Copy)]
pub enum Selected {
    Host,
    Vm(&'static kernel::Spec),
}

/// Parses `--kernel`.
pub fn select(which: &str) -> anyhow::Result<Vec<Selected>> {
    let vms = || MATRIX.iter().map(Selected::Vm);
    Ok(match which {
        "all" => std::iter::once(Selected::Host).chain(vms()).collect(),
        "vms" => vms().collect(),
        "host" => vec![Selected::Host],
        name => match MATRIX.iter().find(|s| s.name == name) {
            Some(spec) => vec![Selected::Vm(spec)],
            None => {
                let known: Vec<&str> = MATRIX.iter().map(|s| s.name).collect();
                bail!(
                    "unknown kernel `{name}`: choose one of {}, host, vms or all",
                    known.join(", ")
                )
            }
        },
    })
}

/// The kernel test binaries (release, like the rest of the suite).
#[derive(Debug)]
pub struct TestBinaries(pub Vec<PathBuf>);

/// Builds the `vm-tests` test binaries and returns their paths.
fn build_tests() -> anyhow::Result<TestBinaries> {
    let mut build = Command::new(cmd::cargo());
    build.args([
        "test",
        "--release",
        "--package",
        "vm-tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    eprintln!("xtask: $ cargo test --release --package vm-tests --no-run");
    let out = build.output().context("start cargo")?;
    if !out.status.success() {
        bail!("building the kernel tests failed ({})", out.status);
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["profile"]["test"].as_bool() == Some(true);
        if let (true, Some(exe)) = (is_test, msg["executable"].as_str()) {
            binaries.push(PathBuf::from(exe));
        }
    }
    if binaries.is_empty() {
        bail!("cargo built no kernel test binaries");
    }
    binaries.sort();
    Ok(TestBinaries(binaries))
}

/// The host leg: the same binaries, natively, one test at a time.
fn host_leg(
    tests: &TestBinaries,
    sluice: &std::path::Path,
    filter: Option<&str>,
) -> anyhow::Result<Leg> {
    setup::node_bpffs()?;
    let mut counts = Counts::default();
    let mut ok = true;
    for bin in &tests.0 {
        let mut test = Command::new(bin);
        test.env("SLUICE_BIN", sluice).arg("--test-threads=1");
        if let Some(filter) = filter {
            test.arg(filter);
        }
        eprintln!("xtask: $ {}", bin.display());
        let out = test
            .output()
            .with_context(|| format!("run {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        counts.add_output(&text);
        ok &= out.status.success();
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    Ok(Leg {
        kernel: "host".into(),
        release,
        passed: counts.passed,
        failed: counts.failed,
        ok: ok && counts.failed == 0 && counts.passed > 0,
        seconds: 0,
        note: String::new(),
    })
}

/// Test counts from `test result:` lines.
#[derive(Debug, Default)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
}

impl Counts {
    /// Adds the counts of every `test result:` line in `text`.
    pub fn add_output(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(result) = line.trim().strip_prefix("test result: ") {
                self.passed += crate::test::count(result, "passed");
                self.failed += crate::test::count(result, "failed");
            }
        }
    }
}

/// The results as a Markdown table (what README's status table shows).
pub fn table(legs: &[Leg]) -> String {
    let mut out =
        String::from("| kernel | release | result | tests | time |\n|---|---|---|---|---|\n");
    for leg in legs {
        let result = if leg.ok { "pass" } else { "FAIL" };
        let _ = writeln!(
            out,
            "| {} | {} | {result}{} | {} passed, {} failed | {} s |",
            leg.kernel,
            leg.release,
            if leg.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", leg.note)
            },
            leg.passed,
            leg.failed,
            leg.seconds
        );
    }
    out
}
