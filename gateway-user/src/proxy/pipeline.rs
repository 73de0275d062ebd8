//! After identification: detect the protocol, route, and carry the route out.
//!
//! Shared by every entry point that knows the sandbox and the destination (the transparent
//! listener; the explicit proxy after `CONNECT`). The [`Conn`] carries the connection's
//! facts and its audit record through every stage.

use std::time::Duration;

use super::ProxyContext;
use super::binding;
use super::relay::{self, RelayStream};
use crate::audit::{Mode, Outcome as Ended, Said, Side, Sided};
use crate::conn::Conn;
use crate::detect::{self, Detection, Outcome, Prefixed};
use crate::host::Host;
use crate::intercept::{InterceptError, intercept_http, intercept_tls, reject_tls};
use crate::route::{self, Route, RouteRules};

/// How long a client may stay silent before a connection that `tcp_allow` permits anyway is
/// relayed as opaque TCP (the server may be the one to speak first).
const SILENT_RELAY_WAIT: Duration = Duration::from_millis(300);

/// Layers the session over the connection's rules, detects, routes and serves `client`,
/// finishing `conn`'s audit record.
///
/// Each stage is boxed: a spawned task is allocated at the size of its future's largest
/// state, so unboxed, every connection (an idle intercepted one too) would hold room for the
/// biggest of the session lookup, name resolution, detection, relaying, refusing and
/// intercepting, nested several times.
pub async fn serve<IO>(ctx: &ProxyContext, conn: &mut Conn, mut client: IO)
where
    IO: RelayStream,
{
    let (mut detection, chosen) = Box::pin(decide(ctx, conn, &mut client)).await;
    let client = detection.replay(client);
    match chosen {
        Route::Passthrough { host } => {
            conn.audit.set_host(host.to_string());
            let bound = Box::pin(binding::check_passthrough(
                &ctx.resolver,
                &conn.policy,
                &host,
                conn.dest,
            ))
            .await;
            if let Err(reason) = bound {
                return Box::pin(refuse(ctx, conn, client, &detection.outcome, &reason)).await;
            }
            conn.audit.set_mode(Mode::Passthrough);
            Box::pin(relay_to(ctx, conn, Some(&host), client)).await;
        }
        Route::Relay => {
            conn.audit.set_mode(Mode::Relay);
            Box::pin(relay_to(ctx, conn, None, client)).await;
        }
        Route::Intercept { host } => {
            conn.audit.set_mode(Mode::Intercept);
            conn.audit.set_host(host.to_string());
            let engine = ctx.intercept.clone();
            let served = match &detection.outcome {
                Outcome::Tls(hello) => {
                    Box::pin(intercept_tls(
                        client,
                        conn.peer(),
                        &host,
                        &hello.alpn,
                        engine,
                    ))
                    .await
                }
                _ => Box::pin(intercept_http(client, conn.peer(), engine)).await,
            };
            let ended = match served {
                Ok(summary) => {
                    conn.audit.add_bytes(summary.bytes_up, summary.bytes_down);
                    match summary.error {
                        None => Ended::allowed(),
                        Some(text) => Ended::failed(&Said {
                            side: Side::Downstream,
                            text,
                        }),
                    }
                }
                Err(e) => {
                    if let InterceptError::TrustRefused { alert, .. } = &e {
                        let session = conn.who.session.as_deref();
                        let executable = conn.who.executable.as_deref();
                        ctx.trust_failures.count(session, executable, host.as_str());
                        conn.audit.set_trust_refused(alert);
                    }
                    Ended::failed(&e)
                }
            };
            conn.audit.end(ended);
        }
        Route::Reject(reason) => {
            Box::pin(refuse(ctx, conn, client, &detection.outcome, &reason)).await;
        }
    }
}

/// Layers the session over the connection's rules, reads the first bytes and picks the
/// route. Everything read is in the returned detection, to be replayed.
async fn decide<IO>(ctx: &ProxyContext, conn: &mut Conn, client: &mut IO) -> (Detection, Route)
where
    IO: RelayStream,
{
    let session = ctx
        .intercept
        .policy
        .connection(&conn.who, &conn.live.policy)
        .await;
    conn.with_session(session);
    conn.egress = super::egress_of(ctx, &conn.who, conn.sandbox_proxy.as_deref()).await;
    // Opaque TCP carries no name: a `tcp_allow` host entry matches when the destination is
    // one of the addresses the daemon's resolver returns for it.
    let dest_names = binding::names_resolving_to(&ctx.resolver, &conn.policy, conn.dest).await;
    let rules = RouteRules {
        policy: &conn.policy,
        unusable: conn.unusable.as_ref(),
        dest_names: &dest_names,
    };
    let mut limits = ctx.detect_limits;
    if route::relays(conn.dest, &rules) {
        // Silence is allowed here (`tcp_allow`): a server-speaks-first protocol (SMTP,
        // MySQL, SSH banners) must not wait out the whole deadline before it is relayed.
        limits.deadline = limits.deadline.min(SILENT_RELAY_WAIT);
    }
    let detection = detect::detect(client, limits).await;
    let chosen = route::route(&detection.outcome, conn.dest, &rules);
    (detection, chosen)
}

/// Refuses the connection for `reason`: a TLS client that named a host is answered
/// readably (a leaf minted for that host, then 403 with the reason); others are closed.
///
/// # Security
/// Nothing reaches an upstream; the record is a denial whether or not the answer got
/// through.
async fn refuse<IO: RelayStream>(
    ctx: &ProxyContext,
    conn: &mut Conn,
    client: Prefixed<IO>,
    outcome: &Outcome,
    reason: &(dyn Sided + Sync),
) {
    conn.audit.set_mode(Mode::Refused);
    let ended = Ended::refused(reason);
    let text = ended.reason.clone().unwrap_or_default();
    conn.audit.end(ended);
    let Outcome::Tls(hello) = outcome else {
        return;
    };
    let Some(host) = &hello.server_name else {
        return;
    };
    if let Err(error) = reject_tls(client, host, &hello.alpn, &text, ctx.intercept.clone()).await {
        tracing::debug!(%error, "refusal not delivered");
    }
}

/// Dials the connection's destination (checked again by the dialer) along its egress, and
/// relays. `name` is the host the client named (SNI), when it named one.
async fn relay_to<IO: RelayStream>(
    ctx: &ProxyContext,
    conn: &mut Conn,
    name: Option<&Host>,
    client: Prefixed<IO>,
) {
    let upstream = match ctx.dialer.dial(conn.dest, name, &conn.egress).await {
        Ok(dialed) => {
            if let Some(proxy) = &dialed.via {
                conn.audit.set_proxy(proxy.label.clone());
            }
            dialed.stream
        }
        Err(e) if e.is_refusal() => {
            conn.audit.set_mode(Mode::Refused);
            return conn.audit.end(Ended::refused(&e));
        }
        Err(e) => {
            if let Some(label) = e.proxy_label() {
                conn.audit.set_proxy(label);
            }
            return conn.audit.end(Ended::failed(&e));
        }
    };
    match relay::relay(client, upstream).await {
        Ok((up, down)) => {
            conn.audit.add_bytes(up, down);
            conn.audit.end(Ended::allowed());
        }
        Err(e) => {
            conn.audit.add_bytes(e.up, e.down);
            conn.audit.end(Ended::failed(&e));
        }
    }
}
