//! Table and round-trip tests of policy suggestion.

use crate::host::test_host;
use std::net::SocketAddr;

use super::*;
use crate::policy::{CompiledPolicy, RequestInfo, Verdict, evaluate, evaluate_tcp};

fn http(host: &str, method: &str, path: &str) -> Observed {
    Observed {
        host: host.into(),
        port: 443,
        method: Some(method.into()),
        path: Some(path.into()),
        tcp: false,
        refused_certificate: false,
        executable: None,
    }
}

fn tcp(host: &str, port: u16) -> Observed {
    Observed {
        host: host.into(),
        port,
        method: None,
        path: None,
        tcp: true,
        refused_certificate: false,
        executable: None,
    }
}

fn rule(host: &str, methods: &[&str], paths: &[&str]) -> HostRule {
    HostRule {
        host: host.into(),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
    }
}

fn sample() -> Vec<Observed> {
    vec![
        http("API.test.", "post", "/v1/chat/completions"),
        http("api.test", "GET", "/v1/models"),
        http("api.test", "GET", "/v1"),
        http("api.test", "GET", "/health?full=1"),
        http("cdn.test", "GET", "/"),
        http("cdn.test", "GET", "/img/a.png"),
        http("odd.test", "GET", "/a/../b"),
        http("odd.test", "M SEARCH", "/x/y"),
        http("[2001:db8::1]", "GET", "/x"),
        Observed {
            method: None,
            path: None,
            ..http("pinned.test", "", "")
        },
        Observed {
            path: None,
            ..http("nopath.test", "PUT", "")
        },
        http("bad host", "GET", "/"),
        tcp("db.test", 5432),
        tcp("db.test", 5432),
        tcp("203.0.113.5", 6379),
        tcp("2001:db8::7", 22),
    ]
}

#[test]
fn suggest_table() {
    let spec = suggest(sample());
    let want = PolicySpec {
        allow: Some(
            [
                "2001:db8::1",
                "api.test",
                "cdn.test",
                "nopath.test",
                "odd.test",
                "pinned.test",
            ]
            .map(String::from)
            .to_vec(),
        ),
        rules: vec![
            rule("2001:db8::1", &["GET"], &["/x"]),
            rule("api.test", &["GET", "POST"], &["/health", "/v1"]),
            rule("cdn.test", &["GET"], &["/"]),
            rule("nopath.test", &["PUT"], &[]),
            rule("odd.test", &[], &[]),
        ],
        tcp_allow: ["[2001:db8::7]:22", "203.0.113.5:6379", "db.test:5432"]
            .map(String::from)
            .to_vec(),
        ..PolicySpec::default()
    };
    assert_eq!(spec, want);
    // Deterministic whatever the order of observation.
    let mut reversed = sample();
    reversed.reverse();
    assert_eq!(suggest(reversed), want);
}

#[test]
fn nothing_observed_allows_nothing() {
    let spec = suggest(Vec::new());
    assert_eq!(spec.allow, Some(vec![]));
    let policy = CompiledPolicy::compile(&spec).unwrap();
    let req = RequestInfo {
        host: &test_host("a.test"),
        port: 443,
        method: "GET",
        path: "/",
    };
    assert!(!evaluate(&policy, &req).lets_through());
}

#[test]
fn first_segment_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("/v1/chat/completions", Some("/v1/")),
        ("/v1/", Some("/v1/")),
        ("/v1", Some("/v1")),
        ("/v1?q=/x/y", Some("/v1")),
        ("/", Some("/")),
        ("//double", Some("/")),
        ("*", None),
        ("", None),
        ("/./x", None),
        ("/a b", None),
    ];
    for (path, want) in cases {
        assert_eq!(first_segment(path).as_deref(), *want, "{path:?}");
    }
}

#[test]
fn suggested_policy_allows_everything_observed() {
    let observed = sample();
    let policy = CompiledPolicy::compile(&suggest(observed.clone())).unwrap();
    let dest: SocketAddr = "198.51.100.20:0".parse().unwrap();
    for seen in &observed {
        if crate::host::Host::parse(&seen.host).is_err() {
            continue;
        }
        let host = seen.host.trim_start_matches('[').trim_end_matches(']');
        let verdict = if seen.tcp {
            let dest = match host.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, seen.port),
                Err(_) => SocketAddr::new(dest.ip(), seen.port),
            };
            let name = host.parse::<IpAddr>().is_err().then_some(host);
            evaluate_tcp(&policy, name.map(test_host).as_ref(), dest).verdict
        } else {
            let path = seen.path.as_deref().unwrap_or("/");
            let req = RequestInfo {
                host: &test_host(host),
                port: seen.port,
                method: seen.method.as_deref().unwrap_or("GET"),
                path: path.split('?').next().unwrap(),
            };
            evaluate(&policy, &req).verdict
        };
        assert_eq!(verdict, Verdict::Allow, "{seen:?}");
    }
    // And not much more: other hosts, methods and first segments are refused.
    let refused = [
        ("api.test", "DELETE", "/v1"),
        ("api.test", "GET", "/v2"),
        ("other.test", "GET", "/"),
    ];
    for (host, method, path) in refused {
        let req = RequestInfo {
            host: &test_host(host),
            port: 443,
            method,
            path,
        };
        assert!(
            !evaluate(&policy, &req).lets_through(),
            "{method} {host}{path}"
        );
    }
    let db: SocketAddr = "198.51.100.20:5433".parse().unwrap();
    assert!(!evaluate_tcp(&policy, Some(&test_host("db.test")), db).lets_through());
}

#[test]
fn a_host_whose_client_pins_is_proposed_for_passthrough_but_not_one_that_needs_a_variable() {
    let refused = |host: &str, port: u16, executable: Option<&str>| Observed {
        host: host.into(),
        port,
        method: None,
        path: None,
        tcp: false,
        refused_certificate: true,
        executable: executable.map(str::to_owned),
    };
    let policy = suggest([
        refused("pinned.test", 443, Some("/usr/bin/python3.11")),
        refused("PINNED.test", 443, None),
        refused("odd.test", 8443, Some("/opt/agent")),
        // Node reads its own roots: the fix is NODE_EXTRA_CA_CERTS, not passthrough.
        refused("node.test", 443, Some("/usr/bin/node")),
        http("api.test", "GET", "/v1/x"),
    ]);
    assert_eq!(policy.passthrough, ["odd.test:8443", "pinned.test"]);
    assert_eq!(
        policy.allow.unwrap(),
        ["api.test", "node.test", "odd.test", "pinned.test"]
    );
}
