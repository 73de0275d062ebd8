//! Criterion: a per-session policy decision with 1,000 rules (W7's unit of work), the rate
//! budget lookup, and compiling such a policy (once per session).

#![expect(clippy::unwrap_used, reason = "bench set-up fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::host::Host;
use sluice::policy::{self, CompiledPolicy, HostRule, PolicySpec, RateLimit, RequestInfo};

/// 1,000 exact hosts and 1,000 host rules; `host-999.example.com` is the last one.
fn spec() -> PolicySpec {
    let hosts: Vec<String> = (0..1000).map(|i| format!("host-{i}.example.com")).collect();
    PolicySpec {
        allow: Some(hosts.clone()),
        deny: (0..100).map(|i| format!("*.blocked-{i}.test")).collect(),
        rules: hosts
            .iter()
            .map(|h| HostRule {
                host: h.clone(),
                methods: vec!["GET".into(), "POST".into()],
                paths: vec!["/v1/".into(), "/v2/".into()],
            })
            .collect(),
        rate_limits: vec![RateLimit {
            host: "*.example.com".into(),
            per_minute: 600,
        }],
        ..PolicySpec::default()
    }
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    let compiled = CompiledPolicy::compile(&spec).unwrap();
    let host = Host::parse("host-999.example.com").unwrap();
    let elsewhere = Host::parse("elsewhere.test").unwrap();
    let last = RequestInfo {
        host: &host,
        port: 443,
        method: "POST",
        path: "/v2/chat/completions",
    };
    assert!(policy::evaluate(&compiled, &last).lets_through());
    c.bench_function("policy/evaluate_1k_rules_last_matches", |b| {
        b.iter(|| policy::evaluate(black_box(&compiled), black_box(&last)))
    });
    let outside = RequestInfo {
        host: &elsewhere,
        ..last
    };
    c.bench_function("policy/evaluate_1k_rules_refused", |b| {
        b.iter(|| policy::evaluate(black_box(&compiled), black_box(&outside)))
    });
    c.bench_function("policy/rate_limit_for", |b| {
        b.iter(|| policy::rate_limit_for(black_box(&compiled), black_box(&host)))
    });
    c.bench_function("policy/compile_1k_rules", |b| {
        b.iter(|| CompiledPolicy::compile(black_box(&spec)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
