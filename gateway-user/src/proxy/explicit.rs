//! The explicit proxy (`HTTPS_PROXY`, port 3128): for hosts without eBPF capture.
//!
//! Identity comes from the session token in `Proxy-Authorization` (Basic, user `sluice`,
//! password = token). `CONNECT host:port` tunnels go through the same detection, routing and
//! interception as captured connections; absolute-form `http://` requests go through the same
//! per-request pipeline.
//!
//! # Security
//! Weaker than capture: a process can ignore the proxy variables. Every request without a
//! valid token is refused (407) and audited; the token is never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use tracing::Instrument;

use super::{ProxyContext, listener, pipeline};
use crate::audit::{ConnAudit, Kind, Mode, Outcome, Record, Said, Side, Who};
use crate::conn::{Conn, ConnId};
use crate::detect::Prefixed;
use crate::dns::{DnsError, Resolver};
use crate::drain::Drain;
use crate::host::Host;
use crate::intercept::forward_absolute;
use crate::session::{AuthError, SessionCache};
use crate::upstream::{Body, check_destination};

/// What the explicit proxy needs besides the shared proxy context.
#[derive(Debug)]
pub struct ExplicitProxy {
    /// Shared with the transparent listener (its live rules hold the configuration's
    /// sessions).
    pub ctx: Arc<ProxyContext>,
    /// Sessions from the store (node-local cache).
    pub cache: Arc<SessionCache>,
    /// Resolves `CONNECT` and URL host names (the daemon's own resolver).
    pub resolver: Resolver,
}

/// Serves the explicit proxy on `listener` until `drain` stops; `CONNECT` tunnels are
/// tracked by `drain` too.
pub async fn serve_explicit(listener: TcpListener, proxy: Arc<ExplicitProxy>, drain: Drain) {
    let limit = proxy.ctx.max_connections;
    let tunnels = drain.clone();
    let workers = proxy.ctx.workers.clone();
    listener::serve_on(listener, "explicit proxy", limit, drain, workers, move |stream, _| {
        let proxy = proxy.clone();
        let tunnels = tunnels.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let (proxy, tunnels) = (proxy.clone(), tunnels.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(proxy, tunnels, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
    })
    .await;
}

/// Why a proxy client is not let in.
#[derive(Debug, thiserror::Error)]
enum Unauthenticated {
    /// No `Proxy-Authorization: Basic sluice:<token>`.
    #[error("no session token")]
    NoToken,
    /// The token names no usable session.
    #[error(transparent)]
    Session(#[from] AuthError),
}

/// The session id behind a proxy token: configured sessions first, then the store.
async fn authenticate(
    proxy: &ExplicitProxy,
    token: Option<String>,
) -> Result<String, Unauthenticated> {
    let token = token.ok_or(Unauthenticated::NoToken)?;
    let configured = proxy.ctx.live.load().sessions.authenticate(&token);
    if let Some(session) = configured {
        return Ok(session.id.clone());
    }
    Ok(proxy.cache.authenticate(&token).await?.id.clone())
}

async fn handle(
    proxy: Arc<ExplicitProxy>,
    tunnels: Drain,
    req: Request<Incoming>,
) -> Response<Body> {
    let authorization = req
        .headers()
        .get(header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let session = authenticate(&proxy, token(authorization)).await;
    let session = match session {
        Ok(id) => id,
        Err(reason) => {
            let message = format!(
                "sluice: {reason}; send the session token as Proxy-Authorization Basic \
                 (user `sluice`, password = token)\n"
            );
            let said = Said {
                side: Side::Policy,
                text: format!("proxy: {reason}"),
            };
            let mut reply = answer_early(
                &proxy,
                &req,
                None,
                Outcome::refused(&said),
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                &message,
            );
            reply.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"sluice\""),
            );
            return reply;
        }
    };
    let who = Who {
        session: Some(session),
        ..Who::default()
    };
    // A request that cannot be given a destination is answered, and recorded, here.
    let early = |side: Side, status: StatusCode, message: String| {
        let said = Said {
            side,
            text: message.clone(),
        };
        let body = format!("sluice: {message}\n");
        answer_early(
            &proxy,
            &req,
            Some(&who),
            Outcome::failed(&said),
            status,
            &body,
        )
    };
    let Some(authority) = req.uri().authority().cloned() else {
        return early(
            Side::Downstream,
            StatusCode::BAD_REQUEST,
            "expected CONNECT host:port or an absolute http:// URL".to_owned(),
        );
    };
    let is_connect = req.method() == Method::CONNECT;
    let default_port = if is_connect { None } else { Some(80) };
    let Some(port) = authority.port_u16().or(default_port) else {
        return early(
            Side::Downstream,
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port".to_owned(),
        );
    };
    let host = match Host::parse(authority.host()) {
        Ok(host) => host,
        Err(e) => return early(Side::Downstream, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let dest = match resolve(&proxy.resolver, &host, port).await {
        Ok(dest) => dest,
        Err(e) => {
            return early(
                Side::Gateway,
                StatusCode::BAD_GATEWAY,
                format!("gateway: resolve {host}: {e}"),
            );
        }
    };
    // A CONNECT tunnel, and each absolute-form request, is a connection of its own to its
    // destination (one proxy connection may carry requests to several), with its own id
    // and record.
    let mut conn = Conn::start(&proxy.ctx.audit, who, dest, proxy.ctx.live.load_full());
    conn.audit.set_host(host.to_string());
    if let Err(refusal) = check_destination(dest, &conn.live.allow_internal) {
        conn.audit.set_mode(Mode::Refused);
        conn.audit.end(Outcome::refused(&refusal));
        return text(StatusCode::FORBIDDEN, &format!("sluice: {refusal}\n"));
    }
    if !is_connect {
        conn.egress = super::egress_of(&proxy.ctx, &conn.who, None).await;
        conn.audit.set_mode(Mode::Intercept);
        // The record is written when the response (and a WebSocket it opened) is over.
        let (response, upgrades) = forward_absolute(req, conn, proxy.ctx.intercept.clone()).await;
        if !upgrades.is_empty() {
            // A WebSocket opened by this request outlives the proxy connection's HTTP
            // server: the drain awaits it, and aborts it with everything else.
            let busy = crate::workers::hold();
            listener::spawn_until_aborted(&tunnels, async move {
                let _busy = busy;
                upgrades.finish().await;
            });
        }
        return response;
    }
    let ctx = proxy.ctx.clone();
    let span = conn.span.clone();
    // The tunnel outlives this request's HTTP connection task: it counts on its worker.
    let busy = crate::workers::hold();
    listener::spawn_until_aborted(
        &tunnels,
        async move {
            let _busy = busy;
            match hyper::upgrade::on(req).await {
                // The plain TCP socket underneath, when hyper gives it back, lets a
                // passthrough tunnel be spliced; bytes hyper already read are replayed first.
                Ok(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
                    Ok(parts) => {
                        let io = Prefixed::new(parts.read_buf, parts.io.into_inner());
                        pipeline::serve(&ctx, &mut conn, io).await;
                    }
                    Err(upgraded) => {
                        pipeline::serve(&ctx, &mut conn, TokioIo::new(upgraded)).await;
                    }
                },
                Err(e) => conn.audit.end(Outcome::failed(&Said {
                    side: Side::Downstream,
                    text: format!("CONNECT upgrade failed: {e}"),
                })),
            }
        }
        .instrument(span),
    );
    Response::new(empty())
}

/// The token from `Basic base64(sluice:TOKEN)`.
/// Answers a request that never got a destination (no valid token, no usable target, a name
/// that does not resolve) with `status` and `body`, and writes its connection record: an id
/// of its own, what it asked for, `outcome`.
fn answer_early(
    proxy: &ExplicitProxy,
    req: &Request<Incoming>,
    who: Option<&Who>,
    outcome: Outcome,
    status: StatusCode,
    body: &str,
) -> Response<Body> {
    let mut record = Record::new(Kind::Connection);
    record.conn = Some(ConnId::next().to_string());
    record.mode = Some(Mode::Refused);
    record.who = who.cloned();
    record.host = req.uri().authority().map(ToString::to_string);
    ConnAudit::start(&proxy.ctx.audit, record).end(outcome);
    text(status, body)
}

fn token(header: Option<&str>) -> Option<String> {
    let encoded = header?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == "sluice" && !password.is_empty()).then(|| password.to_owned())
}

async fn resolve(resolver: &Resolver, host: &Host, port: u16) -> Result<SocketAddr, DnsError> {
    if let Some(ip) = host.ip() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs = resolver.lookup(host.as_str()).await?;
    addrs
        .first()
        .map(|ip| SocketAddr::new(*ip, port))
        .ok_or(DnsError::NotFound)
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(message.to_owned()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut reply = Response::new(body);
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table() {
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let cases = [
            (Some(basic("sluice:sluice_stk_abc")), Some("sluice_stk_abc")),
            (Some(basic("other:sluice_stk_abc")), None),
            (Some(basic("sluice:")), None),
            (Some("Bearer sluice_stk_abc".to_owned()), None),
            (Some("Basic !!!".to_owned()), None),
            (None, None),
        ];
        for (header, want) in cases {
            assert_eq!(token(header.as_deref()).as_deref(), want, "{header:?}");
        }
    }
}
