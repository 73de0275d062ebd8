//! Node-level workloads: W8 (audit to Redis), W9 (eBPF redirect cost), W10 (start-up and
//! reload), and an optional `perf` profile of the daemon.

use std::process::Command;
use std::time::Duration;

use super::{Ctx, Service, num};
use crate::bench::report::Row;
use crate::bench::tools::{self, Load};

/// Case names shared with the target checks.
pub mod case {
    /// W9.
    pub const CONNECT: &str = "bare TCP connects, 4 at once (bench-client connect)";
    /// W10 start.
    pub const START: &str = "spawn → GET /v1/health answers 200";
}

/// W8: audit to Redis on / Redis down — not measurable yet.
pub fn w8(ctx: &mut Ctx<'_>) {
    ctx.rows.push(Row::na(
        "W8",
        "audit to Redis on / Redis down",
        "sluice",
        "capture",
        "the daemon writes audit records to a JSONL file; the Redis audit sink (issue 4) is not merged yet",
    ));
}

/// W9: connect rate of a captured client (eBPF `connect4` redirect to the proxy port) vs
/// an uncaptured client connecting straight to the same proxy port.
pub fn w9(ctx: &mut Ctx<'_>) {
    let ms = ctx.args.duration().as_millis().to_string();
    ctx.run(
        "W9",
        case::CONNECT,
        &["capture"],
        "conn/s",
        "conn",
        |ctx, via| {
            let (addr, _) = via.dial(Service::Nginx);
            connect(ctx, via, addr, &ms)
        },
    );
    if let Some(row) = ctx.rows.last_mut() {
        row.note = "to 203.0.113.10:443, redirected by cgroup/connect4 to 127.0.0.1:15001".into();
    }
    // The same client outside any sandbox: no eBPF program runs; the daemon finds no record
    // and closes, which the client (already connected) does not wait for.
    ctx.run(
        "W9",
        case::CONNECT,
        &["direct"],
        "conn/s",
        "conn",
        |ctx, via| connect(ctx, via, "127.0.0.1:15001", &ms),
    );
    if let Some(row) = ctx.rows.last_mut() {
        row.note = "straight to the proxy port 127.0.0.1:15001, no eBPF on the path".into();
    }
}

fn connect(ctx: &Ctx<'_>, via: &super::Via<'_>, addr: &str, ms: &str) -> anyhow::Result<Load> {
    let args: Vec<String> = ["connect", "--addr", addr, "--duration-ms", ms]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let out = ctx.client(via, &args, ctx.bound())?;
    Ok(Load {
        rate: num(&out, "rate"),
        units: num(&out, "connects"),
        errors: num(&out, "errors") as u64,
        ..Load::default()
    })
}

/// W10: time from spawn to a healthy control API, per configuration; reload is n/a.
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

/// The W10 reload row: there is no reload yet.
pub fn w10_reload(rows: &mut Vec<Row>) {
    rows.push(Row::na(
        "W10",
        "config reload under load",
        "sluice",
        "-",
        "the daemon has no reload (no SIGHUP handler or control endpoint); a config change is a restart",
    ));
}

/// Records `perf` samples of the daemon during a W1-style h1 load via capture and returns
/// the hottest symbols (self time), or why it could not.
pub fn profile(ctx: &Ctx<'_>) -> Result<Vec<String>, String> {
    let perf = ctx.scratch("perf.data");
    let secs = ctx.secs();
    let mut record = Command::new("perf");
    record
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&perf)
        .args([
            "-p",
            &ctx.daemon.pid().to_string(),
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
    let via = ctx
        .vias(&["capture"])
        .pop()
        .and_then(Result::ok)
        .ok_or("no capture path")?;
    let load = super::http::h2load(ctx, &via, &["--h1", "-c16", "-m1"], secs);
    let _ = recorder.wait();
    load.map_err(|e| format!("load during profile failed: {e}"))?;
    let mut report = Command::new("perf");
    report
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "1.5",
            "-i",
        ])
        .arg(&perf)
        .args(["-g", "none"]);
    let out = tools::run_bounded(report, Duration::from_secs(120)).map_err(|e| format!("{e:#}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('%') && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .take(25)
        .collect())
}
