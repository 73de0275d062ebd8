//! HTTP/1.1 WebSocket upgrades: forward the upgrade request over an HTTP/1.1-only upstream
//! connection; on 101 both sides switch protocols and bytes are copied both ways, or, when
//! the request has a response filter, messages are relayed and scrubbed (see [`relay`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::{BoxBody, Counted, RequestAudit};
use super::checks;
use super::hook::ResponseFilter;
use super::relay::{self, Tunnel};
use super::respond::{fail, respond};
use super::state::ConnState;
use crate::audit::Outcome;
use crate::upstream::Offer;

/// Forwards a checked upgrade request; the tunnel runs on a task the connection owns (it
/// awaits it, or aborts it when dropped), and the request's record is written when it
/// closes.
///
/// # Security
/// With a response filter, no extension is offered upstream (compressed messages could not
/// be scrubbed), a 101 naming one anyway is answered 502, and the tunnel is a relay that
/// scrubs every message from the upstream.
pub(super) async fn forward(
    mut request: Request<Incoming>,
    state: &ConnState,
    mut audit: RequestAudit,
    filter: Option<Box<dyn ResponseFilter>>,
) -> Response<BoxBody> {
    if filter.is_some() {
        request.headers_mut().remove(SEC_WEBSOCKET_EXTENSIONS);
    }
    let downstream = hyper::upgrade::on(&mut request);
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Counted::boxed(body, audit.up()));
    let mut upstream = match state
        .ctx
        .upstream
        .send(state.peer.dest, &state.peer.egress, request, Offer::Upgrade)
        .await
    {
        Ok(upstream) => upstream,
        Err(error) => return fail(audit, error.status(), &error),
    };
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return respond(upstream, state, audit, filter).await;
    }
    let mut tunnel = match relay::tunnel(filter, upstream.headers()) {
        Ok(tunnel) => tunnel,
        // Dropping the upstream response closes its connection.
        Err(error) => return fail(audit, StatusCode::BAD_GATEWAY, &error),
    };
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let (mut parts, _) = upstream.into_parts();
    checks::strip_response_hop_by_hop(&mut parts.headers, true);
    if let Tunnel::Relay(filter) = &mut tunnel {
        filter.headers(&mut parts.headers);
    }
    audit.record_mut().protocol = Some("http/1.1>websocket".to_owned());
    audit.decide(Outcome::allowed(), StatusCode::SWITCHING_PROTOCOLS.as_u16());
    let (up, down) = (audit.up(), audit.down());
    state.spawn_upgrade(async move {
        let mut audit = audit;
        let (client, server) = match tokio::join!(downstream, upstream_upgrade) {
            (Ok(client), Ok(server)) => (client, server),
            (client, _) => {
                let side = if client.is_err() {
                    "sandbox"
                } else {
                    "upstream"
                };
                audit.set_reason(format!("{side} did not complete the WebSocket upgrade"));
                return;
            }
        };
        let mut client = Counting::new(TokioIo::new(client), up);
        let mut server = Counting::new(TokioIo::new(server), down);
        match tunnel {
            Tunnel::Relay(filter) => {
                if let Err(error) = relay::relay(client, server, filter).await {
                    audit.set_reason(format!("WebSocket relay ended: {error}"));
                }
            }
            Tunnel::Copy => copy(&mut client, &mut server, &mut audit).await,
        }
    });
    let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
    Response::from_parts(parts, body)
}

/// Copies bytes both ways until both sides are done (no filter: the fast path).
async fn copy<C, S>(client: &mut C, server: &mut S, audit: &mut RequestAudit)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(client, server).await {
        Ok(_) => {}
        // Peers often close without a TLS close_notify once the WebSocket is closed.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(error) => audit.set_reason(format!("WebSocket tunnel ended: {error}")),
    }
}

/// Counts the bytes read from `io` (so totals survive a tunnel that ends in an error).
struct Counting<T> {
    io: T,
    read: Arc<AtomicU64>,
}

impl<T> Counting<T> {
    fn new(io: T, read: Arc<AtomicU64>) -> Self {
        Counting { io, read }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        this.read.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

crate::io::write_through!(Counting, io);
