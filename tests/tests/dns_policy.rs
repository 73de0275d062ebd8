//! DNS follows policy, end to end through the real daemon: a sandbox resolves only names a
//! rule that applies to it could connect to, only A/AAAA are served, distinct names per minute
//! are capped, unidentified askers are refused, and DNS over TCP is opaque TCP.
//!
//! Sandboxes run with `--netns` (their own network namespace): there the daemon's DNS socket
//! knows which sandbox asks.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use serde_json::Value;
use tests::NetLab;
use tests::sluice::{Options, Sluice};

/// A daemon resolving api.test and other.test (and a1..a4.test) from its static table.
fn daemon(lab: &NetLab, extra: &str) -> Sluice {
    let mut hosts = vec![
        ("api.test".to_owned(), "203.0.113.10".to_owned()),
        ("other.test".to_owned(), "198.51.100.10".to_owned()),
    ];
    for n in 1..=4 {
        hosts.push((format!("a{n}.test"), "198.51.100.12".to_owned()));
    }
    Sluice::start(
        lab,
        &Options {
            extra_toml: extra.to_owned(),
            dns_hosts: hosts,
            ..Options::default()
        },
    )
    .unwrap()
}

/// `sluice session create --json <args>`; returns the session id.
fn session(sluice: &Sluice, args: &[&str]) -> String {
    let out = sluice
        .command()
        .args(["session", "create", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    created["session"]["id"].as_str().unwrap().to_owned()
}

/// Runs `script` (sh) in a sandbox of its own network namespace; returns stdout.
fn in_sandbox(sluice: &Sluice, session: Option<&str>, script: &str) -> String {
    let mut flags = vec!["--netns"];
    if let Some(id) = session {
        flags.extend(["--session", id]);
    }
    let out = sluice.exec(&flags, &["sh", "-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig` against an arbitrary resolver address (the kernel steers it to the daemon).
fn dig(name: &str, qtype: &str) -> String {
    format!("dig +tries=1 +time=3 @203.0.113.53 {name} {qtype}")
}

fn dns_record<'a>(name: &'a str, qtype: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |r: &Value| r["kind"] == "dns" && r["host"] == name && r["qtype"] == qtype
}

#[test]
fn a_session_resolves_only_names_its_policy_could_reach() {
    let lab = NetLab::new("dnsp").unwrap();
    let sluice = daemon(&lab, "");
    let id = session(&sluice, &["--allow", "api.test"]);

    let out = in_sandbox(&sluice, Some(&id), &dig("api.test", "A"));
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("203.0.113.10"), "{out}");

    // other.test is in the daemon's table, yet it is not answered: policy comes first.
    let out = in_sandbox(&sluice, Some(&id), &dig("other.test", "A"));
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(!out.contains("198.51.100.10"), "{out}");
    let record = sluice.wait_audit(dns_record("other.test", "A")).unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["session"], id.as_str(), "{record}");
    assert!(
        record.get("answers").is_none(),
        "nothing was looked up: {record}"
    );
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("allow (no entry for other.test)"),
        "{record}"
    );

    // Only address queries are served: a TXT tunnel gets REFUSED, audited.
    let out = in_sandbox(&sluice, Some(&id), &dig("api.test", "TXT"));
    assert!(out.contains("status: REFUSED"), "{out}");
    let record = sluice.wait_audit(dns_record("api.test", "TXT")).unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("type TXT is not served"),
        "{record}"
    );
}

#[test]
fn distinct_names_per_minute_are_capped_and_odd_labels_flagged() {
    let lab = NetLab::new("dnsc").unwrap();
    let sluice = daemon(&lab, "[dns]\nmax_names_per_minute = 3\n");
    // No session: every name may resolve, so only the cap bounds what names can carry.
    let script = ["a1.test", "a2.test", "a1.test", "a3.test", "a4.test"]
        .map(|n| dig(n, "A"))
        .join("; ");
    let out = in_sandbox(&sluice, None, &script);
    let statuses: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("status: ").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["NOERROR", "NOERROR", "NOERROR", "NOERROR", "REFUSED"],
        "the fourth distinct name is over the cap of 3 (a repeat is free): {out}"
    );
    let record = sluice.wait_audit(dns_record("a4.test", "A")).unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("more than 3 distinct names"),
        "{record}"
    );
    assert!(sluice.metric("sluice_dns_names_over_budget_total") >= Some(1));

    // A fresh sandbox has its own budget; a payload-shaped label is flagged in the record.
    let long = format!("{}.exfil.test", "a3f9c2e17b4d8e6f0a1c".repeat(3));
    in_sandbox(&sluice, None, &dig(&long, "A"));
    let record = sluice.wait_audit(dns_record(&long, "A")).unwrap();
    let flags = record["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "long-label"), "{record}");
    assert!(flags.iter().any(|f| f == "high-entropy-label"), "{record}");
}

#[test]
fn a_query_on_the_shared_socket_from_an_unknown_sandbox_is_refused() {
    let lab = NetLab::new("dnsu").unwrap();
    let sluice = daemon(&lab, "");
    // The node's shared listener (dns_port 15053 on loopback); the sender is no sandbox the
    // daemon can identify.
    let out = sluice
        .node_command("dig")
        .args([
            "+tries=1",
            "+time=3",
            "-p",
            "15053",
            "@127.0.0.1",
            "api.test",
            "A",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(!out.contains("203.0.113.10"), "{out}");
    let record = sluice.wait_audit(dns_record("api.test", "A")).unwrap();
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("cannot identify the sandbox that asked"),
        "{record}"
    );
}

#[test]
fn dns_over_tcp_is_opaque_tcp_and_refused_without_a_rule() {
    let lab = NetLab::new("dnst").unwrap();
    let sluice = daemon(&lab, "");
    let out = in_sandbox(&sluice, None, &format!("{} +tcp", dig("api.test", "A")));
    assert!(!out.contains("203.0.113.10"), "no answer over TCP: {out}");
    let record = sluice
        .wait_audit(|r| r["kind"] == "connection" && r["destination"] == "203.0.113.53:53")
        .unwrap_or_else(|| panic!("no connection record: {:?}", sluice.audit()));
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("tcp_allow"),
        "{record}"
    );
}
