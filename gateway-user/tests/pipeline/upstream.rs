//! The test's upstreams on loopback: HTTP and HTTPS echoes that answer by path and keep
//! what they received, a TCP echo, a WebSocket upstream that holds its tunnel open, HTTPS
//! impostors whose certificates do not verify, and upstreams that refuse or never answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::tls::{CertificateAuthority, LeafHost, LeafMinter, ServerConfigCache};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Upstream servers on loopback: an HTTP echo, an HTTPS echo (h1 and h2) whose leaves the
/// gateway trusts through `ca_pem`, and a TCP echo. Both HTTP echoes answer by path (see
/// [`Echo`]) and keep every request they received whole.
pub struct Upstreams {
    /// Plain HTTP echo.
    pub http: SocketAddr,
    /// HTTPS echo (any host name under the upstream CA).
    pub https: SocketAddr,
    /// Opaque TCP echo.
    pub tcp: SocketAddr,
    /// The upstream CA, as a PEM file.
    pub ca_pem: PathBuf,
    /// Connections the HTTPS echo holds open now.
    pub https_open: Arc<AtomicUsize>,
    echo: Echo,
    leaves: Arc<ServerConfigCache>,
    _dir: tempfile::TempDir,
}

/// A certificate an HTTPS impostor presents, which the gateway must not accept.
#[derive(Clone, Copy, Debug)]
pub enum Impostor {
    /// Issued by the trusted upstream CA, but for `elsewhere.test` whatever the SNI.
    WrongName,
    /// For the SNI, but issued by a CA nobody trusts.
    UnknownIssuer,
}

/// A request as an upstream received it (its body read to the end).
#[derive(Clone, Debug)]
pub struct Seen {
    /// Whether it came over TLS.
    pub tls: bool,
    /// The method.
    pub method: String,
    /// The host (authority or `Host`).
    pub host: String,
    /// The path, as sent (percent-encoding kept).
    pub path: String,
    /// The query, as sent ("" without one).
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Seen {
    /// The value of header `name`, or "" without one.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// What the HTTP echoes share with the test. By path:
/// - `/headers`: the request's headers (`name: value` lines), a blank line, then its body;
///   its `authorization` also comes back in the `x-echoed-authorization` header;
/// - `/stored`: [`Upstreams::store`]'s text, sent in 7-byte chunks (as a host that learned
///   a value elsewhere would echo it);
/// - `/sse`: `text/event-stream`: `data: <authorization>` at once, then, only after
///   [`Upstreams::release_events`], `data: done` and the end of the stream;
/// - `/ws` with `Upgrade: websocket`: a WebSocket that first sends the upgrade request's
///   `authorization` as a text message, then echoes every text and binary message;
/// - `/bytes/<n>`: `n` bytes of [`pattern`] (with `content-length: n`) in 64 KiB frames;
/// - `/hash`: `<length> <sha256 hex>` of the body, hashed as it streams in (kept in
///   [`Upstreams::seen`] without its body);
/// - `/trailers`: `fake grpc reply`, then trailers `grpc-status: 0`, `grpc-message: ok`;
/// - `/status/<code>`: that status without a body (a 304 with an `etag`);
/// - `/hop`: `hop-free`, with hop-by-hop headers (`connection: x-resp-hop, keep-alive`,
///   `x-resp-hop`, `keep-alive`, `proxy-authenticate`) beside an end-to-end `x-kept`;
/// - `/close`: `closing`, with `connection: close` (the upstream closes after it);
/// - a path given [`Upstreams::can`]: that [`Canned`] answer;
/// - `HEAD` of any of the above: its headers without a body;
/// - anything else: `METHOD host path body-length version`.
///
/// Every request head is logged in [`Upstreams::heads`] as soon as it arrives, before its
/// body is read.
#[derive(Clone, Default)]
struct Echo {
    tls: bool,
    heads: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stored: Arc<Mutex<String>>,
    canned: Arc<Mutex<std::collections::HashMap<String, Canned>>>,
    events: Arc<Notify>,
}

#[path = "routes.rs"]
pub mod routes;

pub use routes::Canned;
use routes::{hash, head_only, special};

type EchoBody = BoxBody<Bytes, Infallible>;

impl Upstreams {
    /// Starts the three servers; they run until the test's runtime ends.
    pub async fn start() -> Upstreams {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), time::OffsetDateTime::now_utc())
            .unwrap();
        let ca_pem = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
        let leaves = leaf_cache(ca);
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (
            http.local_addr().unwrap(),
            https.local_addr().unwrap(),
            tcp.local_addr().unwrap(),
        );
        let https_open = Arc::new(AtomicUsize::new(0));
        let echo = Echo::default();
        let over_tls = Echo {
            tls: true,
            ..echo.clone()
        };
        tokio::spawn(serve_http(http, None, Arc::default(), echo.clone()));
        tokio::spawn(serve_http(
            https,
            Some(Leaves::PerName(Arc::clone(&leaves))),
            Arc::clone(&https_open),
            over_tls,
        ));
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Upstreams {
            http: addrs.0,
            https: addrs.1,
            tcp: addrs.2,
            ca_pem,
            https_open,
            echo,
            leaves,
            _dir: dir,
        }
    }

    /// Starts an HTTPS echo presenting `cert` (sharing [`Upstreams::seen`] and
    /// [`Upstreams::heads`]); returns its address.
    pub async fn impostor(&self, cert: Impostor) -> SocketAddr {
        let leaves = match cert {
            Impostor::WrongName => {
                let name = LeafHost::parse("elsewhere.test").unwrap();
                let key = self.leaves.minter().certified_key(&name).await.unwrap();
                let mut config = rustls::ServerConfig::builder()
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(OneLeaf(key)));
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Leaves::One(Arc::new(config))
            }
            Impostor::UnknownIssuer => {
                let dir = self._dir.path().join("rogue");
                std::fs::create_dir_all(&dir).unwrap();
                let rogue =
                    CertificateAuthority::load_or_create(&dir, time::OffsetDateTime::now_utc())
                        .unwrap();
                Leaves::PerName(leaf_cache(rogue))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = Echo {
            tls: true,
            ..self.echo.clone()
        };
        tokio::spawn(serve_http(listener, Some(leaves), Arc::default(), echo));
        addr
    }

    /// Every request head (`METHOD path`) the HTTP and HTTPS echoes received, in order,
    /// whether or not its body arrived whole.
    pub fn heads(&self) -> Vec<String> {
        self.echo.heads.lock().unwrap().clone()
    }

    /// Every request the HTTP and HTTPS echoes received whole, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.echo.seen.lock().unwrap().clone()
    }

    /// Sets what `/stored` answers.
    pub fn store(&self, text: &str) {
        *self.echo.stored.lock().unwrap() = text.to_owned();
    }

    /// Makes the HTTP and HTTPS echoes answer `path` with `canned`.
    pub fn can(&self, path: &str, canned: Canned) {
        self.echo
            .canned
            .lock()
            .unwrap()
            .insert(path.to_owned(), canned);
    }

    /// Lets one `/sse` stream (waiting, or the next one) send its last event and end.
    pub fn release_events(&self) {
        self.echo.events.notify_one();
    }

    /// Waits (bounded, as a hang guard) until the HTTPS echo holds at most `n` connections;
    /// returns how many it holds.
    pub async fn https_open_at_most(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let open = self.https_open.load(Ordering::SeqCst);
            if open <= n || Instant::now() > deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Counts a connection open until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The leaves an HTTPS upstream presents.
#[derive(Clone)]
enum Leaves {
    /// A leaf for each SNI.
    PerName(Arc<ServerConfigCache>),
    /// The one leaf of this configuration, whatever the SNI.
    One(Arc<rustls::ServerConfig>),
}

/// Resolves every handshake to the one leaf it holds.
#[derive(Debug)]
struct OneLeaf(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneLeaf {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Serves [`Echo`] on `listener` (over TLS when `tls` is given).
async fn serve_http(
    listener: TcpListener,
    tls: Option<Leaves>,
    open: Arc<AtomicUsize>,
    echo: Echo,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let tls = tls.clone();
        let open = Open::new(&open);
        let echo = echo.clone();
        tokio::spawn(async move {
            let _open = open;
            let service = service_fn(move |req: Request<Incoming>| echo.clone().answer(req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
                Some(leaves) => {
                    let mut acceptor = tokio_rustls::LazyConfigAcceptor::new(
                        rustls::server::Acceptor::default(),
                        stream,
                    );
                    let Ok(start) = (&mut acceptor).await else {
                        return;
                    };
                    let config = match leaves {
                        Leaves::One(config) => config,
                        Leaves::PerName(leaves) => {
                            let hello = start.client_hello();
                            let host = hello.server_name().unwrap_or("unnamed.test").to_owned();
                            let alpn: Vec<Vec<u8>> = hello
                                .alpn()
                                .map(|a| a.map(<[u8]>::to_vec).collect())
                                .unwrap_or_default();
                            let Ok(leaf) = LeafHost::parse(&host) else {
                                return;
                            };
                            let Ok(config) = leaves.server_config_for(&leaf, &alpn).await else {
                                return;
                            };
                            config
                        }
                    };
                    let Ok(tls) = start.into_stream(config).await else {
                        return;
                    };
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await;
                }
            }
        });
    }
}

impl Echo {
    async fn answer(self, mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
        let upgrade = req
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        self.heads
            .lock()
            .unwrap()
            .push(format!("{} {}", parts.method, parts.uri.path()));
        let (body, hashed) = if parts.uri.path() == "/hash" {
            let Some(hashed) = hash(body).await else {
                return Ok(Response::new(full("body cut short")));
            };
            (Bytes::new(), Some(hashed))
        } else {
            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                return Ok(Response::new(full("body cut short")));
            };
            (body, None)
        };
        let host = parts
            .uri
            .authority()
            .map(ToString::to_string)
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let seen = Seen {
            tls: self.tls,
            method: parts.method.to_string(),
            host,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers.clone(),
            body,
        };
        self.seen.lock().unwrap().push(seen.clone());
        let authorization = seen.header("authorization").to_owned();
        if let Some(hashed) = hashed {
            return Ok(Response::new(full(&hashed)));
        }
        let canned = self.canned.lock().unwrap().get(&seen.path).cloned();
        if let Some(canned) = canned {
            return Ok(head_only(&parts.method, canned.response()));
        }
        if let Some(response) = special(&seen.path) {
            return Ok(head_only(&parts.method, response));
        }
        let response = match (seen.path.as_str(), on_upgrade) {
            ("/ws", Some(on_upgrade)) => {
                let key = seen.header("sec-websocket-key");
                let accept = derive_accept_key(key.as_bytes());
                tokio::spawn(websocket_echo(on_upgrade, authorization));
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .header("sec-websocket-accept", accept)
                    .body(full(""))
                    .unwrap()
            }
            ("/headers", _) => {
                let mut text = String::new();
                for (name, value) in &seen.headers {
                    text += &format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes()));
                }
                text += "\n";
                text += &String::from_utf8_lossy(&seen.body);
                Response::builder()
                    .header("x-echoed-authorization", authorization)
                    .body(full(&text))
                    .unwrap()
            }
            ("/stored", _) => {
                let text = self.stored.lock().unwrap().clone();
                let chunks: Vec<Bytes> = text
                    .as_bytes()
                    .chunks(7)
                    .map(Bytes::copy_from_slice)
                    .collect();
                let frames =
                    futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
                Response::new(BodyExt::boxed(StreamBody::new(frames)))
            }
            ("/sse", _) => {
                let events = self.events.clone();
                let first = Bytes::from(format!("data: {authorization}\n\n"));
                let frames = futures_util::stream::unfold(0u8, move |step| {
                    let events = events.clone();
                    let first = first.clone();
                    async move {
                        match step {
                            0 => Some((Ok(Frame::data(first)), 1)),
                            1 => {
                                events.notified().await;
                                Some((Ok(Frame::data(Bytes::from_static(b"data: done\n\n"))), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .body(BodyExt::boxed(StreamBody::new(frames)))
                    .unwrap()
            }
            _ => Response::new(full(&format!(
                "{} {} {} {} {:?}",
                seen.method,
                seen.host,
                seen.path,
                seen.body.len(),
                parts.version
            ))),
        };
        Ok(head_only(&parts.method, response))
    }
}

/// A leaf cache minting under `ca`.
fn leaf_cache(ca: CertificateAuthority) -> Arc<ServerConfigCache> {
    Arc::new(ServerConfigCache::new(Arc::new(LeafMinter::new(Arc::new(ca)).unwrap())).unwrap())
}

fn full(text: &str) -> EchoBody {
    BodyExt::boxed(Full::new(Bytes::from(text.to_owned())))
}

/// The WebSocket side of `/ws`: says `authorization: <value>`, then echoes messages until
/// the client closes.
async fn websocket_echo(on_upgrade: hyper::upgrade::OnUpgrade, authorization: String) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let said = Message::text(format!("authorization: {authorization}"));
    if ws.send(said).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// An upstream that accepts one WebSocket upgrade, then holds the tunnel open; the channel
/// says when the gateway's side of it closed.
pub async fn websocket_upstream() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, on_close) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "head cut short");
            head.push(byte[0]);
        }
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await
            .unwrap();
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await.is_ok_and(|n| n > 0) {}
        let _ = closed.send(());
    });
    (addr, on_close)
}

/// An upstream that accepts connections, reads whatever arrives and never answers (nor
/// completes a TLS handshake); connections stay open until the test's runtime ends.
pub async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    addr
}

/// A loopback address where nothing listens (connections to it are refused), held by the
/// socket returned (bound, never listening) so no other test can take the port.
pub fn refusing_upstream() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap(), socket)
}
