//! One HTTP(S) connection: optional TLS handshake, hyper auto server, routing, recording.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::{RecordedRequest, RequestLog, Route, handlers};

/// Response body type of every handler.
pub(crate) type Body = UnsyncBoxBody<bytes::Bytes, Infallible>;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a connection needs, built once per server.
pub(crate) struct Ctx {
    pub(crate) routes: Vec<(String, Route)>,
    pub(crate) echo_fallback: bool,
    pub(crate) h2: bool,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) log: RequestLog,
}

/// What the handlers know about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) sni: Option<String>,
    pub(crate) alpn: Option<String>,
    pub(crate) connection: u64,
}

/// Serves one accepted connection to completion; errors end the connection quietly.
pub(crate) async fn serve_connection(ctx: Arc<Ctx>, stream: TcpStream, peer: SocketAddr) {
    let connection = ctx.log.next_connection();
    let mut info = ConnInfo {
        peer,
        tls: false,
        sni: None,
        alpn: None,
        connection,
    };
    let Some(acceptor) = ctx.tls.clone() else {
        return serve_http(ctx, TokioIo::new(stream), info).await;
    };
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    let (_, session) = tls.get_ref();
    info.tls = true;
    info.sni = session.server_name().map(str::to_owned);
    info.alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    serve_http(ctx, TokioIo::new(tls), info).await;
}

async fn serve_http<I>(ctx: Arc<Ctx>, io: TokioIo<I>, info: ConnInfo)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !ctx.h2 {
        builder = builder.http1_only();
    } else if info.alpn.as_deref() == Some("h2") {
        builder = builder.http2_only();
    }
    let service_ctx = ctx.clone();
    let service = service_fn(move |request| {
        let (ctx, info) = (service_ctx.clone(), info.clone());
        async move { Ok::<_, Infallible>(handle(&ctx, request, info).await) }
    });
    let _ = builder.serve_connection_with_upgrades(io, service).await;
}

async fn handle(ctx: &Ctx, request: Request<Incoming>, info: ConnInfo) -> Response<Body> {
    ctx.log.push(RecordedRequest {
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        headers: request.headers().clone(),
        peer: info.peer,
        sni: info.sni.clone(),
        alpn: info.alpn.clone(),
        connection: info.connection,
    });
    let route = ctx
        .routes
        .iter()
        .find(|(path, _)| path == request.uri().path())
        .map(|(_, r)| r);
    match route {
        Some(Route::Fixed {
            status,
            body,
            delay,
        }) => {
            if !delay.is_zero() {
                tokio::time::sleep(*delay).await;
            }
            handlers::fixed(*status, body.clone())
        }
        Some(Route::Echo) => handlers::echo(request, &info).await,
        Some(Route::Sse { events, interval }) => handlers::sse(*events, *interval),
        Some(Route::Trailers) => handlers::trailers(request).await,
        Some(Route::Bytes(n)) => handlers::bytes(*n),
        Some(Route::WebSocketEcho(echo)) => handlers::websocket_echo(request, echo),
        Some(Route::Canned(canned)) => handlers::canned(request, canned).await,
        None if ctx.echo_fallback => handlers::echo(request, &info).await,
        None => handlers::fixed(
            404,
            bytes::Bytes::from_static(b"no such route on the fake upstream\n"),
        ),
    }
}
