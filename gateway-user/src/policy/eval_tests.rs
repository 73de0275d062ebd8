//! Table tests of the policy evaluators.

use super::*;
use crate::host::test_host;
use crate::policy::spec::{HostRule, PolicySpec, RateLimit};

fn rule(host: &str, methods: &[&str], paths: &[&str]) -> HostRule {
    HostRule {
        host: host.into(),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn compile(spec: PolicySpec) -> CompiledPolicy {
    CompiledPolicy::compile(&spec).unwrap()
}

/// `Ok(())` for allow, `Err(rule)` for a refusal.
fn http(policy: &CompiledPolicy, host: &str, method: &str, path: &str) -> Result<(), String> {
    let req = RequestInfo {
        host: &test_host(host),
        port: 443,
        method,
        path,
    };
    match evaluate(policy, &req) {
        Decision {
            verdict: Verdict::Allow,
            enforced: true,
        } => Ok(()),
        Decision {
            verdict: Verdict::Refuse(r),
            enforced: true,
        } => Err(r.rule),
        other => panic!("unexpected {other:?}"),
    }
}

fn sample() -> CompiledPolicy {
    compile(PolicySpec {
        allow: Some(strings(&[
            "api.test",
            "*.cdn.test",
            "open.test",
            "ro.test",
            "two.test",
            "198.51.100.7",
        ])),
        deny: strings(&["*.evil.test", "bad.cdn.test"]),
        rules: vec![
            rule("api.test", &["get", "POST"], &["/v1", "/files/"]),
            rule("*.cdn.test", &["GET"], &[]),
            rule("img.cdn.test", &[], &["/img"]),
            rule("ro.test", &["GET"], &[]),
            rule("two.test", &["GET"], &["/a"]),
            rule("two.test", &["POST"], &["/b"]),
        ],
        ..PolicySpec::default()
    })
}

#[test]
fn evaluate_table() {
    let policy = sample();
    let allow = Ok(());
    let refuse = |r: &str| Err(r.to_string());
    let cases: Vec<(&str, &str, &str, Result<(), String>)> = vec![
        // deny beats allow; the refusal names the first matching pattern
        ("x.evil.test", "GET", "/", refuse("deny[0] *.evil.test")),
        ("bad.cdn.test", "GET", "/", refuse("deny[1] bad.cdn.test")),
        // allow list
        (
            "nope.test",
            "GET",
            "/",
            refuse("allow (no entry for nope.test)"),
        ),
        (
            "cdn.test",
            "GET",
            "/",
            refuse("allow (no entry for cdn.test)"),
        ),
        ("open.test", "DELETE", "/anything", allow.clone()),
        ("198.51.100.7", "PUT", "/", allow.clone()),
        // methods, case-insensitively; hosts case-insensitively with a trailing dot
        ("API.Test.", "get", "/v1", allow.clone()),
        ("api.test", "post", "/v1/chat", allow.clone()),
        (
            "api.test",
            "DELETE",
            "/v1",
            refuse("rules[0] api.test: method DELETE not in [GET, POST]"),
        ),
        ("ro.test", "Get", "/x", allow.clone()),
        // path prefix boundaries
        ("api.test", "GET", "/v1/x", allow.clone()),
        (
            "api.test",
            "GET",
            "/v10",
            refuse("rules[0] api.test: path /v10 not under [/v1, /files/]"),
        ),
        (
            "api.test",
            "GET",
            "/V1",
            refuse("rules[0] api.test: path /V1 not under [/v1, /files/]"),
        ),
        ("api.test", "GET", "/files/a", allow.clone()),
        ("api.test", "GET", "/files/", allow.clone()),
        (
            "api.test",
            "GET",
            "/files",
            refuse("rules[0] api.test: path /files not under [/v1, /files/]"),
        ),
        (
            "api.test",
            "GET",
            "",
            refuse("rules[0] api.test: path  not under [/v1, /files/]"),
        ),
        // dot segments are refused where paths are listed
        (
            "api.test",
            "GET",
            "/v1/../admin",
            refuse("rules[0] api.test: path /v1/../admin has dot segments"),
        ),
        (
            "api.test",
            "GET",
            "/v1/%2E%2e/admin",
            refuse("rules[0] api.test: path /v1/%2E%2e/admin has dot segments"),
        ),
        ("api.test", "GET", "/v1/..x", allow.clone()),
        ("ro.test", "GET", "/a/../b", allow.clone()),
        // most specific pattern wins: img.cdn.test's rule replaces *.cdn.test's
        ("img.cdn.test", "DELETE", "/img/1", allow.clone()),
        (
            "img.cdn.test",
            "GET",
            "/other",
            refuse("rules[2] img.cdn.test: path /other not under [/img]"),
        ),
        (
            "a.cdn.test",
            "POST",
            "/",
            refuse("rules[1] *.cdn.test: method POST not in [GET]"),
        ),
        ("a.b.cdn.test", "GET", "/", allow.clone()),
        // same pattern twice: alternatives; the refusal names the first
        ("two.test", "GET", "/a/1", allow.clone()),
        ("two.test", "POST", "/b", allow.clone()),
        (
            "two.test",
            "POST",
            "/a",
            refuse("rules[4] two.test: method POST not in [GET]"),
        ),
    ];
    for (host, method, path, want) in cases {
        assert_eq!(
            http(&policy, host, method, path),
            want,
            "{method} {host}{path}"
        );
    }
}

#[test]
fn refusal_reasons_are_sentences() {
    let policy = sample();
    let req = RequestInfo {
        host: &test_host("api.test"),
        port: 443,
        method: "delete",
        path: "/v1",
    };
    let Verdict::Refuse(r) = evaluate(&policy, &req).verdict else {
        panic!("allowed")
    };
    assert_eq!(
        r.reason,
        "DELETE requests to api.test are not allowed by this session's policy (allowed: GET, POST)"
    );
    let long = format!("/{}", "x".repeat(500));
    let req = RequestInfo {
        path: &long,
        method: "GET",
        ..req
    };
    let Verdict::Refuse(r) = evaluate(&policy, &req).verdict else {
        panic!("allowed")
    };
    assert!(r.rule.len() < 250 && r.reason.len() < 300, "{r:?}");
}

#[test]
fn star_and_empty_policies() {
    let open = compile(PolicySpec::default());
    assert_eq!(http(&open, "anything.test", "PATCH", "/x"), Ok(()));
    let star = compile(PolicySpec {
        allow: Some(strings(&["*"])),
        rules: vec![rule("*", &["GET"], &[]), rule("free.test", &[], &[])],
        ..PolicySpec::default()
    });
    assert_eq!(http(&star, "a.test", "GET", "/"), Ok(()));
    assert_eq!(
        http(&star, "a.test", "POST", "/"),
        Err("rules[0] *: method POST not in [GET]".into())
    );
    assert_eq!(http(&star, "free.test", "POST", "/"), Ok(()));
    let closed = compile(PolicySpec {
        allow: Some(vec![]),
        ..PolicySpec::default()
    });
    assert_eq!(
        http(&closed, "a.test", "GET", "/"),
        Err("allow (no entry for a.test)".into())
    );
    let deny_all = compile(PolicySpec {
        deny: strings(&["*"]),
        ..PolicySpec::default()
    });
    assert_eq!(
        http(&deny_all, "a.test", "GET", "/"),
        Err("deny[0] *".into())
    );
}

#[test]
fn audit_mode_keeps_the_refusal_but_lets_it_through() {
    let policy = compile(PolicySpec {
        allow: Some(strings(&["a.test"])),
        enforcement: Enforcement::Audit,
        ..PolicySpec::default()
    });
    let req = RequestInfo {
        host: &test_host("b.test"),
        port: 443,
        method: "GET",
        path: "/",
    };
    let decision = evaluate(&policy, &req);
    assert!(!decision.enforced);
    assert!(decision.lets_through());
    assert!(
        matches!(&decision.verdict, Verdict::Refuse(r) if r.rule == "allow (no entry for b.test)")
    );
    let ok = evaluate(
        &policy,
        &RequestInfo {
            host: &test_host("a.test"),
            ..req
        },
    );
    assert_eq!(
        ok,
        Decision {
            verdict: Verdict::Allow,
            enforced: true
        }
    );
    let tcp = evaluate_tcp(&policy, None, "203.0.113.5:5432".parse().unwrap());
    assert!(!tcp.enforced && matches!(tcp.verdict, Verdict::Refuse(_)));
    let enforced = compile(PolicySpec {
        allow: Some(strings(&["a.test"])),
        ..PolicySpec::default()
    });
    assert!(!evaluate(&enforced, &req).lets_through());
}

#[test]
fn evaluate_tcp_table() {
    let policy = compile(PolicySpec {
        deny: strings(&["*.evil.test", "203.0.113.66"]),
        tcp_allow: strings(&[
            "db.test:5432",
            "mq.test:5672",
            "imap.test:993",
            "203.0.113.0/24:22",
            "[2001:db8::/32]:22",
            "198.51.100.7:6379",
        ]),
        ..PolicySpec::default()
    });
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    let cases: Vec<(Option<&str>, &str, Result<(), &str>)> = vec![
        (Some("DB.test"), "198.51.100.1:5432", Ok(())),
        (
            Some("db.test"),
            "198.51.100.1:5433",
            Err("tcp_allow (no entry for db.test 198.51.100.1:5433)"),
        ),
        (
            None,
            "198.51.100.1:5432",
            Err("tcp_allow (no entry for 198.51.100.1:5432)"),
        ),
        (Some("mq.test"), "198.51.100.1:5672", Ok(())),
        (
            Some("a.mq.test"),
            "198.51.100.1:5672",
            Err("tcp_allow (no entry for a.mq.test 198.51.100.1:5672)"),
        ),
        (Some("imap.test"), "198.51.100.1:993", Ok(())),
        (
            None,
            "198.51.100.1:993",
            Err("tcp_allow (no entry for 198.51.100.1:993)"),
        ),
        (None, "203.0.113.9:22", Ok(())),
        (None, "[::ffff:203.0.113.9]:22", Ok(())),
        (None, "[2001:db8::5]:22", Ok(())),
        (None, "198.51.100.7:6379", Ok(())),
        (
            None,
            "198.51.100.8:6379",
            Err("tcp_allow (no entry for 198.51.100.8:6379)"),
        ),
        (
            Some("imap.evil.test"),
            "198.51.100.1:993",
            Err("deny[0] *.evil.test"),
        ),
        (None, "203.0.113.66:22", Err("deny[1] 203.0.113.66")),
    ];
    for (host, dest, want) in cases {
        let got = match evaluate_tcp(&policy, host.map(test_host).as_ref(), a(dest)).verdict {
            Verdict::Allow => Ok(()),
            Verdict::Refuse(r) => Err(r.rule),
        };
        assert_eq!(got, want.map_err(str::to_string), "{host:?} {dest}");
    }
}

#[test]
fn rate_limit_table() {
    let policy = compile(PolicySpec {
        rate_limits: vec![
            RateLimit {
                host: "*.api.test".into(),
                per_minute: 100,
            },
            RateLimit {
                host: "slow.api.test".into(),
                per_minute: 5,
            },
            RateLimit {
                host: "slow.api.test".into(),
                per_minute: 3,
            },
            RateLimit {
                host: "*".into(),
                per_minute: 1000,
            },
        ],
        ..PolicySpec::default()
    });
    let rr = |key: &str, per_minute| {
        Some(RateRule {
            key: key.into(),
            per_minute,
        })
    };
    let cases = [
        ("A.api.test.", rr("a.api.test", 100)),
        ("b.api.test", rr("b.api.test", 100)),
        ("slow.api.test", rr("slow.api.test", 3)),
        ("api.test", rr("api.test", 1000)),
    ];
    for (host, want) in cases {
        assert_eq!(rate_limit_for(&policy, &test_host(host)), want, "{host}");
    }
    assert_eq!(
        rate_limit_for(&compile(PolicySpec::default()), &test_host("a.test")),
        None
    );
}

#[test]
fn thousand_rules_resolve_by_index() {
    let mut rules = Vec::new();
    let mut allow = Vec::new();
    for i in 0..500 {
        allow.push(format!("h{i}.test"));
        allow.push(format!("*.s{i}.test"));
        rules.push(rule(&format!("h{i}.test"), &["GET"], &[&format!("/h{i}")]));
        rules.push(rule(&format!("*.s{i}.test"), &["POST"], &[]));
    }
    let policy = compile(PolicySpec {
        allow: Some(allow),
        rules,
        ..PolicySpec::default()
    });
    for i in (0..500).step_by(7) {
        assert_eq!(
            http(&policy, &format!("h{i}.test"), "GET", &format!("/h{i}/x")),
            Ok(())
        );
        assert!(http(&policy, &format!("h{i}.test"), "POST", "/").is_err());
        assert_eq!(
            http(&policy, &format!("a.b.s{i}.test"), "POST", "/"),
            Ok(())
        );
        assert!(http(&policy, &format!("s{i}.test"), "POST", "/").is_err());
    }
}

#[test]
fn dot_segment_table() {
    for (path, want) in [
        ("/a/./b", true),
        ("/a/..", true),
        ("/%2e/", true),
        ("/%2E%2E", true),
        ("/a.b/c", false),
        ("/...", false),
        ("/", false),
    ] {
        assert_eq!(has_dot_segment(path), want, "{path}");
    }
}
