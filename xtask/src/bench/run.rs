//! The measuring run: world, daemon, peers, workloads in order, report.
//!
//! Everything started here is owned by a guard that stops it on drop; Ctrl-C and SIGTERM
//! only set a flag, so the run stops between two measurements and still cleans up.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::bail;

use super::BenchArgs;
use super::daemon::{Daemon, Variant};
use super::env::Env;
use super::peers::{self, Kind};
use super::report::{Machine, Report, Row};
use super::workloads::{self, Ctx};
use crate::cmd;

/// Extra passthrough rules in the W10 start-up configuration (plus the bench's one).
const MANY_RULES: usize = 999;

/// Measures every selected workload and writes the report.
pub fn measure(args: &BenchArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)?
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches('Z')
        .to_owned()
        + "Z";
    raise_nofile();
    let stop = watch_signals();
    let bin = cmd::target_dir().join("release/sluice");
    let xtask = std::env::current_exe()?;
    eprintln!("bench: starting the namespaces and upstreams");
    let env = Env::start(args.quick)?;
    let daemon = Daemon::start(&env, &bin, Variant::plain("main"))?;
    let mut rows = Vec::new();
    if args.wants("W10") {
        workloads::w10(&mut rows, 0, daemon.ready_after);
    }
    let mut running = Vec::new();
    let mut missing = Vec::new();
    if !args.no_peers {
        for kind in [Kind::Haproxy, Kind::Squid, Kind::Mitmproxy] {
            match peers::start(&env, kind) {
                Ok(peer) => running.push(peer),
                Err(e) => {
                    eprintln!("bench: {} did not start: {e:#}", kind.name());
                    missing.push((
                        kind,
                        format!("{e:#}").lines().next().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }
    let mut ctx = Ctx {
        env: &env,
        daemon: &daemon,
        peers: &running,
        missing: &missing,
        args,
        xtask: xtask.clone(),
        rows,
    };
    #[expect(clippy::type_complexity, reason = "a table of named steps")]
    let steps: [(&str, fn(&mut Ctx<'_>)); 8] = [
        ("W1", workloads::w1),
        ("W2a", workloads::w2a),
        ("W2b", workloads::w2b),
        ("W3", workloads::w3),
        ("W4", workloads::w4),
        ("W5", workloads::w5),
        ("W6", workloads::w6),
        ("W9", workloads::w9),
    ];
    for (id, step) in steps {
        let wanted = args.wants(id) || (id.starts_with("W2") && args.wants("W2"));
        if wanted {
            check(&stop)?;
            eprintln!("bench: ---- {id} ----");
            step(&mut ctx);
        }
    }
    let mut profiles = Vec::new();
    let mut notes = Vec::new();
    if !args.quick && args.only.is_empty() || args.profile {
        check(&stop)?;
        match workloads::profile(&ctx) {
            Ok(p) => {
                profiles.push(p.sluice);
                profiles.extend(p.haproxy);
                notes.extend(p.notes);
            }
            Err(e) => notes.push(format!("no profile: {e}")),
        }
    }
    if args.wants("W7") {
        check(&stop)?;
        eprintln!("bench: ---- W7 ----");
        workloads::w7(&mut ctx);
    }
    let mut rows = std::mem::take(&mut ctx.rows);
    drop(ctx);
    drop(daemon);
    if args.wants("W8") {
        check(&stop)?;
        eprintln!("bench: ---- W8 ----");
        rows.extend(workloads::w8(&env, &bin, &xtask, args));
    }
    if args.wants("W10") {
        check(&stop)?;
        eprintln!("bench: ---- W10 ----");
        let many = Daemon::start(
            &env,
            &bin,
            Variant {
                name: "rules",
                extra_rules: MANY_RULES,
                redis_url: None,
            },
        )?;
        workloads::w10(&mut rows, MANY_RULES + 1, many.ready_after);
        let mut ctx = Ctx {
            env: &env,
            daemon: &many,
            peers: &running,
            missing: &missing,
            args,
            xtask,
            rows,
        };
        workloads::w10_reload(&mut ctx);
        rows = std::mem::take(&mut ctx.rows);
    }
    notes.extend(standard_notes(&missing));
    let mut report = Report {
        started,
        quick: args.quick,
        run_seconds: args.duration().as_secs_f64(),
        total_seconds: 0.0,
        machine: Machine::read(),
        versions: versions(),
        rows: sort(rows),
        checks: Vec::new(),
        profiles,
        notes,
    };
    report.checks = workloads::targets::checks(&report);
    report.total_seconds = t0.elapsed().as_secs_f64();
    let path = report.write(&results_dir())?;
    println!("{}", report.markdown());
    eprintln!("bench: wrote {} (and .json, latest.md)", path.display());
    Ok(())
}

/// `bench/results/` in the work tree.
fn results_dir() -> PathBuf {
    cmd::workspace_root().join("bench/results")
}

/// Rows grouped by workload in PERFORMANCE.md order, keeping the run order within one.
fn sort(mut rows: Vec<Row>) -> Vec<Row> {
    let key = |w: &str| -> u32 {
        let digits: String = w.chars().filter(char::is_ascii_digit).collect();
        digits.parse::<u32>().unwrap_or(99) * 2 + u32::from(w.ends_with('b'))
    };
    rows.sort_by_key(|r| key(&r.workload));
    rows
}

fn check(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("bench: interrupted; cleaning up");
    }
    Ok(())
}

/// Sets a flag on Ctrl-C or SIGTERM instead of dying, so guards can clean up.
fn watch_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let _ = ready_tx.send(());
            loop {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                eprintln!("bench: signal received; stopping after the current measurement");
                set.store(true, Ordering::Relaxed);
            }
        });
    });
    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
    flag
}

/// 10k idle connections need more than the default 1024 descriptors (inherited by the
/// daemon, the peers and the clients).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Root may raise the hard limit too (HAProxy sizes its table from maxconn 40000).
    if setrlimit(Resource::RLIMIT_NOFILE, 1 << 20, 1 << 20).is_ok() {
        return;
    }
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn versions() -> Vec<(String, String)> {
    let probes: [(&str, &[&str]); 9] = [
        (
            "sluice",
            &["git", "-C", ".", "rev-parse", "--short", "HEAD"],
        ),
        ("nginx", &["nginx", "-v"]),
        ("haproxy", &["haproxy", "-v"]),
        ("squid", &["squid", "-v"]),
        (
            "mitmproxy",
            &["/var/cache/sluice-bench/venv/bin/mitmdump", "--version"],
        ),
        ("h2load", &["h2load", "--version"]),
        ("wrk", &["wrk", "-v"]),
        ("curl", &["curl", "--version"]),
        ("iperf3", &["iperf3", "--version"]),
    ];
    probes
        .iter()
        .map(|(name, argv)| {
            let out = Command::new(argv[0])
                .args(&argv[1..])
                .current_dir(cmd::workspace_root())
                .output();
            let text = out
                .map(|o| {
                    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                    t.push_str(&String::from_utf8_lossy(&o.stderr));
                    t
                })
                .unwrap_or_default();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("?")
                .trim()
                .to_owned();
            ((*name).to_owned(), first)
        })
        .collect()
}

fn standard_notes(missing: &[(Kind, String)]) -> Vec<String> {
    let mut notes = vec![
        "Everything ran on one 2-vCPU machine: client, proxy and upstream share the cores, so \
         absolute numbers are low and noisy; compare ratios within a case."
            .to_owned(),
        "Upstreams: nginx 1 worker (small bodies, 100 MB file); the SSE stream and the upload \
         sink are the Rust fake of the e2e tests (it hashes uploads with SHA-256, which caps \
         upload MB/s for every path alike)."
            .to_owned(),
        "W7 runs two sessions in one daemon, alternating: a policy of 1000 allowed hosts and \
         1000 host rules (only the last names bench.test) and the same with 1; the best run \
         of each is compared. The decision alone is criterion's `policy` bench, run for 3 s with --criterion."
            .to_owned(),
        "W8 starts a fresh daemon per store; Redis (redis-server, unix socket, AOF fsynced \
         per write) runs in the node namespace and is shut down a third into the Redis-down \
         run, then started again; the stream is then counted per run."
            .to_owned(),
        "oha is not installed: `cargo install oha` would add minutes of compiling on a fresh \
         2-core machine; h2load (per-request log) gives the h1/h2 percentiles instead."
            .to_owned(),
        "mitmproxy runs with stream_large_bodies=1 (streams SSE and large bodies instead of \
         buffering them whole)."
            .to_owned(),
    ];
    for (kind, why) in missing {
        notes.push(format!("{} did not start: {why}", kind.name()));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_by_workload_number() {
        let rows = ["W10", "W2b", "W1", "W2a", "W3"]
            .iter()
            .map(|w| Row {
                workload: (*w).into(),
                ..Row::default()
            })
            .collect();
        let order: Vec<String> = sort(rows).into_iter().map(|r| r.workload).collect();
        assert_eq!(order, ["W1", "W2a", "W2b", "W3", "W10"]);
    }

    #[test]
    fn results_dir_is_in_the_tree() {
        assert!(results_dir().ends_with("bench/results"));
    }
}
