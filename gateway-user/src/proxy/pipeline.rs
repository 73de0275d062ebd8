//! After identification: detect the protocol, route, and carry the route out.
//!
//! Shared by every entry point that knows the sandbox and the destination (the transparent
//! listener today; the explicit proxy after `CONNECT`).

use std::net::SocketAddr;

use super::ProxyContext;
use super::relay::{self, RelayStream};
use crate::audit::{ConnAudit, Decision, Mode, Who};
use crate::detect::{self, Outcome, Prefixed};
use crate::gate::session_route;
use crate::intercept::{intercept_http, intercept_tls};
use crate::route::{self, Detected, RejectReason, Route};

/// Detects, routes and serves one connection to `dest`, filling in `audit`.
pub async fn serve<IO>(
    ctx: &ProxyContext,
    mut client: IO,
    dest: SocketAddr,
    who: Who,
    audit: &mut ConnAudit,
) where
    IO: RelayStream,
{
    let mut detection = detect::detect(&mut client, ctx.detect_limits).await;
    let detected = summarize(&detection.outcome);
    let mut chosen = route::route(&detected, dest, &ctx.route_policy);
    if let Some(gate) = &ctx.gate {
        chosen = match gate.connection_policy(&who).await {
            Ok(None) => chosen,
            Ok(Some(policy)) => session_route(chosen, &detected, dest, &policy),
            // Intercepted connections answer the refusal per request, readably.
            Err(_) if matches!(chosen, Route::Intercept { .. }) => chosen,
            Err(why) => Route::Reject(RejectReason::Session(why)),
        };
    }
    let client = detection.replay(client);
    match chosen {
        Route::Passthrough { host } => {
            audit.set_mode(Mode::Passthrough);
            audit.set_host(host);
            relay_to(ctx, client, dest, audit).await;
        }
        Route::Relay => {
            audit.set_mode(Mode::Relay);
            relay_to(ctx, client, dest, audit).await;
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

async fn relay_to<IO: RelayStream>(
    ctx: &ProxyContext,
    client: Prefixed<IO>,
    dest: SocketAddr,
    audit: &mut ConnAudit,
) {
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
