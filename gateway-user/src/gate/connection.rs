//! How a session's policy changes a connection's route, before any request is seen: its
//! passthrough list, its allow/deny lists for passed-through hosts, and its `tcp_allow`
//! rules for opaque TCP. Requests on intercepted connections are checked one by one later.

use std::net::SocketAddr;

use crate::policy::{self, CompiledPolicy, Decision, Verdict};
use crate::route::{Detected, RejectReason, Route};

/// The route for a connection of a session with `policy`, given the node's route.
///
/// # Security
/// A session only narrows what the node allows, except that its own `passthrough` and
/// `tcp_allow` entries add to the node's; a passed-through host still has to pass the
/// session's deny and allow lists.
pub fn session_route(
    node: Route,
    detected: &Detected,
    dest: SocketAddr,
    policy: &CompiledPolicy,
) -> Route {
    match node {
        Route::Intercept { host } if policy.is_passthrough(&host) => passthrough(host, policy),
        Route::Passthrough { host } => passthrough(host, policy),
        Route::Reject(RejectReason::OpaqueNotAllowed(_) | RejectReason::Silent(_))
            if allowed(&policy::evaluate_tcp(policy, sni(detected), dest)) =>
        {
            Route::Relay
        }
        other => other,
    }
}

fn passthrough(host: String, policy: &CompiledPolicy) -> Route {
    let decision = policy::evaluate_host(policy, &host);
    match decision.verdict {
        Verdict::Refuse(refusal) if decision.enforced => {
            Route::Reject(RejectReason::Session(format!(
                "refused by the session's policy: {}: {}",
                refusal.rule, refusal.reason
            )))
        }
        _ => Route::Passthrough { host },
    }
}

fn allowed(decision: &Decision) -> bool {
    matches!(decision.verdict, Verdict::Allow)
}

fn sni(detected: &Detected) -> Option<&str> {
    match detected {
        Detected::Tls { sni } => sni.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{HostRule, PolicySpec};

    fn policy(edit: impl FnOnce(&mut PolicySpec)) -> CompiledPolicy {
        let mut spec = PolicySpec::default();
        edit(&mut spec);
        CompiledPolicy::compile(&spec).unwrap()
    }

    #[test]
    fn session_routes_table() {
        let dest: SocketAddr = "203.0.113.10:443".parse().unwrap();
        let tls = |sni: &str| Detected::Tls {
            sni: Some(sni.to_owned()),
        };
        let intercept = |h: &str| Route::Intercept { host: h.into() };
        let pass = |h: &str| Route::Passthrough { host: h.into() };
        let opaque = Route::Reject(RejectReason::OpaqueNotAllowed(dest));
        let pinned = policy(|p| p.passthrough = vec!["pinned.test".into()]);
        let allow_api = policy(|p| p.allow = Some(vec!["api.test".into()]));
        let ruled = policy(|p| {
            p.rules = vec![HostRule {
                host: "api.test".into(),
                methods: vec!["GET".into()],
                paths: vec![],
            }]
        });
        let tcp = policy(|p| p.tcp_allow = vec!["203.0.113.0/24:443".into()]);
        let cases: Vec<(&str, Route, Detected, &CompiledPolicy, Route)> = vec![
            (
                "session passthrough",
                intercept("pinned.test"),
                tls("pinned.test"),
                &pinned,
                pass("pinned.test"),
            ),
            (
                "others still intercepted",
                intercept("api.test"),
                tls("api.test"),
                &pinned,
                intercept("api.test"),
            ),
            (
                "node passthrough allowed",
                pass("api.test"),
                tls("api.test"),
                &allow_api,
                pass("api.test"),
            ),
            (
                "node passthrough outside allow list",
                pass("x.test"),
                tls("x.test"),
                &allow_api,
                Route::Reject(RejectReason::Session(String::new())),
            ),
            (
                "rules cannot be checked on passthrough",
                pass("api.test"),
                tls("api.test"),
                &ruled,
                Route::Reject(RejectReason::Session(String::new())),
            ),
            (
                "session tcp_allow relays opaque",
                opaque.clone(),
                Detected::Opaque,
                &tcp,
                Route::Relay,
            ),
            (
                "no tcp rule: still refused",
                opaque.clone(),
                Detected::Opaque,
                &pinned,
                opaque.clone(),
            ),
        ];
        for (name, node, detected, policy, want) in cases {
            let got = session_route(node, &detected, dest, policy);
            match (&got, &want) {
                (
                    Route::Reject(RejectReason::Session(text)),
                    Route::Reject(RejectReason::Session(_)),
                ) => {
                    assert!(text.contains("session's policy"), "{name}: {text}");
                }
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }
}
