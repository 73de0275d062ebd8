//! CPU time and memory of a proxy process (and its helper children) from `/proc`.
//!
//! CPU is `utime + stime` summed over the process and its descendants (Squid runs
//! certificate helpers); memory is the main process's resident set. The kernel's peak
//! (`VmHWM`) is reset before each workload by writing `5` to `/proc/<pid>/clear_refs`, so
//! "peak RSS" is the peak during that workload only.

use std::collections::HashMap;
use std::time::Instant;

/// Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`; 100 on Linux x86_64).
const CLK_TCK: f64 = 100.0;

/// A measurement window over one process tree.
#[derive(Debug)]
pub struct Probe {
    pid: u32,
    ticks: u64,
    rss_kib: u64,
    started: Instant,
}

/// What a process tree used during a [`Probe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds (user + system) of the tree.
    pub cpu_s: f64,
    /// Resident set of the main process when the probe started, KiB.
    pub rss_before_kib: u64,
    /// Peak resident set of the main process during the probe, KiB.
    pub peak_rss_kib: u64,
    /// Wall-clock seconds of the probe.
    pub wall_s: f64,
}

impl Probe {
    /// Starts measuring `pid` and its descendants now.
    pub fn start(pid: u32) -> Probe {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        Probe {
            pid,
            ticks: tree_ticks(pid),
            rss_kib: status_kib(pid, "VmRSS").unwrap_or(0),
            started: Instant::now(),
        }
    }

    /// What the tree used since [`Probe::start`].
    pub fn finish(&self) -> Usage {
        let ticks = tree_ticks(self.pid).saturating_sub(self.ticks);
        let peak = status_kib(self.pid, "VmHWM").unwrap_or(0);
        Usage {
            cpu_s: ticks as f64 / CLK_TCK,
            rss_before_kib: self.rss_kib,
            peak_rss_kib: peak.max(self.rss_kib),
            wall_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` of `pid` and every descendant, in clock ticks.
pub fn tree_ticks(pid: u32) -> u64 {
    let all = all_stats();
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Some(stat) = all.get(&p) {
            total += stat.ticks;
        }
        stack.extend(
            all.iter()
                .filter(|(_, s)| s.ppid == p)
                .map(|(child, _)| *child),
        );
    }
    total
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: u32,
    ticks: u64,
}

fn all_stats() -> HashMap<u32, Stat> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|text| parse_stat(&text))
        {
            out.insert(pid, stat);
        }
    }
    out
}

/// Fields after the `(comm)`: state ppid … utime(14) stime(15), 1-based in proc(5).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        ticks: utime + stime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_parses_with_spaces_in_comm() {
        let line = "42 (my (odd) comm) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 4 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.ppid, 7);
        assert_eq!(stat.ticks, 281);
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(status_kib(pid, "VmRSS").unwrap() > 0);
        let probe = Probe::start(pid);
        let usage = probe.finish();
        assert!(usage.peak_rss_kib > 0);
    }
}
