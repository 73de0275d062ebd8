use super::*;
use crate::audit::{Decision, Outcome as Ended};
use crate::config::PolicyConfig;
use crate::detect::{ClientHello, Http1Request, Malformed};
use crate::host::test_host;
use crate::policy::{HostRule, PolicySpec};
use crate::session::AuthError;

fn node() -> CompiledPolicy {
    PolicyConfig {
        passthrough: vec!["*.bank.test".into(), "pinned.test".into()],
        tcp_allow: vec!["203.0.113.0/24:5432".into(), "db.test:443".into()],
    }
    .compile()
    .unwrap()
}

fn session(edit: impl FnOnce(&mut PolicySpec)) -> CompiledPolicy {
    let mut spec = PolicySpec::default();
    edit(&mut spec);
    CompiledPolicy::compile(&spec)
        .unwrap()
        .layered_over(&node())
        .unwrap()
}

fn tls(sni: Option<&str>) -> Outcome {
    Outcome::Tls(ClientHello {
        server_name: sni.map(|s| Host::parse(s).unwrap()),
        alpn: Vec::new(),
        legacy_version: 0x0303,
        supported_versions: Vec::new(),
    })
}

fn http(host: Option<&str>) -> Outcome {
    Outcome::Http1(Http1Request {
        method: "GET".into(),
        target: "/".into(),
        host: host.map(|h| Host::from_authority(h).unwrap().0),
        port: host.and_then(|h| Host::from_authority(h).unwrap().1),
    })
}

fn intercept(h: &str) -> Route {
    Route::Intercept {
        host: Host::parse(h).unwrap(),
    }
}

fn pass(h: &str) -> Route {
    Route::Passthrough {
        host: Host::parse(h).unwrap(),
    }
}

/// The name of a case, what detection saw, where to, the policy, the names the destination
/// resolved under, whether the session is unusable, and the route (a `Session` reject is
/// matched by a piece of its text).
type Case<'a> = (
    &'a str,
    Outcome,
    SocketAddr,
    &'a CompiledPolicy,
    &'a [String],
    Option<&'a Unusable>,
    Route,
);

#[test]
fn route_table() {
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    let web = at("203.0.113.10:443");
    let db = at("203.0.113.10:5432");
    let elsewhere = at("198.51.100.10:5432");
    let node = node();
    let pinned = session(|p| p.passthrough = vec!["own.test".into()]);
    let allow_api = session(|p| p.allow = Some(vec!["api.test".into()]));
    let ruled = session(|p| {
        p.rules = vec![HostRule {
            host: "x.bank.test".into(),
            methods: vec!["GET".into()],
            paths: vec![],
        }]
    });
    let tcp = session(|p| p.tcp_allow = vec!["198.51.100.0/24:5432".into()]);
    let deny_db = session(|p| p.deny = vec!["203.0.113.10".into()]);
    let named = ["db.test".to_owned()];
    let reject = |r: RejectReason| Route::Reject(r);
    let session_says = |text: &str| reject(RejectReason::Session(text.into()));
    let revoked = Unusable::Auth(AuthError::Revoked("s1".into()));
    let outage = Unusable::Auth(AuthError::StoreUnavailable("timed out".into()));
    let cases: Vec<Case<'_>> = vec![
        (
            "sni intercepted",
            tls(Some("API.example.com.")),
            web,
            &node,
            &[],
            None,
            intercept("api.example.com"),
        ),
        (
            "node passthrough",
            tls(Some("www.bank.test")),
            web,
            &node,
            &[],
            None,
            pass("www.bank.test"),
        ),
        (
            "exact passthrough",
            tls(Some("pinned.test")),
            web,
            &node,
            &[],
            None,
            pass("pinned.test"),
        ),
        (
            "suffix itself intercepted",
            tls(Some("bank.test")),
            web,
            &node,
            &[],
            None,
            intercept("bank.test"),
        ),
        (
            "no sni",
            tls(None),
            web,
            &node,
            &[],
            None,
            reject(RejectReason::NoSni),
        ),
        (
            "http host",
            http(Some("Example.com:8080")),
            web,
            &node,
            &[],
            None,
            intercept("example.com"),
        ),
        (
            "http no host",
            http(None),
            web,
            &node,
            &[],
            None,
            reject(RejectReason::NoHost),
        ),
        (
            "opaque by range",
            Outcome::Opaque,
            db,
            &node,
            &[],
            None,
            Route::Relay,
        ),
        (
            "opaque elsewhere",
            Outcome::Opaque,
            web,
            &node,
            &[],
            None,
            reject(RejectReason::OpaqueNotAllowed(web)),
        ),
        (
            "silent by range",
            Outcome::Timeout,
            db,
            &node,
            &[],
            None,
            Route::Relay,
        ),
        (
            "silent elsewhere",
            Outcome::Timeout,
            elsewhere,
            &node,
            &[],
            None,
            reject(RejectReason::Silent(elsewhere)),
        ),
        (
            "opaque by resolved name",
            Outcome::Opaque,
            web,
            &node,
            &named,
            None,
            Route::Relay,
        ),
        (
            "silent by resolved name",
            Outcome::Timeout,
            web,
            &node,
            &named,
            None,
            Route::Relay,
        ),
        (
            "too large",
            Outcome::TooLarge,
            db,
            &node,
            &[],
            None,
            reject(RejectReason::TooLarge),
        ),
        (
            "malformed",
            Outcome::Malformed(Malformed::Tls("bad")),
            db,
            &node,
            &[],
            None,
            reject(RejectReason::Malformed(
                "downstream sent a malformed TLS ClientHello: bad".into(),
            )),
        ),
        (
            "closed",
            Outcome::Closed,
            db,
            &node,
            &[],
            None,
            reject(RejectReason::Closed),
        ),
        (
            "session passthrough",
            tls(Some("own.test")),
            web,
            &pinned,
            &[],
            None,
            pass("own.test"),
        ),
        (
            "session keeps node passthrough",
            tls(Some("a.bank.test")),
            web,
            &pinned,
            &[],
            None,
            pass("a.bank.test"),
        ),
        (
            "others still intercepted",
            tls(Some("api.test")),
            web,
            &pinned,
            &[],
            None,
            intercept("api.test"),
        ),
        (
            "node passthrough outside allow list",
            tls(Some("a.bank.test")),
            web,
            &allow_api,
            &[],
            None,
            session_says("session's policy"),
        ),
        (
            "rules cannot be checked on passthrough",
            tls(Some("x.bank.test")),
            web,
            &ruled,
            &[],
            None,
            session_says("session's policy"),
        ),
        (
            "session tcp_allow adds a range",
            Outcome::Opaque,
            elsewhere,
            &tcp,
            &[],
            None,
            Route::Relay,
        ),
        (
            "node tcp_allow kept",
            Outcome::Opaque,
            db,
            &tcp,
            &[],
            None,
            Route::Relay,
        ),
        (
            "session deny narrows node tcp_allow",
            Outcome::Opaque,
            db,
            &deny_db,
            &[],
            None,
            reject(RejectReason::OpaqueNotAllowed(db)),
        ),
        (
            "unusable session still intercepts",
            tls(Some("api.test")),
            web,
            &node,
            &[],
            Some(&revoked),
            intercept("api.test"),
        ),
        (
            "unusable session: no passthrough",
            tls(Some("pinned.test")),
            web,
            &node,
            &[],
            Some(&revoked),
            reject(RejectReason::Unusable(revoked.clone())),
        ),
        (
            "unusable session: no relay",
            Outcome::Opaque,
            db,
            &node,
            &[],
            Some(&revoked),
            reject(RejectReason::Unusable(revoked.clone())),
        ),
        (
            "store down: no relay",
            Outcome::Opaque,
            db,
            &node,
            &[],
            Some(&outage),
            reject(RejectReason::Unusable(outage.clone())),
        ),
    ];
    for (name, detected, dest, policy, names, unusable, want) in cases {
        let rules = RouteRules {
            policy,
            unusable,
            dest_names: &names.iter().map(|n| test_host(n)).collect::<Vec<_>>(),
        };
        let got = route(&detected, dest, &rules);
        match (&got, &want) {
            (
                Route::Reject(RejectReason::Session(text)),
                Route::Reject(RejectReason::Session(piece)),
            ) => assert!(text.contains(piece.as_str()), "{name}: {text}"),
            _ => assert_eq!(got, want, "{name}"),
        }
    }
}

/// A session store outage refuses (fail closed) and is recorded as the gateway's failure,
/// not a policy refusal; a revoked session is the policy's.
#[test]
fn store_outage_refusals_blame_the_gateway() {
    let policy = node();
    let dest: SocketAddr = "203.0.113.10:5432".parse().unwrap();
    let cases = [
        (
            Unusable::Auth(AuthError::StoreUnavailable("timed out".into())),
            Side::Gateway,
        ),
        (
            Unusable::Auth(AuthError::Revoked("s1".into())),
            Side::Policy,
        ),
    ];
    for (why, side) in cases {
        let rules = RouteRules {
            policy: &policy,
            unusable: Some(&why),
            dest_names: &[],
        };
        let Route::Reject(reason) = route(&tls(Some("pinned.test")), dest, &rules) else {
            panic!("{why}: not refused");
        };
        let ended = Ended::refused(&reason);
        assert_eq!(ended.decision, Decision::Deny, "{why}");
        assert_eq!(ended.side, Some(side), "{why}");
        assert!(
            ended
                .reason
                .as_deref()
                .unwrap_or_default()
                .starts_with(&format!("{side}: session")),
            "{ended:?}"
        );
    }
}

#[test]
fn passthrough_binding_table() {
    let pinned: Vec<IpAddr> = vec![
        "198.51.100.10".parse().unwrap(),
        "2001:db8:1::10".parse().unwrap(),
    ];
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    type Case<'a> = (
        SocketAddr,
        &'a [u16],
        Result<&'a [IpAddr], &'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (at("198.51.100.10:443"), &[443], Ok(pinned.as_slice()), None),
        (
            at("[::ffff:198.51.100.10]:443"),
            &[443],
            Ok(pinned.as_slice()),
            None,
        ),
        (
            at("[2001:db8:1::10]:443"),
            &[443],
            Ok(pinned.as_slice()),
            None,
        ),
        (
            at("198.51.100.10:8443"),
            &[443, 8443],
            Ok(pinned.as_slice()),
            None,
        ),
        (
            at("198.51.100.66:443"),
            &[443],
            Ok(pinned.as_slice()),
            Some(
                "198.51.100.66 is not an address of pinned.test (it resolves to 198.51.100.10, 2001:db8:1::10)",
            ),
        ),
        (
            at("198.51.100.10:8443"),
            &[443],
            Ok(pinned.as_slice()),
            Some("port 8443 is not allowed for pinned.test (allowed: 443); write pinned.test:8443"),
        ),
        (
            at("198.51.100.10:443"),
            &[443],
            Err("timed out"),
            Some("cannot resolve pinned.test to check the destination: timed out"),
        ),
        (
            at("198.51.100.10:443"),
            &[443],
            Ok(&[][..]),
            Some("(it resolves to no address)"),
        ),
    ];
    let host = Host::parse("pinned.test").unwrap();
    for (dest, ports, resolved, want) in cases {
        let got = passthrough_binding(&host, dest, ports, resolved);
        match (got, want) {
            (Ok(()), None) => {}
            (Err(reason), Some(want)) => {
                let text = reason.to_string();
                assert!(text.starts_with("passthrough: "), "{text}");
                assert!(text.contains(want), "{dest}: {text}");
            }
            (got, want) => unreachable!("{dest}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn passthrough_entries_table() {
    let compile = |entries: &[&str]| {
        PolicyConfig {
            passthrough: entries.iter().map(|s| (*s).to_owned()).collect(),
            tcp_allow: Vec::new(),
        }
        .compile()
    };
    let ok = compile(&["Pinned.Test:8443", "*.bank.test:993", "plain.test"]).unwrap();
    assert_eq!(
        ok.passthrough_ports(&crate::host::test_host("pinned.test")),
        vec![8443]
    );
    assert_eq!(
        ok.passthrough_ports(&crate::host::test_host("imap.bank.test")),
        vec![993]
    );
    assert_eq!(
        ok.passthrough_ports(&crate::host::test_host("plain.test")),
        vec![443]
    );
    for (bad, piece) in [
        ("pinned.test:0", "HOST:PORT"),
        ("pinned.test:99999", "HOST:PORT"),
        ("pinned.test:https", "HOST:PORT"),
        ("198.51.100.7", "not an address"),
        ("[2001:db8::1]:443", "HOST:PORT"),
        ("", "host"),
    ] {
        let err = compile(&[bad]).unwrap_err().to_string();
        assert!(
            err.starts_with("policy.passthrough[0]: ") && err.contains(piece),
            "{bad:?}: {err}"
        );
    }
}
