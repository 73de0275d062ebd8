//! The load clients (h2load, wrk, hey, curl, iperf3), run bounded in time, and parsers for
//! what they print. Parsers are pure and tested on recorded output.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::env::stop_child;

/// What one load run achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Units (requests, connections, MB, events) per second.
    pub rate: f64,
    /// Units completed.
    pub units: f64,
    /// Median latency in microseconds, when the client reports it.
    pub p50_us: Option<f64>,
    /// 99th percentile latency in microseconds.
    pub p99_us: Option<f64>,
    /// Failed requests, socket errors and non-2xx answers.
    pub errors: u64,
}

/// Runs `cmd` to completion, killing it after `timeout`; fails on a non-zero exit.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("bench: start {shown}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            stop_child(&mut child, Duration::from_secs(3));
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let Some(status) = status else {
        bail!(
            "bench: {shown} did not finish within {timeout:?}\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    let out = Output {
        status,
        stdout,
        stderr,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stderr
            .lines()
            .chain(stdout.lines())
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "{} ({}): {last}\n{shown}\n{stdout}\n{stderr}",
            out.status,
            program(&shown)
        );
    }
    Ok(out)
}

/// The load tool in a wrapped command line (the first known tool name in it).
fn program(shown: &str) -> &'static str {
    [
        "h2load",
        "wrk",
        "hey",
        "curl",
        "iperf3",
        "bench-client",
        "squid",
        "chown",
    ]
    .into_iter()
    .find(|t| shown.contains(&format!("\"{t}\"")))
    .unwrap_or("command")
}

/// Parses h2load's summary (`finished in …, N req/s`, `requests: … N succeeded, N failed,
/// N errored, N timeout`) and the per-request log (third column: microseconds).
pub fn parse_h2load(stdout: &str, log: &str) -> anyhow::Result<Load> {
    let finished = stdout
        .lines()
        .find(|l| l.starts_with("finished in"))
        .context("h2load: no `finished in` line")?;
    let rate = finished
        .split(", ")
        .find_map(|p| p.strip_suffix(" req/s"))
        .and_then(|v| v.trim().parse().ok())
        .context("h2load: no req/s")?;
    let requests = stdout
        .lines()
        .find(|l| l.starts_with("requests:"))
        .context("h2load: no `requests:` line")?;
    let count = |word: &str| -> u64 {
        requests
            .split(", ")
            .find_map(|p| p.trim().trim_start_matches("requests: ").strip_suffix(word))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut latencies: Vec<f64> = log
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    let (p50_us, p99_us) = percentiles(&mut latencies);
    Ok(Load {
        rate,
        units: count(" succeeded") as f64,
        p50_us,
        p99_us,
        errors: count(" failed") + count(" errored") + count(" timeout"),
    })
}

/// Parses `wrk --latency`: `Requests/sec:`, the latency distribution, errors.
pub fn parse_wrk(stdout: &str) -> anyhow::Result<Load> {
    let rate = value_after(stdout, "Requests/sec:").context("wrk: no Requests/sec")?;
    let units = stdout
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        stdout.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == p).then_some(())?;
            duration_us(words.next()?)
        })
    };
    let mut errors = 0;
    if let Some(line) = stdout.lines().find(|l| l.contains("Socket errors:")) {
        errors += line
            .split([',', ' '])
            .filter_map(|w| w.parse::<u64>().ok())
            .sum::<u64>();
    }
    if let Some(n) = value_after(stdout, "Non-2xx or 3xx responses:") {
        errors += n as u64;
    }
    Ok(Load {
        rate,
        units,
        p50_us: pct("50%"),
        p99_us: pct("99%"),
        errors,
    })
}

/// Parses hey's summary: `Requests/sec:`, `50% in X secs`, status codes and errors.
pub fn parse_hey(stdout: &str) -> anyhow::Result<Load> {
    let rate = value_after(stdout, "Requests/sec:").context("hey: no Requests/sec")?;
    let pct = |p: &str| {
        stdout.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(p)?.strip_prefix(" in ")?;
            let secs: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(secs * 1e6)
        })
    };
    let mut ok = 0u64;
    let mut errors = 0u64;
    let mut in_errors = false;
    for line in stdout.lines() {
        let t = line.trim();
        if t.starts_with("Error distribution:") {
            in_errors = true;
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let Some((code, tail)) = rest.split_once(']') else {
                continue;
            };
            // Status lines are `[200]\t2460 responses`; error lines `[7]\tGet …: EOF`.
            let count = if in_errors {
                Some(code)
            } else {
                tail.split_whitespace().next()
            };
            let n: u64 = count.and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            if in_errors || !code.starts_with('2') {
                errors += n;
            } else {
                ok += n;
            }
        }
    }
    Ok(Load {
        rate,
        units: ok as f64,
        p50_us: pct("50%"),
        p99_us: pct("99%"),
        errors,
    })
}

/// Parses iperf3's `-J` output: received bits per second, as MB/s.
pub fn parse_iperf(json: &str) -> anyhow::Result<Load> {
    let value: serde_json::Value = serde_json::from_str(json).context("iperf3: not JSON")?;
    let bps = value["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3: no end.sum_received.bits_per_second")?;
    let bytes = value["end"]["sum_received"]["bytes"]
        .as_f64()
        .unwrap_or(0.0);
    Ok(Load {
        rate: bps / 8.0 / 1e6,
        units: bytes / 1e6,
        ..Load::default()
    })
}

/// Median and 99th percentile of `values` (sorted in place); `None` when empty.
pub fn percentiles(values: &mut [f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let idx = ((values.len() as f64 - 1.0) * q).round() as usize;
        values[idx.min(values.len() - 1)]
    };
    (Some(at(0.5)), Some(at(0.99)))
}

fn value_after(text: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(label)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// `812.00us`, `1.23ms`, `2.00s` → microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses() {
        let out = "Running 2s test @ https://bench.test/small\n  2 threads and 16 connections\n\
            \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
            \x20   Latency   812.33us  300.00us   9.00ms   90.00%\n\
            \x20 Latency Distribution\n     50%  750.00us\n     75%  900.00us\n     90%    1.10ms\n     99%    2.50ms\n\
            \x20 40000 requests in 2.00s, 7.00MB read\n\
            \x20 Socket errors: connect 0, read 3, write 0, timeout 1\n\
            Requests/sec:  20000.50\nTransfer/sec:      3.50MB\n";
        let load = parse_wrk(out).unwrap();
        assert_eq!(load.rate, 20000.5);
        assert_eq!(load.units, 40000.0);
        assert_eq!(load.p50_us, Some(750.0));
        assert_eq!(load.p99_us, Some(2500.0));
        assert_eq!(load.errors, 4);
    }

    #[test]
    fn hey_output_parses() {
        let out = "Summary:\n  Total:\t2.0012 secs\n  Requests/sec:\t1234.5678\n\n\
            Latency distribution:\n  10% in 0.0010 secs\n  50% in 0.0020 secs\n  99% in 0.0100 secs\n\n\
            Status code distribution:\n  [200]\t2460 responses\n  [502]\t3 responses\n\n\
            Error distribution:\n  [7]\tGet \"https://bench.test/small\": EOF\n";
        let load = parse_hey(out).unwrap();
        assert_eq!(load.rate, 1234.5678);
        assert_eq!(load.units, 2460.0);
        assert_eq!(load.p50_us, Some(2000.0));
        assert_eq!(load.p99_us, Some(10000.0));
        assert_eq!(load.errors, 10);
    }

    #[test]
    fn h2load_output_parses() {
        let out = "finished in 2.00s, 15000.50 req/s, 1.20MB/s\n\
            requests: 30001 total, 30001 started, 30001 done, 30000 succeeded, 1 failed, 0 errored, 0 timeout\n";
        let log =
            "1700000000000000\t200\t100\n1700000000000001\t200\t300\n1700000000000002\t200\t200\n";
        let load = parse_h2load(out, log).unwrap();
        assert_eq!(load.rate, 15000.5);
        assert_eq!(load.units, 30000.0);
        assert_eq!(load.errors, 1);
        assert_eq!(load.p50_us, Some(200.0));
        assert_eq!(load.p99_us, Some(300.0));
    }

    #[test]
    fn durations_table() {
        for (text, want) in [
            ("5us", 5.0),
            ("1.5ms", 1500.0),
            ("2.00s", 2e6),
            ("1.00m", 60e6),
        ] {
            assert_eq!(duration_us(text), Some(want), "{text}");
        }
        assert_eq!(duration_us("abc"), None);
    }
}
