//! W8: audit to Redis on / Redis down, against audit to the JSONL file.
//!
//! Three runs of the W1 h1 keep-alive load through capture, each daemon fresh: (a) audit to
//! the JSONL file (the baseline), (b) audit to a real `redis-server`, (c) the same with
//! Redis shut down a third into the run and started again after it. Each run tags its
//! requests (`/small?w8=…`), so the stream can be checked afterwards: every request stored
//! exactly once, in order, or counted as dropped by `/metrics`.
//!
//! Redis runs in the node namespace on a unix socket in the run directory (`--port 0`: no
//! TCP port at all), with an append-only file fsynced on every write, so a restart keeps
//! everything it acknowledged.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::h2load_raw;
use super::redis::Redis;
use super::{Ctx, Via};
use crate::bench::BenchArgs;
use crate::bench::control::metric;
use crate::bench::daemon::{Daemon, Variant};
use crate::bench::env::Env;
use crate::bench::proc::Probe;
use crate::bench::report::Row;
use crate::bench::tools::percentiles;

/// Case names shared with the target checks.
pub mod case {
    /// (a) the baseline.
    pub const FILE: &str = "h1 keep-alive, 16 conns (h2load --h1): audit to the JSONL file";
    /// (b) Redis up.
    pub const REDIS: &str = "h1 keep-alive, 16 conns (h2load --h1 -n): audit to Redis";
    /// (c) Redis down for the last two thirds of the run.
    pub const DOWN: &str =
        "h1 keep-alive, 16 conns (h2load --h1 -n): audit to Redis, Redis down after 1/3";
}

/// Facts the target checks read from the (b) and (c) rows.
pub mod fact {
    /// Requests sent (`h2load -n`).
    pub const SENT: &str = "requests_sent";
    /// Request records of this run found in the stream.
    pub const STORED: &str = "records_in_stream";
    /// Records counted as dropped during the run (`sluice_audit_records_dropped_total`).
    pub const DROPPED: &str = "records_dropped";
    /// Stream entries whose sequence number did not increase (duplicates, reordering).
    pub const OUT_OF_ORDER: &str = "records_out_of_order";
    /// Requests started while Redis was down.
    pub const DOWN_REQUESTS: &str = "requests_while_down";
    /// p50 of the requests started while Redis was down, µs.
    pub const DOWN_P50: &str = "p50_us_while_down";
    /// p99 of the requests started while Redis was down, µs.
    pub const DOWN_P99: &str = "p99_us_while_down";
}

/// W8: (a) and (b) twice each, alternating (a fresh daemon per run), then (c) on the last
/// Redis daemon; Redis itself runs throughout except during (c)'s outage.
pub fn w8(env: &Env, bin: &Path, xtask: &Path, args: &BenchArgs) -> Vec<Row> {
    let secs = args.duration().as_secs();
    let file = Variant::plain("audit-file");
    let mut files = Vec::new();
    let mut sent = 2000;
    // (a) first, for its rate: the Redis runs send what it did in one timed run.
    let first = with_daemon(env, bin, &file, xtask, args, |ctx| {
        let d = secs.to_string();
        let flags = ["--h1", "-c16", "-m1", "-D", &d, "--warm-up-time=300ms"];
        let row = file_run(ctx, &flags, "file1");
        if let Some(rate) = row.value {
            sent = ((rate * secs as f64) as u64).max(2000);
        }
        files.push(row);
    });
    if let Err(e) = first {
        return [case::FILE, case::REDIS, case::DOWN]
            .iter()
            .map(|c| na(c, e.clone()))
            .collect();
    }
    let redis = match Redis::start(env) {
        Ok(r) => r,
        Err(e) => {
            let mut rows: Vec<Row> = super::best_of(files, "req/s").into_iter().collect();
            for c in [case::REDIS, case::DOWN] {
                rows.push(na(c, format!("redis-server did not start: {e:#}")));
            }
            return rows;
        }
    };
    // The same name every time: the daemon's state dir (and its audit sequence counter)
    // carries over, as on a real node restart.
    let up = Variant {
        name: "audit-redis",
        extra_rules: 0,
        redis_url: Some(redis.url()),
    };
    let n = sent.to_string();
    let mut ups = Vec::new();
    let mut down = None;
    let mut failures = Vec::new();
    let mut step = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };
    step(with_daemon(env, bin, &up, xtask, args, |ctx| {
        ups.push(redis_up(ctx, &redis, sent, "up1"));
    }));
    step(with_daemon(env, bin, &file, xtask, args, |ctx| {
        files.push(file_run(ctx, &["--h1", "-c16", "-m1", "-n", &n], "file2"));
    }));
    step(with_daemon(env, bin, &up, xtask, args, |ctx| {
        ups.push(redis_up(ctx, &redis, sent, "up2"));
        down = Some(redis_down(ctx, &redis, sent, secs));
    }));
    let why = failures.join("; ");
    vec![
        super::best_of(files, "req/s").unwrap_or_else(|| na(case::FILE, why.clone())),
        merge_up(ups).unwrap_or_else(|| na(case::REDIS, why.clone())),
        down.unwrap_or_else(|| na(case::DOWN, why)),
    ]
}

/// Starts a daemon for `variant`, lets it idle, runs `f`, stops it.
fn with_daemon(
    env: &Env,
    bin: &Path,
    variant: &Variant,
    xtask: &Path,
    args: &BenchArgs,
    f: impl FnOnce(&Ctx<'_>),
) -> Result<(), String> {
    let daemon = Daemon::start(env, bin, variant.clone())
        .map_err(|e| format!("daemon ({}) did not start: {e:#}", variant.name))?;
    let _ = daemon.settle(Duration::from_secs(10));
    f(&new_ctx(env, &daemon, xtask, args));
    Ok(())
}

/// (a): audit to the JSONL file.
fn file_run(ctx: &Ctx<'_>, flags: &[&str], tag: &str) -> Row {
    let via = capture(ctx);
    let path = format!("/small?w8={tag}");
    let row = ctx.measure("W8", case::FILE, "req/s", "req", &via, &mut |ctx, via| {
        h2load_raw(ctx, via, flags, &path).map(|(load, _)| load)
    });
    super::log_row(&row);
    row
}

/// The best of the Redis-up runs, with the accounting summed over all of them.
fn merge_up(rows: Vec<Row>) -> Option<Row> {
    let keys = [fact::SENT, fact::STORED, fact::DROPPED, fact::OUT_OF_ORDER];
    let sums: Option<Vec<f64>> = keys
        .iter()
        .map(|k| rows.iter().map(|r| r.facts.get(*k).copied()).sum())
        .collect();
    let notes: Vec<String> = rows.iter().map(|r| r.note.clone()).collect();
    let mut best = super::best_of(rows, "req/s")?;
    for k in keys {
        best.facts.remove(k);
    }
    if let Some(sums) = sums {
        for (k, v) in keys.iter().zip(sums) {
            best.facts.insert((*k).into(), v);
        }
    }
    let runs = best.note.split("; ").next().unwrap_or("").to_owned();
    best.note = format!("{runs}; per run: {}", notes.join(" | "));
    Some(best)
}

fn new_ctx<'a>(env: &'a Env, daemon: &'a Daemon, xtask: &Path, args: &'a BenchArgs) -> Ctx<'a> {
    Ctx {
        env,
        daemon,
        peers: &[],
        missing: &[],
        args,
        xtask: xtask.to_path_buf(),
        rows: Vec::new(),
    }
}

fn capture<'a>(ctx: &Ctx<'a>) -> Via<'a> {
    ctx.session_via(None)
}

fn na(case: &str, why: String) -> Row {
    Row::na("W8", case, "sluice", "capture", why)
}

/// (b): Redis up; every request (tagged `tag`) must be in the stream.
fn redis_up(ctx: &Ctx<'_>, redis: &Redis, sent: u64, tag: &str) -> Row {
    let before = Counters::read(ctx.daemon);
    let via = capture(ctx);
    let n = sent.to_string();
    let probe = redis.pid().map(Probe::start);
    let mut row = ctx.measure("W8", case::REDIS, "req/s", "req", &via, &mut |ctx, via| {
        let flags = ["--h1", "-c16", "-m1", "-n", &n];
        h2load_raw(ctx, via, &flags, &format!("/small?w8={tag}")).map(|(load, _)| load)
    });
    let redis_cpu_us = probe.map(|p| p.finish().cpu_s * 1e6 / sent as f64);
    if row.value.is_some() {
        let stored = redis.wait_count(&format!("w8={tag}\""), sent, Duration::from_secs(15));
        let after = Counters::read(ctx.daemon);
        account(&mut row, sent, stored, before.as_ref(), after.as_ref());
        if let Some(us) = redis_cpu_us {
            row.note = format!(
                "{}; redis-server used {us:.1} µs CPU per request on the same vCPUs",
                row.note
            );
        }
    }
    super::log_row(&row);
    row
}

/// (c): Redis shut down a third into the run, started again after it; the spool must replay
/// every record exactly once, and the requests while it was down must not slow down.
fn redis_down(ctx: &Ctx<'_>, redis: &Redis, sent: u64, secs: u64) -> Row {
    let before = Counters::read(ctx.daemon);
    let via = capture(ctx);
    let n = sent.to_string();
    let mut log = String::new();
    let mut down_at_us = None;
    let mut row = ctx.measure("W8", case::DOWN, "req/s", "req", &via, &mut |ctx, via| {
        std::thread::scope(|s| {
            let stopper = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(secs * 1000 / 3));
                let at = now_us();
                redis.down();
                at
            });
            let flags = ["--h1", "-c16", "-m1", "-n", &n];
            let result = h2load_raw(ctx, via, &flags, "/small?w8=down");
            down_at_us = stopper.join().ok();
            result.map(|(load, text)| {
                log = text;
                load
            })
        })
    });
    let restarted = redis.up();
    if let Err(e) = &restarted {
        row.note = format!("redis-server did not start again: {e:#}");
    }
    if row.value.is_some() && restarted.is_ok() {
        wait_replayed(ctx.daemon, before.as_ref(), Duration::from_secs(30));
        let stored = redis.wait_count("w8=down\"", sent, Duration::from_secs(15));
        let after = Counters::read(ctx.daemon);
        account(&mut row, sent, stored, before.as_ref(), after.as_ref());
        if let Some(at) = down_at_us {
            let mut during = while_down(&log, at);
            let count = during.len();
            let (p50, p99) = percentiles(&mut during);
            row.facts.insert(fact::DOWN_REQUESTS.into(), count as f64);
            if let (Some(p50), Some(p99)) = (p50, p99) {
                row.facts.insert(fact::DOWN_P50.into(), p50);
                row.facts.insert(fact::DOWN_P99.into(), p99);
                row.note = format!(
                    "{count} requests while Redis was down: p50 {p50:.0} µs, p99 {p99:.0} µs; {}",
                    row.note
                );
            }
        }
    }
    super::log_row(&row);
    row
}

/// Latencies (µs) of the requests in an h2load log that started at or after `from_us`.
pub fn while_down(log: &str, from_us: u64) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let start: u64 = cols.next()?.trim().parse().ok()?;
            let latency: f64 = cols.nth(1)?.trim().parse().ok()?;
            (start >= from_us).then_some(latency)
        })
        .collect()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Puts the accounting into the row's facts and note.
fn account(
    row: &mut Row,
    sent: u64,
    stored: anyhow::Result<(u64, u64)>,
    before: Option<&Counters>,
    after: Option<&Counters>,
) {
    let delta = before.zip(after).map(|(b, a)| a.since(b));
    row.facts.insert(fact::SENT.into(), sent as f64);
    let mut parts = Vec::new();
    match &stored {
        Ok((stored, out_of_order)) => {
            row.facts.insert(fact::STORED.into(), *stored as f64);
            row.facts
                .insert(fact::OUT_OF_ORDER.into(), *out_of_order as f64);
            parts.push(format!(
                "{stored} of {sent} request records in the stream ({out_of_order} out of order)"
            ));
        }
        Err(e) => parts.push(format!("stream not counted: {e:#}")),
    }
    match delta {
        Some(d) => {
            row.facts.insert(fact::DROPPED.into(), d.dropped as f64);
            parts.push(format!(
                "/metrics: {} records spooled, {} replayed, {} dropped",
                d.spooled, d.replayed, d.dropped
            ));
        }
        None => parts.push("/metrics: audit counters not exported by this daemon".into()),
    }
    row.note = parts.join("; ");
}

/// Waits until every record spooled since `before` has been replayed (or `max` passed).
fn wait_replayed(daemon: &Daemon, before: Option<&Counters>, max: Duration) {
    let Some(before) = before else {
        std::thread::sleep(Duration::from_secs(3));
        return;
    };
    let started = Instant::now();
    while started.elapsed() < max {
        if let Some(now) = Counters::read(daemon) {
            let d = now.since(before);
            if d.replayed >= d.spooled {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The audit counters of `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    spooled: u64,
    replayed: u64,
    dropped: u64,
}

impl Counters {
    /// `None` when `/metrics` does not answer or lacks the counters.
    fn read(daemon: &Daemon) -> Option<Counters> {
        let text = daemon.metrics().ok()?;
        Some(Counters {
            spooled: metric(&text, "sluice_audit_records_spooled_total")?,
            replayed: metric(&text, "sluice_audit_records_replayed_total")?,
            dropped: metric(&text, "sluice_audit_records_dropped_total")?,
        })
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters {
            spooled: self.spooled.saturating_sub(before.spooled),
            replayed: self.replayed.saturating_sub(before.replayed),
            dropped: self.dropped.saturating_sub(before.dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_while_down_come_from_the_log() {
        let log = "1000\t200\t50\n2000\t200\t70\n3000\t200\t90\nbad line\n";
        assert_eq!(while_down(log, 2000), vec![70.0, 90.0]);
        assert!(while_down(log, 5000).is_empty());
    }

    #[test]
    fn counters_subtract() {
        let a = Counters {
            spooled: 10,
            replayed: 4,
            dropped: 0,
        };
        let b = Counters {
            spooled: 30,
            replayed: 30,
            dropped: 1,
        };
        assert_eq!(
            b.since(&a),
            Counters {
                spooled: 20,
                replayed: 26,
                dropped: 1
            }
        );
    }
}
