//! The workloads W1–W10 of PERFORMANCE.md and the plumbing they share: the paths traffic
//! can take ([`Via`]), the clients' command lines, and turning a run into a [`Row`].

mod audit;
mod bulk;
mod http;
mod judge;
mod node;
mod policy;
mod redis;
mod reload;
mod streams;
pub mod targets;

use std::path::PathBuf;
use std::time::Duration;

use super::BenchArgs;
use super::daemon::Daemon;
use super::env::Env;
use super::peers::{Kind, Peer};
use super::proc::Probe;
use super::report::Row;
use super::tools::{self, Load};

pub use audit::w8;
pub use bulk::{w3, w5};
pub use http::{w1, w2a, w2b};
pub use node::{profile, w9, w10};
pub use policy::{POLICY_BENCH_ENV, w7};
pub use reload::w10_reload;
pub use streams::{w4, w6};

/// Every path a workload can take, in report order: the baseline, Sluice's two entries,
/// then the peers.
pub const ALL_PATHS: [&str; 6] = [
    "direct",
    "capture",
    "explicit",
    "haproxy",
    "squid",
    "mitmproxy",
];

/// What the workloads share.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The namespaces and upstreams.
    pub env: &'a Env,
    /// The daemon under test.
    pub daemon: &'a Daemon,
    /// Peers that started.
    pub peers: &'a [Peer],
    /// Peers that did not, and why.
    pub missing: &'a [(Kind, String)],
    /// Command-line options.
    pub args: &'a BenchArgs,
    /// This binary (for `bench-client`).
    pub xtask: PathBuf,
    /// Rows so far.
    pub rows: Vec<Row>,
}

/// Which server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// nginx at `bench.test` (203.0.113.10:443).
    Nginx,
    /// The Rust fake at `app.bench.test` (198.51.100.11:443): `/sse`, `/upload`.
    App,
    /// nginx at `pass.bench.test` (198.51.100.12:443), passthrough for Sluice.
    Pass,
}

/// One way for a client to reach an upstream.
#[derive(Debug, Clone)]
pub struct Via<'a> {
    /// `direct`, `sluice`, `haproxy`, `squid`, `mitmproxy`.
    pub path: &'static str,
    /// `-`, `capture`, `explicit`, `reverse`.
    pub entry: &'static str,
    /// Run the client under `sluice exec` (capture).
    sandbox: Option<&'a Daemon>,
    /// The session the captured client runs under (`sluice exec --session`).
    pub session: Option<String>,
    /// Explicit proxy URL.
    pub proxy: Option<String>,
    /// The CA the client must trust.
    pub ca: PathBuf,
    /// The proxy process to measure.
    pub pid: Option<u32>,
}

impl Via<'_> {
    /// `https://<host>/<path>` as this path's clients name it.
    pub fn url(&self, service: Service, path: &str) -> String {
        format!("https://{}{path}", self.host_port(service))
    }

    /// The `host[:port]` clients put in URLs.
    pub fn host_port(&self, service: Service) -> &'static str {
        match (self.path, service) {
            ("haproxy", Service::Nginx) => "hap.bench.test:8443",
            ("haproxy", _) => "hap.bench.test:8444",
            (_, Service::Nginx) => "bench.test",
            (_, Service::App) => "app.bench.test",
            (_, Service::Pass) => "pass.bench.test",
        }
    }

    /// (address to dial, SNI host) for `bench-client`.
    pub fn dial(&self, service: Service) -> (&'static str, &'static str) {
        match (self.path, service) {
            ("haproxy", Service::Nginx) => ("127.0.0.1:8443", "hap.bench.test"),
            ("haproxy", _) => ("127.0.0.1:8444", "hap.bench.test"),
            (_, Service::Nginx) => ("203.0.113.10:443", "bench.test"),
            (_, Service::App) => ("198.51.100.11:443", "app.bench.test"),
            (_, Service::Pass) => ("198.51.100.12:443", "pass.bench.test"),
        }
    }

    /// `program` where this path's clients run: under `sluice exec` or plainly in the node
    /// namespace (both with the bench's `/etc/hosts`).
    pub fn command(&self, env: &Env, program: &str) -> std::process::Command {
        match self.sandbox {
            Some(daemon) => daemon.exec(env, self.session.as_deref(), program),
            None => env.node(program),
        }
    }
}

impl<'a> Ctx<'a> {
    /// The paths named in `which` (`direct`, `capture`, `explicit`, `haproxy`, `squid`,
    /// `mitmproxy`), in that order; peers that did not start give n/a rows via [`Self::run`].
    pub fn vias(
        &self,
        which: &[&str],
    ) -> Vec<Result<Via<'a>, (&'static str, &'static str, String)>> {
        let mut out = Vec::new();
        let order = ALL_PATHS;
        for name in order.iter().filter(|n| which.contains(n)) {
            out.push(match *name {
                "direct" => Ok(Via {
                    path: "direct",
                    entry: "-",
                    sandbox: None,
                    session: None,
                    proxy: None,
                    ca: self.env.ca_file.clone(),
                    pid: None,
                }),
                "capture" => Ok(Via {
                    path: "sluice",
                    entry: "capture",
                    sandbox: Some(self.daemon),
                    session: None,
                    proxy: None,
                    ca: self.daemon.ca_file(),
                    pid: Some(self.daemon.pid()),
                }),
                "explicit" => Ok(Via {
                    path: "sluice",
                    entry: "explicit",
                    sandbox: None,
                    session: None,
                    proxy: Some(self.daemon.proxy_url()),
                    ca: self.daemon.ca_file(),
                    pid: Some(self.daemon.pid()),
                }),
                peer => self.peer_via(peer),
            });
        }
        out
    }

    /// The capture path, the client under `session` when given (`sluice exec --session ID`).
    pub fn session_via(&self, session: Option<&str>) -> Via<'a> {
        Via {
            path: "sluice",
            entry: "capture",
            sandbox: Some(self.daemon),
            session: session.map(str::to_owned),
            proxy: None,
            ca: self.daemon.ca_file(),
            pid: Some(self.daemon.pid()),
        }
    }

    fn peer_via(&self, name: &str) -> Result<Via<'a>, (&'static str, &'static str, String)> {
        let kind = match name {
            "haproxy" => Kind::Haproxy,
            "squid" => Kind::Squid,
            _ => Kind::Mitmproxy,
        };
        let entry = if kind == Kind::Haproxy {
            "reverse"
        } else {
            "explicit"
        };
        if let Some(peer) = self.peers.iter().find(|p| p.kind == kind) {
            return Ok(Via {
                path: kind.name(),
                entry,
                sandbox: None,
                session: None,
                proxy: peer.proxy_url(),
                ca: peer.ca_file.clone(),
                pid: Some(peer.pid()),
            });
        }
        let why = self.missing.iter().find(|(k, _)| *k == kind).map_or_else(
            || "peers skipped (--no-peers)".to_owned(),
            |(_, e)| format!("did not start: {e}"),
        );
        Err((kind.name(), entry, why))
    }

    /// Runs `f` once per path in `which`, measuring the proxy, and records a row each.
    pub fn run(
        &mut self,
        workload: &str,
        case: &str,
        which: &[&str],
        unit: &str,
        cpu_unit: &str,
        mut f: impl FnMut(&Ctx<'a>, &Via<'a>) -> anyhow::Result<Load>,
    ) {
        // A case compared with HAProxy is run several times, the paths taking turns, and
        // each measure is the median: on a shared machine one run's verdict is noise.
        let rounds = if self.args.quick || !which.contains(&"haproxy") {
            1
        } else {
            ROUNDS
        };
        let vias = self.vias(which);
        let mut runs: Vec<Vec<Row>> = vec![Vec::new(); vias.len()];
        for round in 0..rounds {
            for (via, runs) in vias.iter().zip(&mut runs) {
                // Squid and mitmproxy are far behind: one run each says so.
                let compared = |v: &Via<'_>| matches!(v.path, "direct" | "sluice" | "haproxy");
                if let Ok(via) = via
                    && (round == 0 || compared(via))
                {
                    let row = self.measure(workload, case, unit, cpu_unit, via, &mut f);
                    log_row(&row);
                    runs.push(row);
                }
            }
        }
        for (via, runs) in vias.into_iter().zip(runs) {
            let row = match via {
                Err((path, entry, why)) => Row::na(workload, case, path, entry, why),
                Ok(_) => median_row(runs),
            };
            if rounds > 1 {
                log_row(&row);
            }
            self.rows.push(row);
        }
    }

    fn measure(
        &self,
        workload: &str,
        case: &str,
        unit: &str,
        cpu_unit: &str,
        via: &Via<'a>,
        f: &mut impl FnMut(&Ctx<'a>, &Via<'a>) -> anyhow::Result<Load>,
    ) -> Row {
        let probe = via.pid.map(Probe::start);
        let result = f(self, via);
        let usage = probe.map(|p| p.finish());
        let mut row = Row {
            workload: workload.into(),
            case: case.into(),
            path: via.path.into(),
            entry: via.entry.into(),
            unit: unit.into(),
            cpu_unit: cpu_unit.into(),
            ..Row::default()
        };
        match result {
            Ok(load) => {
                row.value = Some(load.rate);
                row.p50_us = load.p50_us;
                row.p99_us = load.p99_us;
                row.errors = load.errors;
                if let Some(u) = usage {
                    if load.units > 0.0 {
                        row.cpu_us_per_unit = Some(u.cpu_s * 1e6 / load.units);
                    }
                    row.rss_before_kib = Some(u.rss_before_kib);
                    row.peak_rss_kib = Some(u.peak_rss_kib);
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                let first = msg
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_owned();
                eprintln!("bench: {workload} {case} via {} failed: {msg}", via.path);
                if via.path == "sluice" {
                    for line in self.daemon.log_problems(5) {
                        eprintln!("bench:   daemon: {line}");
                    }
                }
                row.note = format!("failed: {}", first.chars().take(160).collect::<String>());
            }
        }
        row
    }

    /// Seconds per timed run.
    pub fn secs(&self) -> u64 {
        self.args.duration().as_secs()
    }

    /// A generous bound for a timed run.
    pub fn bound(&self) -> Duration {
        self.args.duration() + Duration::from_secs(60)
    }

    /// A scratch file in the run directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.env.dir.path().join(name)
    }

    /// Runs `xtask bench-client <args>` on `via` and returns its last JSON line.
    pub fn client(
        &self,
        via: &Via<'_>,
        args: &[String],
        bound: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let mut cmd = via.command(self.env, &self.xtask.display().to_string());
        cmd.arg("bench-client").args(args);
        let out = tools::run_bounded(cmd, bound)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("");
        Ok(serde_json::from_str(last)?)
    }

    /// `--addr --host --ca [--proxy]` for `bench-client` on `via` to `service`.
    pub fn dest_args(&self, via: &Via<'_>, service: Service) -> Vec<String> {
        let (addr, host) = via.dial(service);
        let mut args = vec![
            "--addr".into(),
            addr.into(),
            "--host".into(),
            host.into(),
            "--ca".into(),
            via.ca.display().to_string(),
        ];
        if let Some(proxy) = &via.proxy {
            args.extend(["--proxy".into(), proxy.clone()]);
        }
        args
    }
}

/// The fact naming the slowest of a variant's repeated runs (for the noise estimate).
pub const SLOWEST: &str = "slowest_run";

/// The run with the highest value, its note listing every run; a failed run is kept when
/// none succeeded.
pub fn best_of(rows: Vec<Row>, unit: &str) -> Option<Row> {
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            r.value
                .map_or("failed".into(), crate::bench::report::fmt_num)
        })
        .collect();
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    let slowest = rows.iter().filter_map(|r| r.value).reduce(f64::min);
    let n = rows.len();
    let mut best = rows.into_iter().max_by(|a, b| {
        a.value
            .unwrap_or(f64::MIN)
            .total_cmp(&b.value.unwrap_or(f64::MIN))
    })?;
    if n > 1 {
        best.errors = errors;
        if let Some(v) = slowest {
            best.facts.insert(SLOWEST.into(), v);
        }
        let runs = format!(
            "runs {} {unit}, alternating with the other variant, best shown",
            values.join(" / ")
        );
        best.note = if best.note.is_empty() {
            runs
        } else {
            format!("{runs}; {}", best.note)
        };
    }
    Some(best)
}

/// Prints one finished row to stderr (progress while the bench runs).
/// How many alternating runs a case compared with HAProxy gets (full runs).
const ROUNDS: usize = 3;

/// One row from a path's runs of a case: each measure the median of the runs that
/// succeeded (errors summed, the peak RSS the highest), or the first failure if none did.
fn median_row(runs: Vec<Row>) -> Row {
    let total = runs.len();
    let (ok, failed): (Vec<Row>, Vec<Row>) = runs.into_iter().partition(|r| r.value.is_some());
    let Some(first) = ok.first() else {
        return failed.into_iter().next().unwrap_or_default();
    };
    if ok.len() == 1 && total == 1 {
        return first.clone();
    }
    let median = |pick: fn(&Row) -> Option<f64>| {
        let mut v: Vec<f64> = ok.iter().filter_map(pick).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let mut row = first.clone();
    row.value = median(|r| r.value);
    row.p50_us = median(|r| r.p50_us);
    row.p99_us = median(|r| r.p99_us);
    row.cpu_us_per_unit = median(|r| r.cpu_us_per_unit);
    row.errors = ok.iter().map(|r| r.errors).sum();
    row.peak_rss_kib = ok.iter().filter_map(|r| r.peak_rss_kib).max();
    let runs = if ok.len() == total {
        format!("median of {total} alternating runs")
    } else {
        format!(
            "median of the {} of {total} alternating runs that succeeded",
            ok.len()
        )
    };
    row.note = if row.note.is_empty() {
        runs
    } else {
        format!("{runs}; {}", row.note)
    };
    row
}

pub fn log_row(row: &Row) {
    eprintln!(
        "bench: {} {} [{} {}]: {} {} p50={:?} p99={:?} errors={} {}",
        row.workload,
        row.case,
        row.path,
        row.entry,
        row.value.map_or("-".into(), super::report::fmt_num),
        row.unit,
        row.p50_us.map(|v| v.round()),
        row.p99_us.map(|v| v.round()),
        row.errors,
        row.note
    );
}

/// A JSON number field, or 0.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn alternating_runs_give_each_measure_its_median() {
        let run = |value: Option<f64>, p50: f64, cpu: f64, errors: u64, peak: u64| Row {
            value,
            p50_us: value.map(|_| p50),
            cpu_us_per_unit: value.map(|_| cpu),
            errors,
            peak_rss_kib: Some(peak),
            note: if value.is_some() {
                String::new()
            } else {
                "failed: x".into()
            },
            ..Row::default()
        };
        let row = median_row(vec![
            run(Some(10.0), 300.0, 5.0, 1, 100),
            run(Some(30.0), 100.0, 9.0, 0, 300),
            run(Some(20.0), 200.0, 7.0, 2, 200),
        ]);
        assert_eq!(row.value, Some(20.0));
        assert_eq!(row.p50_us, Some(200.0));
        assert_eq!(row.cpu_us_per_unit, Some(7.0));
        assert_eq!(row.errors, 3);
        assert_eq!(row.peak_rss_kib, Some(300));
        assert_eq!(row.note, "median of 3 alternating runs");

        let row = median_row(vec![
            run(None, 0.0, 0.0, 0, 100),
            run(Some(30.0), 100.0, 9.0, 0, 300),
            run(Some(20.0), 200.0, 7.0, 0, 200),
        ]);
        assert_eq!(row.value, Some(30.0), "the upper of two");
        assert!(row.note.starts_with("median of the 2 of 3"), "{}", row.note);

        let row = median_row(vec![run(None, 0.0, 0.0, 0, 1), run(None, 0.0, 0.0, 0, 2)]);
        assert_eq!((row.value, row.note.as_str()), (None, "failed: x"));

        let single = median_row(vec![run(Some(5.0), 1.0, 1.0, 0, 1)]);
        assert_eq!((single.value, single.note.as_str()), (Some(5.0), ""));
    }

    #[test]
    fn best_run_is_kept_and_every_run_listed() {
        let row = |v: Option<f64>, e: u64| Row {
            value: v,
            errors: e,
            ..Row::default()
        };
        let best = best_of(
            vec![row(Some(10.0), 1), row(Some(12.0), 0), row(None, 2)],
            "req/s",
        )
        .unwrap();
        assert_eq!(best.value, Some(12.0));
        assert_eq!(best.errors, 3);
        assert_eq!(best.facts[SLOWEST], 10.0);
        assert!(
            best.note.starts_with("runs 10.0 / 12.0 / failed req/s"),
            "{}",
            best.note
        );
        assert!(best_of(Vec::new(), "req/s").is_none());
    }
}
