//! Connection entry points: TLS accept with a minted leaf, then an HTTP/1.1 or HTTP/2
//! server (hyper) running the per-request pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use super::body::ConnEnd;
use super::framing::Sniffer;
use super::state::{ConnState, Upgrades};
use super::{ConnSummary, InterceptContext, InterceptError, forward, park, response};
use crate::conn::{Conn, Peer};
use crate::host::Host;
use crate::tls::LeafHost;

/// Limit on the sandbox's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit on receiving a complete HTTP/1 request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams one sandbox may have open at once on an HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// How long a rejected connection may stay open to read its answer.
const REJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS from the sandbox with a leaf minted for `host` (ALPN mirrored from
/// `client_alpn`), then serves HTTP/1.1 or HTTP/2 (by ALPN), forwarding every request to
/// the peer's destination over verified TLS for the request's host. `io` must replay the
/// peeked ClientHello.
///
/// Returns once the sandbox closes the connection (and any WebSocket on it has ended).
///
/// # Security
/// Each request's Host must name `host` (421 otherwise), so a connection opened for one
/// host cannot be used to reach another.
pub async fn intercept_tls<IO>(
    io: IO,
    peer: Peer,
    host: &Host,
    client_alpn: &[Vec<u8>],
    ctx: Arc<InterceptContext>,
) -> Result<ConnSummary, InterceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: the handshake's state (the leaf's mint, the handshake timer) is over once the
    // connection is served, and unboxed it would size the connection for its whole life.
    // The stream it returns is boxed too: moved from one async fn to the next, a TLS stream
    // by value (over a kilobyte) keeps a copy in each one's state.
    let (tls, _) = Box::pin(accept(io, host, client_alpn, &ctx)).await?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let state = ConnState::new(ctx, peer, Some(host.clone()), h2);
    Ok(serve(tls, state).await)
}

/// Serves plain HTTP/1 from the sandbox on any port, forwarding every request to the
/// peer's destination (scheme `http`). Returns once the sandbox closes the connection.
pub async fn intercept_http<IO>(
    io: IO,
    peer: Peer,
    ctx: Arc<InterceptContext>,
) -> Result<ConnSummary, InterceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ConnState::new(ctx, peer, None, false);
    Ok(serve(io, state).await)
}

/// Refuses an intercepted TLS connection readably: handshakes with a leaf minted for
/// `host`, answers the request(s) with 403 and `reason` in the body, then closes.
///
/// # Security
/// Nothing is forwarded. The connection is closed after the first answer, or after 10 s.
pub async fn reject_tls<IO>(
    io: IO,
    host: &Host,
    client_alpn: &[Vec<u8>],
    reason: &str,
    ctx: Arc<InterceptContext>,
) -> Result<(), InterceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tls, _) = accept(io, host, client_alpn, &ctx).await?;
    let answered = Arc::new(tokio::sync::Notify::new());
    let message = Arc::new(format!("refused: {reason}"));
    let service = service_fn({
        let answered = answered.clone();
        move |_request| {
            answered.notify_one();
            let response = response::text(http::StatusCode::FORBIDDEN, &message);
            async move { Ok::<_, Infallible>(response) }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false).timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    let served = tokio::time::timeout(REJECT_TIMEOUT, async move {
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => result,
            () = answered.notified() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    })
    .await;
    match served {
        Ok(Err(error)) => Err(InterceptError::Http(error.to_string())),
        _ => Ok(()),
    }
}

/// One absolute-form request received by the explicit proxy (`GET http://host/…`): the same
/// checks, policy, upstream forwarding and audit record as a request on an intercepted
/// plain-HTTP connection to the peer's destination. Returns the response, and the
/// WebSocket tunnel the request opened, if any, for the caller to await under its drain
/// (dropping it aborts the tunnel).
///
/// The request is a connection of its own: `conn`'s record is written when its response
/// body is over, or, for a WebSocket, when the tunnel is.
pub async fn forward_absolute(
    request: hyper::Request<hyper::body::Incoming>,
    conn: Conn,
    ctx: Arc<InterceptContext>,
) -> (hyper::Response<crate::upstream::Body>, Upgrades) {
    let state = ConnState::new(ctx, conn.peer(), None, false);
    let span = conn.span.clone();
    let response = forward::handle(request, state.clone())
        .instrument(span)
        .await;
    let mut upgrades = state.take_upgrades();
    let end = ConnEnd::new(conn, state.counters.clone());
    if upgrades.is_empty() {
        (response.map(|body| end.on_end_of(body)), upgrades)
    } else {
        upgrades.end_with(end);
        (response, upgrades)
    }
}

async fn accept<IO>(
    io: IO,
    host: &Host,
    client_alpn: &[Vec<u8>],
    ctx: &InterceptContext,
) -> Result<(Box<TlsStream<IO>>, LeafHost), InterceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let leaf_host = LeafHost::parse(host.as_str())?;
    let config = ctx.tls.server_config_for(&leaf_host, client_alpn).await?;
    let handshake = TlsAcceptor::from(config).accept(io);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| InterceptError::HandshakeTimeout {
            host: host.to_string(),
        })?
        .map_err(|source| match trust_refusal(&source) {
            Some(alert) => InterceptError::TrustRefused {
                host: host.to_string(),
                alert,
            },
            None => InterceptError::Handshake {
                host: host.to_string(),
                source,
            },
        })?;
    Ok((Box::new(tls), leaf_host))
}

/// How a client refused the certificate, when that is how its handshake ended: the alert
/// it sent, or `closed` when it hung up in the middle (what some clients do instead).
fn trust_refusal(error: &std::io::Error) -> Option<&'static str> {
    use rustls::AlertDescription as Alert;
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        return Some("closed");
    }
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => match alert {
            Alert::UnknownCA => Some("unknown_ca"),
            Alert::BadCertificate => Some("bad_certificate"),
            Alert::CertificateUnknown => Some("certificate_unknown"),
            Alert::UnsupportedCertificate => Some("unsupported_certificate"),
            Alert::AccessDenied => Some("access_denied"),
            _ => None,
        },
        _ => None,
    }
}

/// Serves HTTP on `io` until the sandbox closes; downstream errors end up in the summary.
///
/// The protocol is already known (ALPN, or plain HTTP/1), so hyper's own HTTP/1 or HTTP/2
/// server runs on `io` directly. (hyper-util's `auto` server first reads up to 24 bytes to
/// look for the HTTP/2 preface, even when told HTTP/1 only, and replays them: hyper then
/// parses a partial head and doubles its read buffer to 16 KiB, which every idle kept-alive
/// connection went on holding.) An idle HTTP/1.1 connection is parked: see [`park`].
async fn serve<IO>(io: IO, state: Arc<ConnState>) -> ConnSummary
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_state = state.clone();
    // Boxed per request: hyper's HTTP/1 server keeps room for one service future for the
    // connection's whole life, so an unboxed one (kilobytes: a request's whole pipeline)
    // would be held by every idle kept-alive connection.
    let service = service_fn(move |request| {
        let state = service_state.clone();
        Box::pin(async move { Ok::<_, Infallible>(forward::handle(request, state).await) })
    });
    let error = match &state.framing {
        Some(verdicts) => {
            let io = Sniffer::new(io, verdicts.clone());
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            park::serve_http1(io, &builder, service, &state.counters, park::PARK_AFTER).await
        }
        None => {
            // Boxed: HTTP/2's connection state (codec, buffers, header tables) is the larger,
            // and unboxed every HTTP/1 connection would be allocated at its size.
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
                .adaptive_window(true)
                .serve_connection(TokioIo::new(io), service);
            Box::pin(conn).await.err().map(park::hyper_error)
        }
    };
    // Dropped (and so aborted) with this future when a drain gives up on the connection.
    state.take_upgrades().finish().await;
    let counters = &state.counters;
    ConnSummary {
        requests: counters.requests.load(Ordering::Relaxed),
        bytes_up: counters.up.load(Ordering::Relaxed),
        bytes_down: counters.down.load(Ordering::Relaxed),
        protocol: state.protocol().to_owned(),
        error,
    }
}
