//! Node-level workloads: W9 (eBPF redirect cost), W10 (start-up), and an optional `perf`
//! profile of the daemon.

use std::process::Command;
use std::time::Duration;

use super::{Ctx, Service, Via, num};
use crate::bench::proc::Probe;
use crate::bench::report::{CpuProfile, Row};
use crate::bench::tools::{self, Load};

/// Case names shared with the target checks.
pub mod case {
    /// W9.
    pub const CONNECT: &str = "bare TCP connects, 4 at once (bench-client connect)";
    /// W10 start.
    pub const START: &str = "spawn → GET /v1/health answers 200";
}

/// W9: connect rate of a captured client (eBPF `connect4` redirect to the proxy port) vs
/// an uncaptured client connecting straight to the same proxy port.
///
/// Both clients close with RST (zero linger), so neither leaves TIME_WAIT behind to exhaust
/// the ephemeral ports; errors are reported by kind (errno). On the straight path the daemon
/// finds no capture record and resets at once, often before the client polls its connect
/// (`ECONNRESET`): those handshakes completed, so they count as connects.
pub fn w9(ctx: &mut Ctx<'_>) {
    let ms = ctx.args.duration().as_millis().to_string();
    let mut kinds = String::new();
    ctx.run(
        "W9",
        case::CONNECT,
        &["capture"],
        "conn/s",
        "conn",
        |ctx, via| {
            let (addr, _) = via.dial(Service::Nginx);
            connect(ctx, via, addr, &ms, &mut kinds)
        },
    );
    note(
        ctx,
        "to 203.0.113.10:443, redirected by cgroup/connect4 to 127.0.0.1:15001",
        &kinds,
    );
    kinds.clear();
    // The same client outside any sandbox: no eBPF program runs; the daemon finds no record
    // and closes, which the client (already connected) does not wait for.
    ctx.run(
        "W9",
        case::CONNECT,
        &["direct"],
        "conn/s",
        "conn",
        |ctx, via| connect(ctx, via, "127.0.0.1:15001", &ms, &mut kinds),
    );
    note(
        ctx,
        "straight to the proxy port 127.0.0.1:15001, no eBPF on the path (the daemon finds no \
         capture record and resets at once: a little less work than for a captured connect)",
        &kinds,
    );
}

/// Sets the last row's note: `what`, then the connect errors by kind, if any.
fn note(ctx: &mut Ctx<'_>, what: &str, kinds: &str) {
    if let Some(row) = ctx.rows.last_mut() {
        row.note = if kinds.is_empty() {
            what.to_owned()
        } else {
            format!("{what}; {kinds}")
        };
    }
}

fn connect(
    ctx: &Ctx<'_>,
    via: &super::Via<'_>,
    addr: &str,
    ms: &str,
    kinds: &mut String,
) -> anyhow::Result<Load> {
    let args: Vec<String> = ["connect", "--addr", addr, "--duration-ms", ms]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let out = ctx.client(via, &args, ctx.bound())?;
    let reset = num(&out, "reset_by_peer") as u64;
    *kinds = out["error_kinds"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("error {k} ×{}", v.as_u64().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    if reset > 0 {
        let sep = if kinds.is_empty() { "" } else { "; " };
        *kinds = format!(
            "{kinds}{sep}{reset} connects reset by the daemon before the client polled them \
             (ECONNRESET after the handshake; counted as connects)"
        );
    }
    Ok(Load {
        rate: num(&out, "rate"),
        units: num(&out, "connects"),
        errors: num(&out, "errors") as u64,
        ..Load::default()
    })
}

/// W10: time from spawn to a healthy control API, per configuration.
pub fn w10(rows: &mut Vec<Row>, rules: usize, ready: Duration) {
    rows.push(Row {
        workload: "W10".into(),
        case: format!("{} — {rules} rules", case::START),
        path: "sluice".into(),
        entry: "-".into(),
        unit: "ms".into(),
        value: Some(ready.as_secs_f64() * 1e3),
        note: "includes loading and attaching the eBPF programs and the CA".into(),
        ..Row::default()
    });
}

/// Profiles of Sluice (via capture) and of HAProxy (when the peers run) under the same
/// W1-style h1 load, one after the other.
#[derive(Debug, Default)]
pub struct Profiles {
    /// The daemon's profile.
    pub sluice: CpuProfile,
    /// HAProxy's profile, when it ran and could be profiled.
    pub haproxy: Option<CpuProfile>,
    /// Why a profile is missing.
    pub notes: Vec<String>,
}

/// Records `perf` samples of the daemon, then of HAProxy, each during a W1-style h1 load
/// through it; the daemon's failure is an error, HAProxy's a note.
pub fn profile(ctx: &Ctx<'_>) -> Result<Profiles, String> {
    let sluice = profile_via(ctx, "capture")?;
    let mut profiles = Profiles {
        sluice,
        ..Profiles::default()
    };
    match ctx.vias(&["haproxy"]).pop() {
        Some(Ok(via)) => match profile_via_of(ctx, &via) {
            Ok(p) => profiles.haproxy = Some(p),
            Err(e) => profiles.notes.push(format!("no HAProxy profile: {e}")),
        },
        Some(Err((_, _, why))) => profiles.notes.push(format!("no HAProxy profile: {why}")),
        None => {}
    }
    Ok(profiles)
}

fn profile_via(ctx: &Ctx<'_>, name: &str) -> Result<CpuProfile, String> {
    let via = ctx
        .vias(&[name])
        .pop()
        .and_then(Result::ok)
        .ok_or_else(|| format!("no {name} path"))?;
    profile_via_of(ctx, &via)
}

fn profile_via_of(ctx: &Ctx<'_>, via: &Via<'_>) -> Result<CpuProfile, String> {
    let pid = via.pid.ok_or("the path has no proxy process")?;
    let perf = ctx.scratch(&format!("perf-{}.data", via.path));
    let secs = ctx.secs();
    let mut record = Command::new("perf");
    record
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&perf)
        .args([
            "-p",
            &pid.to_string(),
            "--",
            "sleep",
            &(secs + 1).to_string(),
        ]);
    let mut recorder = record
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("perf not runnable: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let probe = Probe::start(pid);
    let load = super::http::h2load(ctx, via, &["--h1", "-c16", "-m1"], secs);
    let usage = probe.finish();
    let _ = recorder.wait();
    let load = load.map_err(|e| format!("load during profile failed: {e}"))?;
    let cpu_us_per_req = (load.units > 0.0).then(|| usage.cpu_s * 1e6 / load.units);
    let report = |args: &[&str]| -> Result<String, String> {
        let mut report = Command::new("perf");
        report
            .args(["report", "--stdio", "-g", "none", "-i"])
            .arg(&perf)
            .args(args);
        let out =
            tools::run_bounded(report, Duration::from_secs(120)).map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let hot = report(&[
        "--no-children",
        "--sort",
        "dso,symbol",
        "--percent-limit",
        "1.5",
    ])?;
    let hotspots = hot
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('%') && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .take(25)
        .collect();
    let own = report(&["--no-children", "--sort", "dso,symbol"])?;
    let children = report(&["--children", "--sort", "symbol"])?;
    let proxy = match via.path {
        "sluice" => format!("Sluice ({})", via.entry),
        "haproxy" => format!("HAProxy ({})", via.entry),
        other => format!("{other} ({})", via.entry),
    };
    Ok(CpuProfile {
        proxy,
        hotspots,
        breakdown: crate::bench::profile::breakdown(&children, &own),
        cpu_us_per_req,
    })
}
