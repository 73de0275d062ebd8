//! Results: one row per (workload, case, path), ratios computed within a case (same client,
//! same run), written as JSON and Markdown under `bench/results/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One measured (or not applicable) combination.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// `W1` … `W10`.
    pub workload: String,
    /// What was run, with the client (`h1 keep-alive, 16 conns (h2load)`).
    pub case: String,
    /// `direct`, `sluice`, `haproxy`, `squid`, `mitmproxy`.
    pub path: String,
    /// How traffic entered the proxy: `-` (direct), `capture` (`sluice exec`, kernel
    /// redirect), `explicit` (CONNECT to the proxy port), `reverse` (client dials the proxy).
    pub entry: String,
    /// The unit of `value` (`req/s`, `conn/s`, `MB/s`, `ms`, `KiB/conn`).
    pub unit: String,
    /// The main number; `None` when not applicable.
    pub value: Option<f64>,
    /// Median latency, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<f64>,
    /// Proxy CPU time per unit of work, µs (per request, connection, MB, event).
    pub cpu_us_per_unit: Option<f64>,
    /// What `cpu_us_per_unit` is per.
    pub cpu_unit: String,
    /// Proxy resident set before the run, KiB.
    pub rss_before_kib: Option<u64>,
    /// Proxy peak resident set during the run, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Failed requests or connections.
    pub errors: u64,
    /// Why n/a, or anything a reader must know.
    pub note: String,
    /// Named numbers the target checks need beyond the columns (W7's slowest run, W8's
    /// record counts …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, f64>,
}

impl Row {
    /// A row saying the combination was not measured, and why.
    pub fn na(workload: &str, case: &str, path: &str, entry: &str, why: impl Into<String>) -> Row {
        Row {
            workload: workload.into(),
            case: case.into(),
            path: path.into(),
            entry: entry.into(),
            note: format!("n/a: {}", why.into()),
            ..Row::default()
        }
    }

    fn lower_is_better(&self) -> bool {
        matches!(self.unit.as_str(), "ms" | "KiB/conn" | "µs")
    }
}

/// A PERFORMANCE.md target and what this run measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `W1` …
    pub workload: String,
    /// The target as PERFORMANCE.md states it.
    pub target: String,
    /// What was measured (with the entry path).
    pub measured: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measurable in this run.
    pub met: Option<bool>,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Seconds per timed load run.
    pub run_seconds: f64,
    /// Total wall time of the bench, seconds.
    pub total_seconds: f64,
    /// CPU model, cores, memory, kernel.
    pub machine: Machine,
    /// Versions of the peers and clients.
    pub versions: Vec<(String, String)>,
    /// All rows.
    pub rows: Vec<Row>,
    /// Targets and whether they were met.
    pub checks: Vec<Check>,
    /// CPU profiles under the W1 h1 load: the daemon's first, then HAProxy's (when profiled).
    pub profiles: Vec<CpuProfile>,
    /// Caveats of this run.
    pub notes: Vec<String>,
}

/// The profiles side by side: each category's share of a proxy's samples and, from its CPU
/// per request, the µs per request it stands for; then each proxy's hot spots.
fn render_profiles(out: &mut String, profiles: &[CpuProfile]) {
    let Some(first) = profiles.first() else {
        return;
    };
    out.push_str(
        "\n## Where the CPU goes (perf, W1 h1 keep-alive, 16 conns)\n\n\
         Kernel time by the system call it was spent under (sending includes the loopback \
         delivery to the receiver); user space by library. Each proxy was profiled alone under \
         the same load, one after the other; µs per request = share × the proxy's CPU per \
         request during its profile.\n\n| category |",
    );
    for p in profiles {
        let _ = write!(out, " {} |", p.proxy);
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(profiles.len()));
    out.push('\n');
    let mut names: Vec<&str> = first.breakdown.iter().map(|(n, _)| n.as_str()).collect();
    for p in &profiles[1..] {
        for (n, _) in &p.breakdown {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let cell = |p: &CpuProfile, pct: f64| match p.cpu_us_per_req {
        Some(us) => format!("{pct:.1}% ({:.1} µs)", pct / 100.0 * us),
        None => format!("{pct:.1}%"),
    };
    for name in names {
        let _ = write!(out, "| {name} |");
        for p in profiles {
            let pct = p
                .breakdown
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, v)| *v);
            let _ = write!(out, " {} |", cell(p, pct));
        }
        out.push('\n');
    }
    out.push_str("| **CPU per request** |");
    for p in profiles {
        match p.cpu_us_per_req {
            Some(us) => {
                let _ = write!(out, " {us:.1} µs |");
            }
            None => out.push_str(" n/a |"),
        }
    }
    out.push('\n');
    for p in profiles.iter().filter(|p| !p.hotspots.is_empty()) {
        let _ = write!(
            out,
            "\n## Hot spots (perf, {} during W1 h1 keep-alive)\n\n",
            p.proxy
        );
        for h in &p.hotspots {
            let _ = writeln!(out, "- `{h}`");
        }
    }
}

/// What a `perf` profile of one proxy found under a W1-style h1 load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuProfile {
    /// The proxy and how it was reached: `Sluice (capture)`, `HAProxy (reverse)`.
    pub proxy: String,
    /// `perf report` lines of the hottest symbols (self time).
    pub hotspots: Vec<String>,
    /// Categories and their percent of the proxy's samples, largest first.
    pub breakdown: Vec<(String, f64)>,
    /// The proxy's CPU time (user + system) per request during the profiled load, µs.
    pub cpu_us_per_req: Option<f64>,
}

/// The machine description.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// `uname -r`.
    pub kernel: String,
}

impl Machine {
    /// Reads /proc.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
            })
            .map_or(0, |kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpu,
            cores,
            memory_mib,
            kernel,
        }
    }
}

impl Report {
    /// Writes `<dir>/<stamp>.json`, `<dir>/<stamp>.md` and `<dir>/latest.md`; returns the
    /// Markdown path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stamp = self.started.replace(':', "");
        let suffix = if self.quick { "-quick" } else { "" };
        std::fs::write(
            dir.join(format!("{stamp}{suffix}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        let md = self.markdown();
        let path = dir.join(format!("{stamp}{suffix}.md"));
        std::fs::write(&path, &md)?;
        std::fs::write(dir.join("latest.md"), &md)?;
        Ok(path)
    }

    /// The Markdown report: machine, targets, then every row with its ratios.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "# Sluice benchmark, {}{}\n\n\
             Machine: {} ({} vCPU), {} MiB RAM, kernel {}. Each timed run: {} s; whole bench: {:.0} s.\n\n\
             Entry paths: **capture** = the client runs under `sluice exec` (kernel redirect, how \
             sandboxes use Sluice); **explicit** = CONNECT to the proxy port (`HTTPS_PROXY`; the \
             only way mitmproxy and Squid work here); **reverse** = the client dials HAProxy as the \
             server. Ratios compare rows of one case: same client, same run. \"+\" latencies are \
             added over direct. CPU is the proxy's user+system time per unit of work.\n\n",
            self.started,
            if self.quick { " (quick)" } else { "" },
            m.cpu,
            m.cores,
            m.memory_mib,
            m.kernel,
            self.run_seconds,
            self.total_seconds,
        );
        out.push_str("## Targets (PERFORMANCE.md)\n\n| workload | target | measured | met |\n|---|---|---|---|\n");
        for c in &self.checks {
            let met = match c.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.workload, c.target, c.measured, met
            );
        }
        out.push_str(
            "\n## Results\n\n| workload | case | path | entry | result | × direct | Sluice ÷ peer | p50 µs | p99 µs | CPU µs/unit | peak RSS MiB | errors | note |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let direct = self.direct_of(row);
            let ratio = match (row.value, direct.and_then(|d| d.value)) {
                (Some(v), Some(d)) if d > 0.0 && row.path != "direct" => format!("{:.2}", v / d),
                _ => String::new(),
            };
            let lat = |v: Option<f64>, d: Option<f64>| match (v, d) {
                (Some(v), Some(d)) if row.path != "direct" => format!("{v:.0} ({})", signed(v - d)),
                (Some(v), _) => format!("{v:.0}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.workload,
                row.case,
                row.path,
                row.entry,
                row.value
                    .map_or(String::new(), |v| format!("{} {}", fmt_num(v), row.unit)),
                ratio,
                self.peer_ratios(row),
                lat(row.p50_us, direct.and_then(|d| d.p50_us)),
                lat(row.p99_us, direct.and_then(|d| d.p99_us)),
                row.cpu_us_per_unit
                    .map_or(String::new(), |c| format!("{c:.1}/{}", row.cpu_unit)),
                row.peak_rss_kib
                    .map_or(String::new(), |k| format!("{:.1}", k as f64 / 1024.0)),
                if row.errors > 0 {
                    row.errors.to_string()
                } else {
                    String::new()
                },
                row.note,
            );
        }
        let verdicts = vs_haproxy(&self.rows);
        if !verdicts.is_empty() {
            out.push_str(
                "\n## vs HAProxy (same case, same run; ahead = at least as good on every measure both have)\n\n\
                 | workload | case | Sluice | HAProxy | verdict |\n|---|---|---|---|---|\n",
            );
            for v in &verdicts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    v.workload, v.case, v.sluice, v.haproxy, v.verdict
                );
            }
        }
        render_profiles(&mut out, &self.profiles);
        out.push_str("\n## Notes\n\n");
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push_str("\n## Versions\n\n");
        for (name, v) in &self.versions {
            let _ = writeln!(out, "- {name}: {v}");
        }
        out
    }

    /// The direct row of the same case.
    pub fn direct_of(&self, row: &Row) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.workload == row.workload && r.case == row.case && r.path == "direct")
    }

    /// For a Sluice row: its value divided by each measured peer's in the same case.
    fn peer_ratios(&self, row: &Row) -> String {
        let Some(v) = row.value.filter(|_| row.path == "sluice") else {
            return String::new();
        };
        self.rows
            .iter()
            .filter(|r| r.workload == row.workload && r.case == row.case)
            .filter(|r| !matches!(r.path.as_str(), "direct" | "sluice"))
            .filter_map(|r| {
                let p = r.value.filter(|p| *p > 0.0)?;
                let ratio = if row.lower_is_better() { p / v } else { v / p };
                Some(format!("{:.2}× {}", ratio, r.path))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// For each case both Sluice and HAProxy ran: their measures side by side and whether
/// Sluice is at least as good on every one (value, CPU per unit, p50, p99).
pub fn vs_haproxy(rows: &[Row]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for hap in rows.iter().filter(|r| r.path == "haproxy") {
        let Some(sluice) = rows
            .iter()
            .filter(|r| r.workload == hap.workload && r.case == hap.case)
            .filter(|r| r.path == "sluice" && r.value.is_some())
            .min_by_key(|r| r.entry != "capture")
        else {
            continue;
        };
        if hap.value.is_none() {
            continue;
        }
        let lower = sluice.lower_is_better();
        let measures: [(&str, Option<f64>, Option<f64>, bool); 4] = [
            (sluice.unit.as_str(), sluice.value, hap.value, lower),
            ("µs CPU", sluice.cpu_us_per_unit, hap.cpu_us_per_unit, true),
            ("µs p50", sluice.p50_us, hap.p50_us, true),
            ("µs p99", sluice.p99_us, hap.p99_us, true),
        ];
        let (mut mine, mut theirs, mut behind) = (Vec::new(), Vec::new(), Vec::new());
        for (unit, s, h, lower) in measures {
            let (Some(s), Some(h)) = (s, h) else { continue };
            mine.push(format!("{} {unit}", fmt_num(s)));
            theirs.push(format!("{} {unit}", fmt_num(h)));
            if (lower && s > h) || (!lower && s < h) {
                behind.push(unit.to_owned());
            }
        }
        out.push(Verdict {
            workload: hap.workload.clone(),
            case: hap.case.clone(),
            sluice: format!("{} ({})", mine.join(", "), sluice.entry),
            haproxy: theirs.join(", "),
            verdict: if behind.is_empty() {
                "ahead".to_owned()
            } else {
                format!("**behind** on {}", behind.join(", "))
            },
        });
    }
    out
}

/// One case of the "vs HAProxy" table.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `W1` …
    pub workload: String,
    /// The case.
    pub case: String,
    /// Sluice's measures (and its entry path).
    pub sluice: String,
    /// HAProxy's measures.
    pub haproxy: String,
    /// `ahead`, or `behind on …` naming each measure where HAProxy did better.
    pub verdict: String,
}

/// A difference with its sign, rounded: `+12`, `−57` (a real minus sign), `±0`.
pub fn signed(v: f64) -> String {
    let r = v.round();
    if r > 0.0 {
        format!("+{r:.0}")
    } else if r < 0.0 {
        format!("−{:.0}", -r)
    } else {
        "±0".to_owned()
    }
}

/// 12345.6 → `12,346`; 12.34 → `12.3`; 0.1234 → `0.123`.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format() {
        for (v, want) in [
            (12345.6, "12,346"),
            (1000.0, "1,000"),
            (12.34, "12.3"),
            (0.12345, "0.123"),
        ] {
            assert_eq!(fmt_num(v), want);
        }
    }

    #[test]
    fn vs_haproxy_is_ahead_only_when_no_measure_is_worse() {
        let row = |path: &str, entry: &str, unit: &str, value: f64, cpu: f64| Row {
            workload: "W1".into(),
            case: "c".into(),
            path: path.into(),
            entry: entry.into(),
            unit: unit.into(),
            value: Some(value),
            cpu_us_per_unit: Some(cpu),
            ..Row::default()
        };
        let verdict = |rows: &[Row]| {
            vs_haproxy(rows)
                .into_iter()
                .map(|v| v.verdict)
                .collect::<Vec<_>>()
        };
        // More req/s but more CPU per request: behind on CPU.
        let rows = [
            row("sluice", "capture", "req/s", 30_000.0, 40.0),
            row("haproxy", "reverse", "req/s", 29_000.0, 32.0),
        ];
        assert_eq!(verdict(&rows), ["**behind** on µs CPU"]);
        // Less KiB per connection (lower is better) and less CPU: ahead; the capture row is
        // the one compared, not the explicit one.
        let rows = [
            row("sluice", "explicit", "KiB/conn", 90.0, 90.0),
            row("sluice", "capture", "KiB/conn", 12.0, 10.0),
            row("haproxy", "reverse", "KiB/conn", 14.5, 11.0),
        ];
        assert_eq!(verdict(&rows), ["ahead"]);
        // No HAProxy row, or a failed one: no verdict.
        let mut failed = row("haproxy", "reverse", "req/s", 1.0, 1.0);
        failed.value = None;
        assert!(verdict(&[row("sluice", "capture", "req/s", 1.0, 1.0), failed]).is_empty());
    }

    #[test]
    fn differences_carry_their_sign() {
        for (v, want) in [(56.6, "+57"), (-57.2, "−57"), (0.2, "±0"), (-0.4, "±0")] {
            assert_eq!(signed(v), want);
        }
    }
}
