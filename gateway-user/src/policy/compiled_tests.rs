//! Compilation errors, pattern indexing and host normalisation.

use super::*;
use crate::policy::spec::{HostRule, RateLimit};

fn rule(host: &str, methods: &[&str], paths: &[&str]) -> HostRule {
    HostRule {
        host: host.into(),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn errors_name_the_field_table() {
    let base = PolicySpec::default;
    let cases: Vec<(PolicySpec, &str)> = vec![
        (
            PolicySpec {
                deny: vec!["ok.test".into(), "a.*.test".into()],
                ..base()
            },
            "deny[1]: ",
        ),
        (
            PolicySpec {
                allow: Some(vec!["".into()]),
                ..base()
            },
            "allow[0]: ",
        ),
        (
            PolicySpec {
                passthrough: vec!["**.x".into()],
                ..base()
            },
            "passthrough[0]: ",
        ),
        (
            PolicySpec {
                rules: vec![rule("a b", &[], &[])],
                ..base()
            },
            "rules[0].host: ",
        ),
        (
            PolicySpec {
                rules: vec![
                    rule("a.test", &[], &[]),
                    rule("b.test", &[], &[]),
                    rule("c.test", &[], &["v1"]),
                ],
                ..base()
            },
            "rules[2].paths[0]: must start with /",
        ),
        (
            PolicySpec {
                rules: vec![rule("a.test", &[], &["/v1?x"])],
                ..base()
            },
            "rules[0].paths[0]: ",
        ),
        (
            PolicySpec {
                rules: vec![rule("a.test", &[], &["/v1/../x"])],
                ..base()
            },
            "rules[0].paths[0]: ",
        ),
        (
            PolicySpec {
                rules: vec![rule("a.test", &["GET", "GE T"], &[])],
                ..base()
            },
            "rules[0].methods[1]: ",
        ),
        (
            PolicySpec {
                rate_limits: vec![RateLimit {
                    host: "a.test".into(),
                    per_minute: 0,
                }],
                ..base()
            },
            "rate_limits[0].per_minute: must be at least 1",
        ),
        (
            PolicySpec {
                rate_limits: vec![RateLimit {
                    host: "*x".into(),
                    per_minute: 1,
                }],
                ..base()
            },
            "rate_limits[0].host: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["db.test:5432".into(), "db.test".into()],
                ..base()
            },
            "tcp_allow[1]: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["db.test:0".into()],
                ..base()
            },
            "tcp_allow[0]: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["2001:db8::1:443".into()],
                ..base()
            },
            "tcp_allow[0]: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["203.0.113.0/33:443".into()],
                ..base()
            },
            "tcp_allow[0]: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["[db.test:443".into()],
                ..base()
            },
            "tcp_allow[0]: ",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["*.mq.test:5672".into()],
                ..base()
            },
            "tcp_allow[0]: \"*.mq.test:5672\": a host entry must be an exact name",
        ),
        (
            PolicySpec {
                tcp_allow: vec!["*:993".into()],
                ..base()
            },
            "tcp_allow[0]: \"*:993\": a host entry must be an exact name",
        ),
        (
            PolicySpec {
                passthrough: vec!["pinned.test:0".into()],
                ..base()
            },
            "passthrough[0]: \"pinned.test:0\" is not HOST or HOST:PORT",
        ),
        (
            PolicySpec {
                passthrough: vec!["pinned.test:https".into()],
                ..base()
            },
            "passthrough[0]: ",
        ),
    ];
    for (spec, want) in cases {
        let got = CompiledPolicy::compile(&spec).unwrap_err().to_string();
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn valid_policies_compile() {
    let spec = PolicySpec {
        allow: Some(vec![
            "*".into(),
            "API.test.".into(),
            "*.x.test".into(),
            "2001:DB8::1".into(),
        ]),
        rules: vec![rule("*", &["get", "PoSt"], &["/", "/v1/"])],
        tcp_allow: vec![
            "db.test:5432".into(),
            "db.test:443".into(),
            "203.0.113.0/24:22".into(),
            "198.51.100.7:80".into(),
            "[2001:db8::/32]:22".into(),
            "[2001:db8::1]:23".into(),
        ],
        passthrough: vec!["*.bank.test".into(), "www.bank.test:8443".into()],
        ..PolicySpec::default()
    };
    let policy = CompiledPolicy::compile(&spec).unwrap();
    assert_eq!(policy.rules[0].methods, ["GET", "POST"]);
    assert!(matches!(
        policy.tcp_allow[1].target,
        TcpMatch::Host(HostMatch::Pattern(_))
    ));
    assert_eq!(
        policy
            .tcp_allow_hosts(443)
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>(),
        ["db.test"]
    );
    assert!(policy.tcp_allow_hosts(22).is_empty());
    assert_eq!(
        policy.passthrough_ports(&crate::host::test_host("www.bank.test")),
        [443, 8443]
    );
    assert_eq!(
        policy.passthrough_ports(&crate::host::test_host("a.bank.test")),
        [443]
    );
    assert!(
        policy
            .passthrough_ports(&crate::host::test_host("bank.test"))
            .is_empty()
    );
    assert!(matches!(policy.tcp_allow[3].target, TcpMatch::Cidr(_)));
    assert!(policy.is_passthrough(&crate::host::test_host("WWW.bank.test.")));
    assert!(!policy.is_passthrough(&crate::host::test_host("bank.test")));
    assert_eq!(policy.passthrough_patterns()[0].to_string(), "*.bank.test");
    assert_eq!(policy.spec(), &spec);
}

#[test]
fn lookup_prefers_the_most_specific_pattern() {
    let mut index = HostIndex::default();
    for (i, p) in ["*", "*.test", "*.b.test", "a.b.test"].iter().enumerate() {
        index.insert(&HostMatch::parse(p).unwrap(), i);
    }
    let cases: &[(&str, Option<usize>)] = &[
        ("a.b.test", Some(3)),
        ("A.B.TEST.", Some(3)),
        ("x.a.b.test", Some(2)),
        ("c.b.test", Some(2)),
        ("b.test", Some(1)),
        ("test", Some(0)),
        ("other.example", Some(0)),
        ("203.0.113.9", Some(0)),
    ];
    for (host, want) in cases {
        let host = crate::host::Host::parse(host).unwrap();
        assert_eq!(index.lookup(&host).map(|v| v[0]), *want, "{host:?}");
    }
}
