//! Fake upstream servers that run inside the lab's net namespace.
//!
//! Builders read like the product: `upstream::https(&ca).route("/", "ok").echo().start(&lab,
//! addr)`. Each running server has its own thread and tokio runtime (so tests may block on
//! `curl` without starving it), records every request it receives, and stops on drop.

mod conn;
mod handlers;
mod server;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};

use crate::certs::{CertError, IssuedCert, TestCa};
use crate::netlab::{NetLab, NetLabError};

pub use handlers::{Canned, EchoReport, SseEvent, pattern, pattern_sha256, sha256_hex};
pub use tcp::{
    RecordedConnection, Refusing, RunningTcp, TcpUpstream, refusing, tcp_echo, tcp_recorder,
};

/// Errors from starting a fake upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The bind address is outside the test ranges.
    #[error(
        "upstream: {0} is not a test address (use 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)"
    )]
    NotTestAddress(IpAddr),
    /// Entering the namespace failed.
    #[error("upstream: {0}")]
    Netns(#[from] NetLabError),
    /// Binding the listener failed (is the address on the net side? port taken?).
    #[error("upstream: bind {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Building the server's runtime or thread failed.
    #[error("upstream: start server thread: {0}")]
    Runtime(std::io::Error),
    /// Issuing the server certificate or building its TLS config failed.
    #[error("upstream: tls setup: {0}")]
    Certs(#[from] CertError),
}

/// A plain-HTTP fake upstream builder (h1, and h2c with prior knowledge unless `.h2(false)`).
pub fn http() -> HttpUpstream {
    HttpUpstream {
        routes: Vec::new(),
        echo_fallback: false,
        h2: true,
        tls: None,
    }
}

/// A TLS fake upstream builder. At start it gets a certificate from `ca` for the bound IP plus
/// any [`HttpUpstream::hostname`]s, unless [`HttpUpstream::cert`] supplies one. ALPN offers
/// `h2` and `http/1.1` unless `.h2(false)`.
pub fn https(ca: &TestCa) -> HttpUpstream {
    HttpUpstream {
        tls: Some(Tls {
            ca: ca.clone(),
            names: Vec::new(),
            cert: None,
        }),
        ..http()
    }
}

/// Builder for an HTTP(S) fake upstream; see [`http()`] and [`https()`].
#[must_use = "a builder does nothing until `.start()`"]
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    routes: Vec<(String, Route)>,
    echo_fallback: bool,
    h2: bool,
    tls: Option<Tls>,
}

#[derive(Debug, Clone)]
struct Tls {
    ca: TestCa,
    names: Vec<String>,
    cert: Option<IssuedCert>,
}

/// What a path serves. Paths match exactly, query ignored; first match wins.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    Fixed {
        status: u16,
        body: Bytes,
        delay: Duration,
    },
    Echo,
    Sse {
        events: usize,
        interval: Duration,
    },
    Trailers,
    Bytes(u64),
    WebSocketEcho(WebSocketEcho),
    Canned(Canned),
}

/// Options of a WebSocket echo route.
#[derive(Clone, Debug, Default)]
pub(crate) struct WebSocketEcho {
    /// A request header whose value is sent first, in several forms.
    pub(crate) header: Option<String>,
    /// Answer the upgrade with `Sec-WebSocket-Extensions: permessage-deflate`, asked or not.
    pub(crate) force_deflate: bool,
}

impl HttpUpstream {
    /// `GET/POST/... path` answers 200 with `body` (text/plain).
    pub fn route(self, path: &str, body: impl Into<Bytes>) -> Self {
        self.status(path, 200, body)
    }

    /// `path` answers `status` with `body`.
    pub fn status(self, path: &str, status: u16, body: impl Into<Bytes>) -> Self {
        self.with(
            path,
            Route::Fixed {
                status,
                body: body.into(),
                delay: Duration::ZERO,
            },
        )
    }

    /// `path` waits `delay` before answering 200 with `body`, for timeout tests.
    pub fn slow(self, path: &str, delay: Duration, body: impl Into<Bytes>) -> Self {
        self.with(
            path,
            Route::Fixed {
                status: 200,
                body: body.into(),
                delay,
            },
        )
    }

    /// Unmatched paths answer with an [`EchoReport`] (JSON) instead of 404.
    pub fn echo(mut self) -> Self {
        self.echo_fallback = true;
        self
    }

    /// `path` consumes the whole upload and answers an [`EchoReport`] with its length and
    /// sha256 (the body is hashed as it streams, never buffered).
    pub fn sink(self, path: &str) -> Self {
        self.with(path, Route::Echo)
    }

    /// `path` streams `events` server-sent events, one every `interval` (the first at once),
    /// each flushed on its own and carrying its send time; parse with [`SseEvent::parse`].
    pub fn sse(self, path: &str, events: usize, interval: Duration) -> Self {
        self.with(path, Route::Sse { events, interval })
    }

    /// `path` answers like gRPC: `content-type: application/grpc`, one length-prefixed
    /// message, then trailers `grpc-status: 0` and `grpc-message: ok` (trailers need HTTP/2,
    /// or HTTP/1.1 with `TE: trailers`).
    pub fn trailers(self, path: &str) -> Self {
        self.with(path, Route::Trailers)
    }

    /// `path` upgrades to a WebSocket (HTTP/1.1 `Upgrade`) and echoes every text/binary frame.
    pub fn websocket_echo(self, path: &str) -> Self {
        self.with(path, Route::WebSocketEcho(WebSocketEcho::default()))
    }

    /// Like [`websocket_echo`](Self::websocket_echo), but first sends the value of the
    /// request's `header` (empty if absent) as three messages: as is (text), in lowercase
    /// hex (binary) and in standard base64 (text); then echoes.
    pub fn websocket_echo_header(self, path: &str, header: &str) -> Self {
        let echo = WebSocketEcho {
            header: Some(header.to_owned()),
            force_deflate: false,
        };
        self.with(path, Route::WebSocketEcho(echo))
    }

    /// Like [`websocket_echo`](Self::websocket_echo), but its 101 names
    /// `Sec-WebSocket-Extensions: permessage-deflate` whatever the client offered.
    pub fn websocket_force_deflate(self, path: &str) -> Self {
        let echo = WebSocketEcho {
            header: None,
            force_deflate: true,
        };
        self.with(path, Route::WebSocketEcho(echo))
    }

    /// `path` answers exactly `canned`: its status, headers, body (in the chunks given) and
    /// trailers, whatever they claim (a `Content-Encoding` the body does not have, ...).
    pub fn canned(self, path: &str, canned: Canned) -> Self {
        self.with(path, Route::Canned(canned))
    }

    /// `path` streams `n` bytes of [`pattern`] with a content-length, for big downloads.
    pub fn bytes(self, path: &str, n: u64) -> Self {
        self.with(path, Route::Bytes(n))
    }

    /// Offer HTTP/2 (ALPN `h2` + `http/1.1`, or h2c prior knowledge) or HTTP/1.1 only.
    /// Default is true.
    pub fn h2(mut self, enabled: bool) -> Self {
        self.h2 = enabled;
        self
    }

    /// Adds a DNS name to the issued certificate (HTTPS only; ignored for plain HTTP).
    pub fn hostname(mut self, name: &str) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.names.push(name.to_owned());
        }
        self
    }

    /// Presents `cert` instead of issuing one (wrong name, expired, rogue CA...). HTTPS only.
    pub fn cert(mut self, cert: IssuedCert) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.cert = Some(cert);
        }
        self
    }

    /// Binds `addr` inside the lab's net namespace and starts serving. Port 0 picks a free
    /// port; see [`RunningUpstream::addr`].
    pub fn start(self, lab: &NetLab, addr: SocketAddr) -> Result<RunningUpstream, UpstreamError> {
        self.start_in(&lab.net_ns_path(), addr)
    }

    /// Like [`start`](Self::start) but in any namespace (e.g. the node one).
    pub fn start_in(
        self,
        netns: &Path,
        addr: SocketAddr,
    ) -> Result<RunningUpstream, UpstreamError> {
        let listener = server::bind_in(netns, addr)?;
        let addr = listener
            .local_addr()
            .map_err(|source| UpstreamError::Bind { addr, source })?;
        let tls = match &self.tls {
            None => None,
            Some(tls) => {
                let alpn: &[&[u8]] = if self.h2 {
                    &[b"h2", b"http/1.1"]
                } else {
                    &[b"http/1.1"]
                };
                let cert = match &tls.cert {
                    Some(cert) => cert.clone(),
                    None => {
                        let ip = addr.ip().to_string();
                        let mut names = vec![ip.as_str()];
                        names.extend(tls.names.iter().map(String::as_str));
                        tls.ca.issue(&names)?
                    }
                };
                Some(tokio_rustls::TlsAcceptor::from(cert.server_config(alpn)?))
            }
        };
        let log = RequestLog::default();
        let ctx = Arc::new(conn::Ctx {
            routes: self.routes,
            echo_fallback: self.echo_fallback,
            h2: self.h2,
            tls,
            log: log.clone(),
        });
        let thread = server::spawn(listener, move |stream, peer| {
            conn::serve_connection(ctx.clone(), stream, peer)
        })?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(RunningUpstream {
            addr,
            scheme,
            log,
            _thread: thread,
        })
    }

    fn with(mut self, path: &str, route: Route) -> Self {
        self.routes.push((path.to_owned(), route));
        self
    }
}

/// A running HTTP(S) fake; stops (and closes its connections) on drop.
///
/// After drop the port is closed, but a `fork` elsewhere in the test process (any
/// `Command::spawn`) can keep the listener alive for a moment; use [`refusing`] when a test
/// needs a guaranteed "connection refused".
#[must_use = "the server stops when this is dropped"]
#[derive(Debug)]
pub struct RunningUpstream {
    addr: SocketAddr,
    scheme: &'static str,
    log: RequestLog,
    _thread: server::ServerThread,
}

impl RunningUpstream {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://<ip>:<port><path>` (IPv6 in brackets), for curl.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.snapshot()
    }

    /// How many TCP connections were accepted (TLS handshakes included even if they failed).
    pub fn connections(&self) -> u64 {
        self.log.connections()
    }
}

/// One request as the fake upstream saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target (for HTTP/2 this carries scheme and authority).
    pub uri: Uri,
    /// HTTP version on the wire to this upstream.
    pub version: Version,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The TCP peer (the gateway's source address when going through Sluice).
    pub peer: SocketAddr,
    /// SNI the client sent (TLS only).
    pub sni: Option<String>,
    /// Negotiated ALPN protocol (TLS only).
    pub alpn: Option<String>,
    /// Which accepted connection (0-based) carried it, to tell reuse from reconnects.
    pub connection: u64,
}

/// Shared, cloneable log of requests and connection count.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    requests: Vec<RecordedRequest>,
    connections: u64,
}

impl RequestLog {
    pub(crate) fn push(&self, request: RecordedRequest) {
        self.lock().requests.push(request);
    }

    /// Counts a new connection and returns its 0-based index.
    pub(crate) fn next_connection(&self) -> u64 {
        let mut inner = self.lock();
        inner.connections += 1;
        inner.connections - 1
    }

    fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    fn connections(&self) -> u64 {
        self.lock().connections
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
