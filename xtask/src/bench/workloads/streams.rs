//! Long-lived workloads: W4 (SSE delay per event) and W6 (idle intercepted connections).

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Ctx, Service, Via, num};
use crate::bench::env::{SSE_EVENTS_FULL, SSE_EVENTS_QUICK, SSE_INTERVAL, stop_child};
use crate::bench::proc::{Probe, status_kib};
use crate::bench::report::Row;
use crate::bench::tools::Load;

/// Case names shared with the target checks.
pub mod case {
    /// W4.
    pub const SSE: &str = "SSE, 100 streams, 1 event / 10 ms each (bench-client sse)";
    /// W6.
    pub const IDLE: &str = "idle TLS conns after one request each (bench-client idle)";
}

/// W4: 100 SSE streams, each event stamped with its send time; delay = receive − send.
pub fn w4(ctx: &mut Ctx<'_>) {
    let events = if ctx.args.quick {
        SSE_EVENTS_QUICK
    } else {
        SSE_EVENTS_FULL
    };
    let all = super::ALL_PATHS;
    let bound = SSE_INTERVAL * events as u32 + Duration::from_secs(90);
    ctx.run("W4", case::SSE, &all, "events/s", "event", |ctx, via| {
        let mut args = vec!["sse".into()];
        args.extend(ctx.dest_args(via, Service::App));
        args.extend([
            "--streams".into(),
            "100".into(),
            "--events".into(),
            events.to_string(),
        ]);
        let out = ctx.client(via, &args, bound)?;
        let got = num(&out, "events");
        if got == 0.0 {
            anyhow::bail!("no event arrived: {}", out["first_error"]);
        }
        Ok(Load {
            rate: got / (SSE_INTERVAL * events as u32).as_secs_f64(),
            units: got,
            p50_us: out["p50_us"].as_f64(),
            p99_us: out["p99_us"].as_f64(),
            errors: (num(&out, "expected") - got) as u64,
        })
    });
}

/// W6: N idle TLS connections (one request each, then idle): memory per connection and
/// idle CPU. 10k for Sluice and HAProxy, fewer for the slow peers (said in the note).
pub fn w6(ctx: &mut Ctx<'_>) {
    let full = if ctx.args.quick { 1000 } else { 10_000 };
    let small = if ctx.args.quick { 200 } else { 1000 };
    for via in ctx.vias(&["capture", "explicit", "haproxy", "squid", "mitmproxy"]) {
        let row = match via {
            Err((path, entry, why)) => Row::na("W6", case::IDLE, path, entry, why),
            Ok(via) => {
                // HAProxy's maxconn (9000) is bounded by the fd limit (20000 here).
                let n = match via.path {
                    "squid" | "mitmproxy" => small,
                    "haproxy" => full.min(8000),
                    _ => full,
                };
                idle(ctx, &via, n).unwrap_or_else(|e| {
                    let mut row = Row::na("W6", case::IDLE, via.path, via.entry, "");
                    row.note = format!("failed: {}", format!("{e:#}").lines().next().unwrap_or(""));
                    row
                })
            }
        };
        eprintln!(
            "bench: W6 [{} {}]: {:?} KiB/conn {}",
            row.path, row.entry, row.value, row.note
        );
        ctx.rows.push(row);
    }
}

/// How long W6 lets the Sluice daemon settle before measuring: it gives freed memory back
/// every 5 s (`daemon::memory`), and without that the explicit row would reuse the heap
/// the capture row's 10k connections freed and count almost nothing per connection.
const SLUICE_SETTLE: Duration = Duration::from_secs(6);

fn idle(ctx: &Ctx<'_>, via: &Via<'_>, n: usize) -> anyhow::Result<Row> {
    let pid = via.pid.ok_or_else(|| anyhow::anyhow!("no proxy process"))?;
    if via.path == "sluice" {
        std::thread::sleep(SLUICE_SETTLE);
    }
    let hold = Duration::from_secs(if ctx.args.quick { 2 } else { 4 });
    let mut args = vec!["idle".into()];
    args.extend(ctx.dest_args(via, Service::Nginx));
    args.extend([
        "--conns".into(),
        n.to_string(),
        "--hold-ms".into(),
        hold.as_millis().to_string(),
    ]);
    let mut cmd = via.command(ctx.env, &ctx.xtask.display().to_string());
    cmd.arg("bench-client")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let probe = Probe::start(pid);
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let ready: serde_json::Value = match rx.recv_timeout(Duration::from_secs(240)) {
        Ok(line) => serde_json::from_str(&line)?,
        Err(_) => {
            stop_child(&mut child, Duration::from_secs(3));
            anyhow::bail!("idle client not ready within 240 s");
        }
    };
    let opened = num(&ready, "ready");
    let settle = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let rss_ready = status_kib(pid, "VmRSS").unwrap_or(0);
    let idle_probe = Probe::start(pid);
    std::thread::sleep(hold.saturating_sub(settle.elapsed() + Duration::from_millis(200)));
    let idle_usage = idle_probe.finish();
    let usage = probe.finish();
    let _ = rx.recv_timeout(Duration::from_secs(30));
    stop_child(&mut child, Duration::from_secs(5));
    if opened == 0.0 {
        anyhow::bail!("no connection opened: {}", ready["first_error"]);
    }
    let per_conn = rss_ready.saturating_sub(usage.rss_before_kib) as f64 / opened;
    Ok(Row {
        workload: "W6".into(),
        case: case::IDLE.into(),
        path: via.path.into(),
        entry: via.entry.into(),
        unit: "KiB/conn".into(),
        value: Some(per_conn),
        cpu_us_per_unit: Some(usage.cpu_s * 1e6 / opened),
        cpu_unit: "conn (setup)".into(),
        rss_before_kib: Some(usage.rss_before_kib),
        peak_rss_kib: Some(rss_ready),
        errors: num(&ready, "errors") as u64,
        note: format!(
            "{opened} conns; RSS {:.1} MiB total with them; idle CPU {:.2}% of a core over {:.1} s",
            rss_ready as f64 / 1024.0,
            idle_usage.cpu_s / idle_usage.wall_s * 100.0,
            idle_usage.wall_s
        ),
        ..Row::default()
    })
}
