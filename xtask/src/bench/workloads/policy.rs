//! W7: the per-session policy with 1,000 host rules (only the last matches the bench host)
//! against the same session with one rule, both through capture with the same clients.
//!
//! The two sessions live in one daemon and the runs alternate (1, 1000, 1, 1000 …), best run
//! per variant kept, so a slow moment (W6 leaves 10k connections closing) cannot decide the
//! comparison on its own; the daemon is let idle first. The decision's own cost comes from
//! the criterion bench `gateway-user/benches/policy.rs`, run here for a few seconds.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::http::{h2load, wrk_close};
use super::{Ctx, Service, Via};
use crate::bench::report::Row;
use crate::bench::tools;

/// Case names shared with the target checks.
pub mod case {
    /// Kept-alive requests: one policy decision per request.
    pub const KEEP: &str = "h1 keep-alive, 16 conns (h2load --h1), session policy";
    /// A new connection per request.
    pub const NEW_CONN: &str = "new TLS conn per request, 8 conns (wrk), session policy";
    /// The decision alone (criterion).
    pub const DECISION: &str = "one policy decision, 1k rules, last matches (criterion)";
}

/// Rules in the large policy.
pub const RULES: usize = 1000;
/// The criterion benchmark measuring one decision with [`RULES`] rules.
const CRITERION_ID: &str = "evaluate_1k_rules_last_matches";
/// Facts of the decision row: p50 and p99 of the samples' per-call means, ns.
pub const P50_NS: &str = "p50_ns";
/// See [`P50_NS`].
pub const P99_NS: &str = "p99_ns";
/// Environment variable through which the build step passes the compiled criterion bench.
pub const POLICY_BENCH_ENV: &str = "SLUICE_BENCH_POLICY_EXE";

/// The case name of one variant.
pub fn variant_case(base: &str, rules: usize) -> String {
    let word = if rules == 1 { "rule" } else { "rules" };
    format!("{base} — {rules} {word}")
}

/// A policy of `rules` host rules (path `/small`) and as many allowed hosts; only the last
/// names `bench.test`, so a lookup that scanned would pay for all of them. Host names are
/// short because the control API takes bodies up to 64 KiB.
pub fn policy(rules: usize) -> serde_json::Value {
    let mut hosts: Vec<String> = (1..rules).map(|i| format!("r{i}.t")).collect();
    hosts.push("bench.test".into());
    let rules: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| json!({ "host": h, "paths": ["/small"] }))
        .collect();
    json!({ "allow": hosts, "rules": rules })
}

/// W7: both sessions, alternating runs, then the criterion decision cost.
pub fn w7(ctx: &mut Ctx<'_>) {
    let (waited, idle) = ctx.daemon.settle(Duration::from_secs(20));
    eprintln!(
        "bench: W7: daemon {} after {:.1} s",
        if idle { "idle" } else { "still busy" },
        waited.as_secs_f64()
    );
    let sessions = [1, RULES].map(|n| ctx.daemon.create_session(policy(n)).map(|id| (n, id)));
    let sessions: Vec<(usize, String)> = match sessions.into_iter().collect() {
        Ok(s) => s,
        Err(e) => {
            for base in [case::KEEP, case::NEW_CONN] {
                for n in [1, RULES] {
                    ctx.rows.push(Row::na(
                        "W7",
                        &variant_case(base, n),
                        "sluice",
                        "capture",
                        format!("no session: {e:#}"),
                    ));
                }
            }
            decision(ctx);
            return;
        }
    };
    let s = ctx.secs();
    alternate(
        ctx,
        case::KEEP,
        &sessions,
        2,
        "req/s",
        "req",
        &mut |ctx, via| h2load(ctx, via, &["--h1", "-c16", "-m1"], s),
    );
    alternate(
        ctx,
        case::NEW_CONN,
        &sessions,
        2,
        "conn/s",
        "conn",
        &mut |ctx, via| wrk_close(ctx, via, Service::Nginx),
    );
    decision(ctx);
}

/// Runs `f` `rounds` times per session, alternating, and records the best row of each.
fn alternate<'a>(
    ctx: &mut Ctx<'a>,
    base: &str,
    sessions: &[(usize, String)],
    rounds: usize,
    unit: &str,
    cpu_unit: &str,
    f: &mut dyn FnMut(&Ctx<'a>, &Via<'a>) -> anyhow::Result<tools::Load>,
) {
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); sessions.len()];
    for _ in 0..rounds {
        for (i, (n, id)) in sessions.iter().enumerate() {
            let via = ctx.session_via(Some(id));
            let mut run = |c: &Ctx<'a>, v: &Via<'a>| f(c, v);
            let row = ctx.measure(
                "W7",
                &variant_case(base, *n),
                unit,
                cpu_unit,
                &via,
                &mut run,
            );
            super::log_row(&row);
            runs[i].push(row);
        }
    }
    for rows in runs {
        if let Some(best) = super::best_of(rows, unit) {
            ctx.rows.push(best);
        }
    }
}

/// The criterion bench of one decision with 1k rules (compiled by the build step).
fn decision(ctx: &mut Ctx<'_>) {
    let mut row = Row {
        workload: "W7".into(),
        case: case::DECISION.into(),
        path: "sluice".into(),
        entry: "-".into(),
        unit: "ns".into(),
        ..Row::default()
    };
    match criterion(ctx) {
        Ok(est) => {
            row.value = Some(est.mean_ns);
            row.facts.insert(P50_NS.into(), est.p50_ns);
            row.facts.insert(P99_NS.into(), est.p99_ns);
            row.note = format!(
                "mean per decision; over {} criterion samples (each the mean of a batch of \
                 calls; one call is too short to time alone): p50 {:.0} ns, p99 {:.0} ns",
                est.samples, est.p50_ns, est.p99_ns
            );
        }
        Err(e) => {
            row.note = format!(
                "n/a: {e:#}; see `cargo bench -p gateway-user --bench policy`, or pass --criterion"
            );
        }
    }
    super::log_row(&row);
    ctx.rows.push(row);
}

/// What criterion measured for one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Mean time per call, ns.
    pub mean_ns: f64,
    /// Median of the samples' per-call means, ns.
    pub p50_ns: f64,
    /// 99th percentile of the samples' per-call means, ns.
    pub p99_ns: f64,
    /// Samples taken.
    pub samples: usize,
}

fn criterion(ctx: &Ctx<'_>) -> anyhow::Result<Estimate> {
    if !ctx.args.criterion {
        anyhow::bail!("criterion bench not run (it needs --criterion: compiling it takes minutes)");
    }
    let exe = std::env::var_os(POLICY_BENCH_ENV)
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("the criterion bench did not build"))?;
    let home = ctx.scratch("criterion");
    let mut cmd = std::process::Command::new(&exe);
    cmd.env("CRITERION_HOME", &home)
        .args(["--bench", "--warm-up-time", "1", "--measurement-time", "2"])
        .args(["--noplot", CRITERION_ID]);
    tools::run_bounded(cmd, Duration::from_secs(60))?;
    let sample = find_sample(&home).ok_or_else(|| {
        anyhow::anyhow!("no sample.json for {CRITERION_ID} under {}", home.display())
    })?;
    parse_sample(&std::fs::read_to_string(sample)?)
}

/// `<home>/…/<id>/new/sample.json`.
fn find_sample(home: &Path) -> Option<std::path::PathBuf> {
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/sample.json")
                && path.to_string_lossy().contains(CRITERION_ID)
            {
                return Some(path);
            }
        }
    }
    None
}

/// Criterion's `sample.json` (`iters`, `times` in ns per sample) → per-call statistics.
pub fn parse_sample(text: &str) -> anyhow::Result<Estimate> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let list = |key: &str| -> anyhow::Result<Vec<f64>> {
        v[key]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("criterion sample: no `{key}` array"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| anyhow::anyhow!("criterion sample: `{key}` not numbers"))
            })
            .collect()
    };
    let (iters, times) = (list("iters")?, list("times")?);
    anyhow::ensure!(
        !iters.is_empty() && iters.len() == times.len(),
        "criterion sample: `iters` and `times` differ in length or are empty"
    );
    let mean_ns = times.iter().sum::<f64>() / iters.iter().sum::<f64>();
    let mut per_call: Vec<f64> = iters
        .iter()
        .zip(&times)
        .filter(|(i, _)| **i > 0.0)
        .map(|(i, t)| t / i)
        .collect();
    let (p50, p99) = tools::percentiles(&mut per_call);
    Ok(Estimate {
        mean_ns,
        p50_ns: p50.unwrap_or(mean_ns),
        p99_ns: p99.unwrap_or(mean_ns),
        samples: per_call.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_policy_ends_with_the_bench_host() {
        let p = policy(RULES);
        assert_eq!(p["allow"].as_array().unwrap().len(), RULES);
        assert_eq!(p["rules"].as_array().unwrap().len(), RULES);
        assert_eq!(p["rules"][RULES - 1]["host"], "bench.test");
        assert_eq!(p["rules"][0]["host"], "r1.t");
        let body = json!({ "ttl_seconds": 7200, "policy": p }).to_string();
        assert!(body.len() < 60 * 1024, "{} bytes", body.len());
        assert_eq!(policy(1)["allow"], json!(["bench.test"]));
    }

    #[test]
    fn criterion_samples_give_per_call_times() {
        let text = r#"{"sampling_mode":"Linear","iters":[10.0,20.0,30.0,40.0],"times":[1000.0,2200.0,3000.0,8000.0]}"#;
        let est = parse_sample(text).unwrap();
        assert_eq!(est.samples, 4);
        assert!((est.mean_ns - 14200.0 / 100.0).abs() < 1e-9);
        assert_eq!(est.p99_ns, 200.0);
        assert!(parse_sample(r#"{"iters":[1.0],"times":[]}"#).is_err());
    }

    #[test]
    fn case_names_say_rule_or_rules() {
        assert!(variant_case(case::KEEP, 1).ends_with("— 1 rule"));
        assert!(variant_case(case::KEEP, RULES).ends_with("— 1000 rules"));
    }
}
