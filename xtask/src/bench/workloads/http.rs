//! Request workloads: W1 (kept-alive small requests), W2a/W2b (a new TLS connection per
//! request; same or new SNI), and the clients W7, W8 and W10 reuse.

use super::{Ctx, Service, Via, num};
use crate::bench::proc::status_kib;
use crate::bench::report::Row;
use crate::bench::tools::{self, Load, parse_h2load, parse_hey, parse_wrk};

/// Case names shared with the target checks.
pub mod case {
    /// W1 h1 throughput.
    pub const H1: &str = "h1 keep-alive, 16 conns (h2load --h1)";
    /// W1 h2 throughput.
    pub const H2: &str = "h2 keep-alive, 16 conns × 10 streams (h2load)";
    /// W1 latency at one connection.
    pub const ONE: &str = "h1, 1 conn, sequential (h2load --h1)";
    /// W1 latency at 1000 req/s.
    pub const RATE: &str = "h1 at 1000 req/s, 10 conns (h2load --rps 100)";
    /// W1 through explicit proxies, h1.
    pub const X_H1: &str = "h1 keep-alive, 16 conns (hey -x)";
    /// W1 through explicit proxies, h2.
    pub const X_H2: &str = "h2 keep-alive, 16 conns (hey -h2 -x)";
    /// W2a via capture / reverse.
    pub const NEW_CONN: &str = "new TLS conn per request, 8 conns (wrk Connection: close)";
    /// W2a via explicit proxies.
    pub const X_NEW_CONN: &str = "new TLS conn per request, 8 conns (hey -disable-keepalive -x)";
    /// W2b same SNI.
    pub const SAME_SNI: &str = "new conn per request, same SNI, 4 at once (bench-client sni)";
    /// W2b new SNI.
    pub const NEW_SNI: &str = "new conn per request, new SNI each, 4 at once (bench-client sni)";
    /// W2b concurrent misses.
    pub const PAIRS: &str = "distinct SNIs, 2 conns at once per name (bench-client sni --pairs)";
    /// The daemon's memory once W2b's names have gone idle.
    pub const SETTLED: &str = "RSS after W2b once its upstream connections idled out";
}

/// How long W2b waits for the daemon to settle: idle pooled connections close 5–10 s after
/// their last use (the bench daemon's `upstream.pool_idle_timeout_ms` is 5 s, HAProxy's
/// default `pool-purge-delay`, and the pool checks once per timeout), then the daemon gives
/// freed memory back within 5 s.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);
/// Bytes in a MiB, for notes.
const MIB: f64 = 1024.0 * 1024.0;

/// W1: small HTTPS requests over kept-alive connections, h1 and h2.
pub fn w1(ctx: &mut Ctx<'_>) {
    let s = ctx.secs();
    let local = ["direct", "capture", "haproxy"];
    ctx.run("W1", case::H1, &local, "req/s", "req", |ctx, via| {
        h2load(ctx, via, &["--h1", "-c16", "-m1"], s)
    });
    ctx.run("W1", case::H2, &local, "req/s", "req", |ctx, via| {
        h2load(ctx, via, &["-c16", "-m10"], s)
    });
    ctx.run("W1", case::ONE, &local, "req/s", "req", |ctx, via| {
        h2load(ctx, via, &["--h1", "-c1", "-m1"], s)
    });
    ctx.run(
        "W1",
        case::RATE,
        &["direct", "capture"],
        "req/s",
        "req",
        |ctx, via| h2load(ctx, via, &["--h1", "-c10", "-m1", "--rps=100"], s),
    );
    let explicit = ["direct", "explicit", "squid", "mitmproxy"];
    ctx.run("W1", case::X_H1, &explicit, "req/s", "req", |ctx, via| {
        hey(ctx, via, &[])
    });
    ctx.run(
        "W1",
        case::X_H2,
        &["direct", "explicit", "mitmproxy"],
        "req/s",
        "req",
        |ctx, via| hey(ctx, via, &["-h2"]),
    );
    ctx.rows.push(crate::bench::report::Row::na(
        "W1",
        case::X_H2,
        "squid",
        "explicit",
        "Squid 5 speaks HTTP/1.1 only to clients",
    ));
}

/// W2a: a new TLS connection per request (Sluice's leaf cached, its upstream pooled).
pub fn w2a(ctx: &mut Ctx<'_>) {
    ctx.run(
        "W2a",
        case::NEW_CONN,
        &["direct", "capture", "haproxy"],
        "conn/s",
        "conn",
        |ctx, via| wrk_close(ctx, via, Service::Nginx),
    );
    let explicit = ["direct", "explicit", "squid", "mitmproxy"];
    ctx.run(
        "W2a",
        case::X_NEW_CONN,
        &explicit,
        "conn/s",
        "conn",
        |ctx, via| hey(ctx, via, &["-disable-keepalive", "-c", "8"]),
    );
}

/// W2b: a new SNI every connection (leaf cache miss), and concurrent misses minting once.
pub fn w2b(ctx: &mut Ctx<'_>) {
    let rss_before = status_kib(ctx.daemon.pid(), "VmRSS");
    let heap_before = heap_in_use(ctx);
    let count = if ctx.args.quick { 300 } else { 2000 };
    for (case, distinct) in [(case::SAME_SNI, None), (case::NEW_SNI, Some("n"))] {
        let mints_before = mint_counters(ctx);
        ctx.run(
            "W2b",
            case,
            &["direct", "capture"],
            "conn/s",
            "conn",
            |ctx, via| {
                let mut args = sni_args(ctx, via, count, 4);
                if let Some(prefix) = distinct {
                    args.extend(["--distinct".into(), prefix.into()]);
                }
                sni_load(&ctx.client(via, &args, ctx.bound())?)
            },
        );
        // The daemon's own count of what the misses cost: time spent signing leaves.
        if let (Some((n0, us0)), Some((n1, us1))) = (mints_before, mint_counters(ctx))
            && let Some(row) = ctx
                .rows
                .iter_mut()
                .rev()
                .find(|r| r.case == case && r.path == "sluice")
        {
            let minted = n1.saturating_sub(n0);
            if minted > 0 {
                let mean = us1.saturating_sub(us0) as f64 / minted as f64;
                row.facts.insert(MINT_MEAN_US.into(), mean);
                row.note = format!("{minted} leaves minted, {mean:.0} µs each (daemon metrics)");
            }
        }
    }
    let names = if ctx.args.quick { 200 } else { 1000 };
    let mut mismatches = 0.0;
    ctx.run(
        "W2b",
        case::PAIRS,
        &["capture"],
        "conn/s",
        "conn",
        |ctx, via| {
            let mut args = sni_args(ctx, via, names, names);
            args.extend(["--distinct".into(), "m".into(), "--pairs".into()]);
            let out = ctx.client(via, &args, ctx.bound())?;
            mismatches = num(&out, "cert_mismatches");
            sni_load(&out)
        },
    );
    if let Some(row) = ctx.rows.last_mut().filter(|r| r.value.is_some()) {
        row.note = format!(
            "{names} names; {mismatches} pairs got different leaves (0 = each name minted once)"
        );
    }
    settled_rss(ctx, rss_before, heap_before);
}

/// A row for the daemon's RSS once W2b's thousands of names have gone idle, against its RSS
/// before W2b: the leaf cache and the upstream pools are bounded, and what they freed is
/// given back. The daemon's live heap before and after tells data kept from memory the
/// allocator holds.
fn settled_rss(ctx: &mut Ctx<'_>, before: Option<u64>, heap_before: Option<u64>) {
    let pid = ctx.daemon.pid();
    let peak = ctx
        .rows
        .iter()
        .filter(|r| r.workload == "W2b" && r.path == "sluice")
        .filter_map(|r| r.peak_rss_kib)
        .max();
    std::thread::sleep(SETTLE);
    let after = status_kib(pid, "VmRSS");
    let heap = match (heap_before, heap_in_use(ctx)) {
        (Some(b), Some(a)) => format!(
            "; heap in use {:.1} → {:.1} MiB (sluice_heap_in_use_bytes)",
            b as f64 / MIB,
            a as f64 / MIB
        ),
        _ => String::new(),
    };
    let (value, note) = match (before, after) {
        _ if peak.is_none() => (None, "no W2b run through Sluice succeeded".to_owned()),
        (Some(before), Some(after)) => (
            Some((after as f64 - before as f64) / 1024.0),
            format!(
                "{:.1} MiB before W2b, {:.1} MiB at its peak, {:.1} MiB {} s after{heap}",
                before as f64 / 1024.0,
                peak.unwrap_or(0) as f64 / 1024.0,
                after as f64 / 1024.0,
                SETTLE.as_secs()
            ),
        ),
        _ => (
            None,
            "the daemon's /proc status could not be read".to_owned(),
        ),
    };
    ctx.rows.push(Row {
        workload: "W2b".into(),
        case: case::SETTLED.into(),
        path: "sluice".into(),
        entry: "capture".into(),
        unit: "MiB vs before".into(),
        value,
        rss_before_kib: before,
        peak_rss_kib: peak,
        note,
        ..Row::default()
    });
}

/// The daemon's `sluice_heap_in_use_bytes`, if its `/metrics` answers and has it.
fn heap_in_use(ctx: &Ctx<'_>) -> Option<u64> {
    let text = ctx.daemon.metrics().ok()?;
    crate::bench::control::metric(&text, "sluice_heap_in_use_bytes")
}

/// `bench-client sni` to nginx: `count` new TLS connections, `concurrency` at once.
fn sni_args(ctx: &Ctx<'_>, via: &Via<'_>, count: usize, concurrency: usize) -> Vec<String> {
    let mut args = vec!["sni".into()];
    args.extend(ctx.dest_args(via, Service::Nginx));
    args.extend([
        "--count".into(),
        count.to_string(),
        "--concurrency".into(),
        concurrency.to_string(),
    ]);
    args
}

/// Fact key: mean µs the daemon spent signing one leaf during a W2b run.
pub const MINT_MEAN_US: &str = "mint_mean_us";

/// (leaves minted, µs spent minting) from the daemon's `/metrics`.
fn mint_counters(ctx: &Ctx<'_>) -> Option<(u64, u64)> {
    let text = ctx.daemon.metrics().ok()?;
    Some((
        crate::bench::control::metric(&text, "sluice_tls_leaves_minted_total")?,
        crate::bench::control::metric(&text, "sluice_tls_leaf_mint_microseconds_total")?,
    ))
}

/// h2load for the run's duration against `/small`; percentiles from its per-request log.
pub fn h2load(ctx: &Ctx<'_>, via: &Via<'_>, flags: &[&str], secs: u64) -> anyhow::Result<Load> {
    let d = secs.to_string();
    let mut all = flags.to_vec();
    all.extend(["-D", &d, "--warm-up-time=300ms"]);
    h2load_raw(ctx, via, &all, "/small").map(|(load, _)| load)
}

/// h2load with `flags` (which say how long: `-D` or `-n`) against `path` of nginx; returns
/// the load and the per-request log (start µs since the epoch, status, µs to the response).
pub fn h2load_raw(
    ctx: &Ctx<'_>,
    via: &Via<'_>,
    flags: &[&str],
    path: &str,
) -> anyhow::Result<(Load, String)> {
    // A client in a `sluice exec` sandbox writes no file the bench can read (its /tmp is its
    // own) nor can it reopen its stderr, so h2load logs to a file of its /tmp that is then
    // printed: the summary goes to stderr, the per-request log to stdout.
    let mut cmd = via.command(ctx.env, "sh");
    cmd.args([
        "-c",
        "log=$(mktemp) && h2load \"$@\" --log-file \"$log\" >&2; rc=$?; \
         cat \"$log\"; rm -f \"$log\"; exit $rc",
        "h2load",
    ])
    .args(flags)
    .arg("-t1")
    .arg(via.url(Service::Nginx, path));
    let out = tools::run_bounded(cmd, ctx.bound())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let load = parse_h2load(&String::from_utf8_lossy(&out.stderr), &text)?;
    Ok((load, text))
}

/// wrk with `Connection: close`: a new TLS connection per request.
pub fn wrk_close(ctx: &Ctx<'_>, via: &Via<'_>, service: Service) -> anyhow::Result<Load> {
    let mut cmd = via.command(ctx.env, "wrk");
    cmd.args(["-t2", "-c8", "-d", &format!("{}s", ctx.secs()), "--latency"])
        .args(["-H", "Connection: close"])
        .arg(via.url(service, "/small"));
    let out = tools::run_bounded(cmd, ctx.bound())?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// hey (Go client) for the run's duration, 16 workers unless `flags` says `-c`; through
/// `via`'s explicit proxy if it has one.
pub fn hey(ctx: &Ctx<'_>, via: &Via<'_>, flags: &[&str]) -> anyhow::Result<Load> {
    let mut cmd = via.command(ctx.env, "hey");
    cmd.args(["-z", &format!("{}s", ctx.secs()), "-t", "10"]);
    if !flags.contains(&"-c") {
        cmd.args(["-c", "16"]);
    }
    cmd.args(flags);
    if let Some(proxy) = &via.proxy {
        cmd.args(["-x", proxy]);
    }
    cmd.arg(via.url(Service::Nginx, "/small"));
    let out = tools::run_bounded(cmd, ctx.bound())?;
    parse_hey(&String::from_utf8_lossy(&out.stdout))
}

fn sni_load(out: &serde_json::Value) -> anyhow::Result<Load> {
    if num(out, "conns") == 0.0 {
        anyhow::bail!("no connection succeeded: {}", out["first_error"]);
    }
    Ok(Load {
        rate: num(out, "rate"),
        units: num(out, "conns"),
        p50_us: out["p50_us"].as_f64(),
        p99_us: out["p99_us"].as_f64(),
        errors: num(out, "errors") as u64,
    })
}
