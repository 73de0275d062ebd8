//! `cargo xtask bench`: Sluice against the direct path and against peer proxies, one run,
//! side by side (see `shared/design/PERFORMANCE.md`).
//!
//! Everything runs on this machine inside two network namespaces the harness creates (the
//! "node" with Sluice, the peers and the clients; the "net" with the upstreams), joined by a
//! veth, with no default route. Absolute numbers drift on shared machines, so every workload
//! runs its baseline ("direct": the same client straight to the same upstream) in the same
//! invocation and the report gives ratios. Results go to `bench/results/`.

pub mod client;
mod control;
mod daemon;
mod env;
mod install;
mod peers;
mod proc;
mod profile;
mod report;
mod run;
mod tools;
mod workloads;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::{cmd, setup};

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Short runs (about 1–2 s per workload) for development; results are marked "quick".
    #[arg(long)]
    pub quick: bool,
    /// Only these workloads, comma-separated (e.g. `W1,W3`). Default is all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip the peers (mitmproxy, Squid, HAProxy): direct and Sluice only.
    #[arg(long)]
    pub no_peers: bool,
    /// Record a `perf` profile of the daemon during W1 and W3 and list its hottest symbols.
    #[arg(long)]
    pub profile: bool,
    /// Also compile and run the criterion bench of one policy decision (W7). Off by default:
    /// benches build with dev-dependency features, so the first build recompiles the whole
    /// dependency tree (5–15 minutes here) and every change to gateway-user is built twice.
    #[arg(long)]
    pub criterion: bool,
}

impl BenchArgs {
    /// Whether workload `id` (`W1` …) is selected.
    pub fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w.eq_ignore_ascii_case(id))
    }

    /// How long one timed load run lasts.
    pub fn duration(&self) -> Duration {
        if self.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        }
    }
}

/// Compiles the criterion bench `gateway-user/benches/policy.rs` (W7's decision cost) and
/// returns its executable; `None` (with a warning) when it does not build.
fn build_policy_bench() -> Option<std::path::PathBuf> {
    let out = std::process::Command::new(cmd::cargo())
        .args([
            "bench",
            "--package",
            "gateway-user",
            "--bench",
            "policy",
            "--no-run",
        ])
        .args(["--message-format", "json"])
        .stderr(std::process::Stdio::inherit())
        .output();
    let exe = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let bench = v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bench"));
            (bench && v["target"]["name"] == "policy")
                .then(|| v["executable"].as_str().map(std::path::PathBuf::from))?
        })
    });
    if exe.is_none() {
        eprintln!(
            "bench: warning: the criterion bench `policy` did not build; W7's decision row will be n/a"
        );
    }
    exe
}

/// Runs the benchmark: installs what is missing, builds the release binaries, re-runs itself
/// as the release build (the clients and fake upstreams live in this binary), then measures.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !setup::is_root() {
        bail!(
            "bench: network namespaces, cgroups and eBPF need root: run `sudo -E cargo xtask bench`"
        );
    }
    if cfg!(debug_assertions) {
        setup::run(setup::Needs::ALL)?;
        setup::node_bpffs()?;
        install::run()?;
        // Before the release `sluice`: building a bench unifies dev-dependency features and
        // re-links `target/release/sluice`; the build after it links the plain one back.
        let policy_bench = if args.criterion && args.wants("W7") {
            build_policy_bench()
        } else {
            None
        };
        cmd::build_sluice(true)?;
        let mut build = std::process::Command::new(cmd::cargo());
        build.args(["build", "--release", "--package", "xtask"]);
        cmd::status(build).context("bench: build the release xtask")?;
        let mut again = std::process::Command::new(cmd::target_dir().join("release/xtask"));
        again
            .arg("bench")
            .args(std::env::args().skip_while(|a| a != "bench").skip(1));
        again.env("CARGO", cmd::cargo());
        if let Some(exe) = policy_bench {
            again.env(workloads::POLICY_BENCH_ENV, exe);
        }
        return cmd::exec(again);
    }
    run::measure(args)
}
