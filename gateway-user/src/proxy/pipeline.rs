//! After identification: detect the protocol, route, and carry the route out.
//!
//! Shared by every entry point that knows the sandbox and the destination (the transparent
//! listener today; the explicit proxy after `CONNECT`).

use std::net::SocketAddr;
use std::time::Duration;

use super::binding;
use super::relay::{self, RelayStream};
use super::{ProxyContext, ProxyRules, check_destination};
use crate::audit::{ConnAudit, Decision, Mode, Who};
use crate::detect::{self, Outcome, Prefixed};
use crate::gate::session_route;
use crate::intercept::{intercept_http, intercept_tls};
use crate::policy::{self, Verdict};
use crate::route::{self, Detected, RejectReason, Route};

/// How long a client may stay silent before a connection that `tcp_allow` permits anyway is
/// relayed as opaque TCP (the server may be the one to speak first).
const SILENT_RELAY_WAIT: Duration = Duration::from_millis(300);

/// Detects, routes (by `rules`, loaded when the connection was accepted) and serves one
/// connection to `dest`, filling in `audit`.
pub async fn serve<IO>(
    ctx: &ProxyContext,
    rules: &ProxyRules,
    mut client: IO,
    dest: SocketAddr,
    who: Who,
    audit: &mut ConnAudit,
) where
    IO: RelayStream,
{
    let session = match &ctx.gate {
        Some(gate) => gate.connection_policy(&who).await,
        None => Ok(None),
    };
    let session_policy = match &session {
        Ok(Some(policy)) => Some(policy.as_ref()),
        _ => None,
    };
    // Opaque TCP carries no name: a `tcp_allow` host entry matches when the destination is
    // one of the addresses the daemon's resolver returns for it.
    let node_candidates = route::tcp_host_candidates(&rules.route_policy, dest.port());
    let node_names = binding::names_resolving_to(&ctx.resolver, &node_candidates, dest.ip()).await;
    let session_candidates: Vec<String> = session_policy
        .map(|p| {
            p.tcp_allow_hosts(dest.port())
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let session_names =
        binding::names_resolving_to(&ctx.resolver, &session_candidates, dest.ip()).await;
    let decide = |detected: &Detected| {
        let node = route::route(detected, dest, &rules.route_policy, &node_names);
        match &session {
            Ok(None) => node,
            Ok(Some(policy)) => match session_route(node, detected, dest, policy) {
                Route::Reject(RejectReason::OpaqueNotAllowed(_) | RejectReason::Silent(_))
                    if session_names.iter().any(|name| {
                        matches!(
                            policy::evaluate_tcp(policy, Some(name), dest).verdict,
                            Verdict::Allow
                        )
                    }) =>
                {
                    Route::Relay
                }
                other => other,
            },
            // Intercepted connections answer the refusal per request, readably.
            Err(_) if matches!(node, Route::Intercept { .. }) => node,
            Err(why) => Route::Reject(RejectReason::Session(why.clone())),
        }
    };
    let mut limits = ctx.detect_limits;
    if matches!(decide(&Detected::Timeout), Route::Relay) {
        // Silence is allowed here (`tcp_allow`): a server-speaks-first protocol (SMTP,
        // MySQL, SSH banners) must not wait out the whole deadline before it is relayed.
        limits.deadline = limits.deadline.min(SILENT_RELAY_WAIT);
    }
    let mut detection = detect::detect(&mut client, limits).await;
    let chosen = decide(&summarize(&detection.outcome));
    let client = detection.replay(client);
    match chosen {
        Route::Passthrough { host } => {
            audit.set_host(host.clone());
            let bound = binding::check_passthrough(
                &ctx.resolver,
                &rules.route_policy,
                session_policy,
                &host,
                dest,
            )
            .await;
            if let Err(reason) = bound {
                audit.set_mode(Mode::Refused);
                return audit.finish(Decision::Deny, Some(format!("policy: {reason}")));
            }
            audit.set_mode(Mode::Passthrough);
            relay_to(ctx, rules, client, dest, audit).await;
        }
        Route::Relay => {
            audit.set_mode(Mode::Relay);
            relay_to(ctx, rules, client, dest, audit).await;
        }
        Route::Intercept { host } => {
            audit.set_mode(Mode::Intercept);
            audit.set_host(host.clone());
            let served = match &detection.outcome {
                Outcome::Tls(hello) => {
                    intercept_tls(
                        client,
                        &host,
                        &hello.alpn,
                        dest,
                        Some(who),
                        ctx.intercept.clone(),
                    )
                    .await
                }
                _ => intercept_http(client, dest, Some(who), ctx.intercept.clone()).await,
            };
            match served {
                Ok(summary) => {
                    audit.add_bytes(summary.bytes_up, summary.bytes_down);
                    match summary.error {
                        None => audit.finish(Decision::Allow, None),
                        Some(e) => audit.finish(Decision::Error, Some(e)),
                    }
                }
                Err(e) => audit.finish(Decision::Error, Some(e.to_string())),
            }
        }
        Route::Reject(reason) => {
            audit.set_mode(Mode::Refused);
            audit.finish(Decision::Deny, Some(format!("policy: {reason}")));
        }
    }
}

/// What the router needs to know of a detection outcome.
pub fn summarize(outcome: &Outcome) -> Detected {
    match outcome {
        Outcome::Tls(hello) => Detected::Tls {
            sni: hello.server_name.clone(),
        },
        Outcome::Http1(req) => Detected::Http {
            host: req.host.clone(),
        },
        Outcome::Opaque => Detected::Opaque,
        Outcome::Timeout => Detected::Timeout,
        Outcome::TooLarge => Detected::TooLarge,
        Outcome::Malformed(why) => Detected::Malformed(why.to_string()),
        Outcome::Closed => Detected::Closed,
        Outcome::ReadFailed(kind) => {
            Detected::Malformed(format!("downstream: read failed: {kind}"))
        }
    }
}

/// Dials `dest` (checked again here: it is the address dialled) and relays.
async fn relay_to<IO: RelayStream>(
    ctx: &ProxyContext,
    rules: &ProxyRules,
    client: Prefixed<IO>,
    dest: SocketAddr,
    audit: &mut ConnAudit,
) {
    if let Err(refusal) = check_destination(dest, &rules.allow_internal) {
        audit.set_mode(Mode::Refused);
        return audit.finish(Decision::Deny, Some(refusal.to_string()));
    }
    let upstream = match relay::dial(dest, ctx.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => return audit.finish(Decision::Error, Some(e.to_string())),
    };
    match relay::relay(client, upstream).await {
        Ok((up, down)) => {
            audit.add_bytes(up, down);
            audit.finish(Decision::Allow, None);
        }
        Err(relay::RelayError::Copy { up, down, detail }) => {
            audit.add_bytes(up, down);
            audit.finish(Decision::Error, Some(format!("relay: {detail}")));
        }
        Err(e) => audit.finish(Decision::Error, Some(e.to_string())),
    }
}
