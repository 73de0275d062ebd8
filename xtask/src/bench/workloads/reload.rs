//! W10 reload: the config re-read under load must drop no connection.
//!
//! With the 1k-rule daemon: the round trip of `sluice reload` (a changed config each time),
//! then kept-alive and new-connection-per-request loads through capture, each once quiet and
//! once with a SIGHUP every 200 ms (a passthrough rule for an unrelated host added each
//! time); the errors of the two runs are compared. A build without reload is detected first
//! (`sluice reload --help` fails) and reported n/a, without sending a SIGHUP that would kill
//! a daemon with no handler for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::http::{h2load, wrk_close};
use super::{Ctx, Service, Via};
use crate::bench::report::Row;
use crate::bench::tools::{self, Load};

/// Case names shared with the target checks.
pub mod case {
    /// Kept-alive requests.
    pub const KEEP: &str = "h1 keep-alive, 16 conns (h2load --h1)";
    /// A new connection per request.
    pub const NEW_CONN: &str = "new TLS conn per request, 8 conns (wrk Connection: close)";
    /// Suffix of the runs without reloads.
    pub const QUIET: &str = "no reload";
    /// Suffix of the runs with reloads.
    pub const RELOADING: &str = "SIGHUP every 200 ms, config changed each time";
    /// The CLI round trip.
    pub const ROUND_TRIP: &str = "`sluice reload` round trip, config with 1000 rules";
    /// The n/a row when the build has no reload.
    pub const UNSUPPORTED: &str = "config reload under load";
}

/// Fact: reloads sent during a run.
pub const RELOADS: &str = "reloads";
/// How often a SIGHUP goes out during the loaded runs.
const EVERY: Duration = Duration::from_millis(200);
/// Round trips timed.
const ROUND_TRIPS: usize = 5;

/// `<base> — <suffix>`.
pub fn reload_case(base: &str, reloading: bool) -> String {
    let suffix = if reloading {
        case::RELOADING
    } else {
        case::QUIET
    };
    format!("{base} — {suffix}")
}

/// W10 reload on `ctx`'s daemon.
pub fn w10_reload(ctx: &mut Ctx<'_>) {
    if let Err(why) = supported(ctx) {
        let row = Row::na("W10", case::UNSUPPORTED, "sluice", "capture", why);
        super::log_row(&row);
        ctx.rows.push(row);
        return;
    }
    let row = round_trip(ctx);
    super::log_row(&row);
    ctx.rows.push(row);
    if !ctx.daemon.alive() {
        return;
    }
    let s = ctx.secs();
    type Load1 = fn(&Ctx<'_>, &Via<'_>, u64) -> anyhow::Result<Load>;
    let loads: [(&str, &str, &str, Load1); 2] = [
        (case::KEEP, "req/s", "req", |ctx, via, s| {
            h2load(ctx, via, &["--h1", "-c16", "-m1"], s)
        }),
        (case::NEW_CONN, "conn/s", "conn", |ctx, via, _| {
            wrk_close(ctx, via, Service::Nginx)
        }),
    ];
    for (base, unit, cpu_unit, load) in loads {
        for reloading in [false, true] {
            let _ = ctx.daemon.settle(Duration::from_secs(5));
            let via = ctx.session_via(None);
            let sent = AtomicU64::new(0);
            let case = reload_case(base, reloading);
            let mut row = ctx.measure("W10", &case, unit, cpu_unit, &via, &mut |ctx, via| {
                if reloading {
                    with_reloads(ctx, &sent, || load(ctx, via, s))
                } else {
                    load(ctx, via, s)
                }
            });
            if reloading {
                let n = sent.load(Ordering::Relaxed);
                row.facts.insert(RELOADS.into(), n as f64);
                let failed = ctx
                    .daemon
                    .log_problems(10_000)
                    .iter()
                    .filter(|l| l.to_ascii_lowercase().contains("reload"))
                    .count();
                row.note = format!(
                    "{n} SIGHUPs during the run; {failed} reload warnings/errors in the daemon log"
                );
                if !ctx.daemon.alive() {
                    row.note = format!("the daemon died during the reloads; {}", row.note);
                }
            }
            super::log_row(&row);
            ctx.rows.push(row);
            if !ctx.daemon.alive() {
                return;
            }
        }
    }
}

/// `Err(why)` when this build of `sluice` has no reload.
fn supported(ctx: &Ctx<'_>) -> Result<(), String> {
    let mut cmd = ctx.daemon.cli(ctx.env);
    cmd.args(["reload", "--help"]);
    match tools::run_bounded(cmd, Duration::from_secs(20)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = format!("{e:#}");
            let line = msg
                .lines()
                .find(|l| l.contains("unrecognized subcommand"))
                .or_else(|| msg.lines().next())
                .unwrap_or("")
                .trim();
            Err(format!(
                "this build of sluice has no reload (`sluice reload --help`: {line})"
            ))
        }
    }
}

/// Times `sluice reload` with a changed config, [`ROUND_TRIPS`] times.
fn round_trip(ctx: &Ctx<'_>) -> Row {
    let mut row = Row {
        workload: "W10".into(),
        case: case::ROUND_TRIP.into(),
        path: "sluice".into(),
        entry: "-".into(),
        unit: "ms".into(),
        ..Row::default()
    };
    let mut times = Vec::new();
    for i in 0..ROUND_TRIPS {
        if let Err(e) = ctx.daemon.write_config(&[format!("reload-rt-{i}.example")]) {
            row.note = format!("failed: cannot rewrite the config: {e:#}");
            return row;
        }
        let mut cmd = ctx.daemon.cli(ctx.env);
        cmd.arg("reload");
        let t0 = Instant::now();
        if let Err(e) = tools::run_bounded(cmd, Duration::from_secs(30)) {
            let msg = format!("{e:#}");
            row.note = format!(
                "failed: `sluice reload`: {}",
                msg.lines().next().unwrap_or("")
            );
            return row;
        }
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let shown: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    let (p50, _) = tools::percentiles(&mut times);
    row.value = p50;
    row.note = format!(
        "median of {ROUND_TRIPS} (ms: {}), including starting the CLI process",
        shown.join(", ")
    );
    row
}

/// Runs `load` while another thread rewrites the config and sends SIGHUP every [`EVERY`].
fn with_reloads(
    ctx: &Ctx<'_>,
    sent: &AtomicU64,
    load: impl FnOnce() -> anyhow::Result<Load>,
) -> anyhow::Result<Load> {
    use nix::sys::signal::{Signal, kill};
    let done = AtomicBool::new(false);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(ctx.daemon.pid()).unwrap_or(i32::MAX));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(EVERY);
                if done.load(Ordering::Relaxed) || !ctx.daemon.alive() {
                    break;
                }
                i += 1;
                if ctx
                    .daemon
                    .write_config(&[format!("reload-{i}.example")])
                    .is_ok()
                    && kill(pid, Signal::SIGHUP).is_ok()
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let result = load();
        done.store(true, Ordering::Relaxed);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names() {
        assert_eq!(
            reload_case(case::KEEP, true),
            format!("{} — {}", case::KEEP, case::RELOADING)
        );
        assert!(reload_case(case::NEW_CONN, false).ends_with("— no reload"));
    }
}
