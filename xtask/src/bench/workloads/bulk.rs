//! Bulk workloads: W3 (100 MB down and up, h1 and h2) and W5 (passthrough after the SNI
//! peek, and opaque TCP relayed).

use super::{Ctx, Service, Via};
use crate::bench::env::BIG_BYTES;
use crate::bench::tools::{self, Load, parse_iperf};

/// Case names shared with the target checks.
pub mod case {
    /// W3 cases.
    pub const DOWN_H1: &str = "download 100 MB, h1 (curl)";
    /// W3.
    pub const DOWN_H2: &str = "download 100 MB, h2 (curl)";
    /// W3.
    pub const UP_H1: &str = "upload 100 MB, h1 (curl)";
    /// W3.
    pub const UP_H2: &str = "upload 100 MB, h2 (curl)";
    /// W5 opaque TCP.
    pub const TCP: &str = "opaque TCP bulk (iperf3, tcp_allow relay)";
    /// W5 passthrough download.
    pub const PASS_DOWN: &str = "passthrough TLS download 100 MB (curl)";
    /// W5 passthrough connection rate.
    pub const PASS_CONN: &str = "passthrough new TLS conn per request, 8 conns (wrk)";
}

/// W3: 100 MB download (nginx) and upload (the Rust sink), h1 and h2, every path.
pub fn w3(ctx: &mut Ctx<'_>) {
    let all = super::ALL_PATHS;
    let h2_paths = ["direct", "capture", "explicit", "haproxy", "mitmproxy"];
    let cases = [
        (case::DOWN_H1, false, false),
        (case::DOWN_H2, true, false),
        (case::UP_H1, false, true),
        (case::UP_H2, true, true),
    ];
    for (case, h2, upload) in cases {
        let paths: &[&str] = if h2 { &h2_paths } else { &all };
        ctx.run("W3", case, paths, "MB/s", "MB", |ctx, via| {
            let service = if upload { Service::App } else { Service::Nginx };
            repeat(ctx, |ctx| curl(ctx, via, service, h2, upload))
        });
        if h2 {
            ctx.rows.push(crate::bench::report::Row::na(
                "W3",
                case,
                "squid",
                "explicit",
                "Squid 5 speaks HTTP/1.1 only to clients",
            ));
        }
        flat_rss_note(ctx, case);
    }
}

/// W5: opaque TCP through the relay, and TLS passed through after the SNI peek.
pub fn w5(ctx: &mut Ctx<'_>) {
    let secs = ctx.secs();
    ctx.run(
        "W5",
        case::TCP,
        &["direct", "capture"],
        "MB/s",
        "MB",
        |ctx, via| {
            let mut cmd = via.command(ctx.env, "iperf3");
            cmd.args([
                "-c",
                "198.51.100.10",
                "-p",
                "5201",
                "-J",
                "-t",
                &secs.to_string(),
            ]);
            let out = tools::run_bounded(cmd, ctx.bound())?;
            parse_iperf(&String::from_utf8_lossy(&out.stdout))
        },
    );
    ctx.run(
        "W5",
        case::PASS_DOWN,
        &["direct", "capture"],
        "MB/s",
        "MB",
        |ctx, via| {
            // Passed through: the client sees the upstream's own certificate.
            let via = Via {
                ca: ctx.env.ca_file.clone(),
                ..via.clone()
            };
            repeat(ctx, |ctx| curl(ctx, &via, Service::Pass, false, false))
        },
    );
    ctx.run(
        "W5",
        case::PASS_CONN,
        &["direct", "capture"],
        "conn/s",
        "conn",
        |ctx, via| super::http::wrk_close(ctx, via, Service::Pass),
    );
}

/// Runs `f` 3 times (once with `--quick`) and keeps the median rate, summing the units.
fn repeat(
    ctx: &Ctx<'_>,
    mut f: impl FnMut(&Ctx<'_>) -> anyhow::Result<Load>,
) -> anyhow::Result<Load> {
    let n = if ctx.args.quick { 1 } else { 3 };
    let mut loads = Vec::new();
    for _ in 0..n {
        loads.push(f(ctx)?);
    }
    let units = loads.iter().map(|l| l.units).sum();
    loads.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut median = loads.swap_remove(loads.len() / 2);
    median.units = units;
    Ok(median)
}

/// One curl transfer of [`BIG_BYTES`]; the rate is MB/s, the "p50" the time to first byte.
fn curl(
    ctx: &Ctx<'_>,
    via: &Via<'_>,
    service: Service,
    h2: bool,
    upload: bool,
) -> anyhow::Result<Load> {
    let mut cmd = via.command(ctx.env, "curl");
    cmd.args(["-sS", "--fail", "-o", "/dev/null", "--max-time", "120", "--cacert"])
        .arg(&via.ca)
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args(["-w", "%{http_code} %{speed_download} %{speed_upload} %{time_starttransfer} %{size_download} %{size_upload}"]);
    if let Some(proxy) = &via.proxy {
        cmd.args(["-x", proxy]);
    }
    if upload {
        cmd.args(["-H", "Expect:", "-X", "POST", "-T"])
            .arg(&ctx.env.big_file)
            .arg(via.url(service, "/upload"));
    } else {
        cmd.arg(via.url(service, "/big.bin"));
    }
    let out = tools::run_bounded(cmd, ctx.bound())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [code, down, up, ttfb, size_down, size_up] = f[..] else {
        anyhow::bail!("curl: unexpected -w output {text:?}");
    };
    let moved = if upload { size_up } else { size_down };
    if code != 200.0 || moved < BIG_BYTES as f64 {
        anyhow::bail!("curl: status {code}, moved {moved} of {BIG_BYTES} bytes");
    }
    Ok(Load {
        rate: if upload { up } else { down } / 1e6,
        units: moved / 1e6,
        p50_us: Some(ttfb * 1e6),
        p99_us: None,
        errors: 0,
    })
}

/// Notes each proxy row's RSS growth during the transfers (target: ≤ 1 MB whatever the size).
fn flat_rss_note(ctx: &mut Ctx<'_>, case: &str) {
    for row in ctx
        .rows
        .iter_mut()
        .filter(|r| r.workload == "W3" && r.case == case)
    {
        if let (Some(before), Some(peak)) = (row.rss_before_kib, row.peak_rss_kib) {
            let growth = peak.saturating_sub(before);
            let rss = format!(
                "RSS +{:.1} MiB; p50 column = time to first byte",
                growth as f64 / 1024.0
            );
            row.note = if row.note.is_empty() {
                rss
            } else {
                format!("{rss}; {}", row.note)
            };
        }
    }
}
