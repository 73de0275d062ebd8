//! The assembled data path in-process, without root or the kernel: the daemon's transparent
//! listener on port 0, connections identified from a table, real upstreams on loopback (an
//! internal range the test's live rules allow), real TLS and HTTP clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sluice::audit::{AuditLog, AuditWriter, Who};
use sluice::config::PolicyConfig;
use sluice::detect::Limits;
use sluice::drain::Drain;
use sluice::intercept::{AllowAll, InterceptContext};
use sluice::live::Live;
use sluice::net::Cidr;
use sluice::proxy::{Identity, ProxyContext, TableIdentify, serve_transparent};
use sluice::tls::{
    CacheStats, CertificateAuthority, DEFAULT_LEAF_CACHE_SIZE, LeafHost, LeafMinter,
    ServerConfigCache,
};
use sluice::upstream::{DEFAULT_POOLED_HOSTS, Dialer, UpstreamClient, UpstreamSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running gateway: the transparent listener of the daemon, in this process.
pub struct Gateway {
    /// Where clients connect (as the kernel would redirect them).
    pub addr: SocketAddr,
    /// The Sluice CA clients trust.
    pub ca: rustls::pki_types::CertificateDer<'static>,
    /// Identities by client address (clients not in it are refused).
    pub identities: Arc<TableIdentify>,
    minter: Arc<LeafMinter>,
    audit_path: PathBuf,
    drain: Drain,
    writer: Option<AuditWriter>,
    _dir: tempfile::TempDir,
}

/// The gateway's settings for one test.
pub struct Setup {
    /// The node's `[policy]`.
    pub policy: PolicyConfig,
    /// Whether loopback (where the test's upstreams listen) may be dialled.
    pub allow_loopback: bool,
    /// The DNS static table (passthrough and `tcp_allow` names bind through it).
    pub hosts: Vec<(&'static str, &'static str)>,
    /// Upstream pools kept (`UpstreamSettings::pooled_hosts`).
    pub pooled_hosts: usize,
    /// How long an idle upstream connection is kept (`upstream.pool_idle_timeout_ms`).
    pub pool_idle_timeout: Duration,
    /// Names whose leaf is kept (`tls.leaf_cache_size`).
    pub leaf_cache_size: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            policy: PolicyConfig::default(),
            allow_loopback: true,
            hosts: Vec::new(),
            pooled_hosts: DEFAULT_POOLED_HOSTS,
            pool_idle_timeout: UpstreamSettings::default().pool_idle_timeout,
            leaf_cache_size: DEFAULT_LEAF_CACHE_SIZE,
        }
    }
}

impl Gateway {
    /// Starts a gateway trusting `upstream_ca` for upstream TLS.
    pub async fn start(setup: Setup, upstream_ca: &Upstreams) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), time::OffsetDateTime::now_utc())
            .unwrap();
        let ca_der = ca.cert_der().clone();
        let audit_path = dir.path().join("audit.jsonl");
        let (audit, writer) = AuditLog::open(&audit_path).unwrap();
        let hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>> = setup
            .hosts
            .iter()
            .map(|(name, ip)| ((*name).to_owned(), vec![ip.parse().unwrap()]))
            .collect();
        let live = Live {
            policy: Arc::new(setup.policy.compile().unwrap()),
            allow_internal: if setup.allow_loopback {
                vec![Cidr::parse("127.0.0.0/8").unwrap()]
            } else {
                Vec::new()
            },
            hosts: hosts.clone(),
            ..Live::default()
        }
        .into_store();
        let dialer = Dialer::new(Duration::from_secs(5), live.clone());
        let settings = UpstreamSettings {
            extra_roots: vec![upstream_ca.ca_pem.clone()],
            pooled_hosts: setup.pooled_hosts,
            pool_idle_timeout: setup.pool_idle_timeout,
            ..UpstreamSettings::default()
        };
        let minter =
            Arc::new(LeafMinter::with_capacity(Arc::new(ca), setup.leaf_cache_size).unwrap());
        let intercept = Arc::new(InterceptContext {
            tls: Arc::new(ServerConfigCache::new(Arc::clone(&minter)).unwrap()),
            upstream: UpstreamClient::new(settings, dialer.clone()).unwrap(),
            audit: audit.clone(),
            policy: Arc::new(AllowAll),
        });
        let identities = Arc::new(TableIdentify::default());
        let ctx = Arc::new(ProxyContext {
            identify: identities.clone(),
            audit,
            dialer,
            live,
            max_connections: 64,
            detect_limits: Limits {
                deadline: Duration::from_secs(2),
                ..Limits::default()
            },
            intercept,
            resolver: sluice::dns::Resolver::static_only(hosts),
            trust_failures: Arc::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::new();
        drain.spawn(serve_transparent(listener, ctx, drain.clone()));
        Gateway {
            addr,
            ca: ca_der,
            identities,
            minter,
            audit_path,
            drain,
            writer: Some(writer),
            _dir: dir,
        }
    }

    /// A client connection to the gateway, identified as sandbox 7 going to `dest`. (A
    /// refused connection may be reset before `connect` returns.)
    pub async fn try_connect(&self, dest: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let identity = Identity {
            who: Who {
                sandbox: 7,
                ..Who::default()
            },
            destination: dest,
            proxy: None,
        };
        self.identities
            .insert(socket.local_addr().unwrap(), identity);
        socket.connect(self.addr).await
    }

    /// [`Gateway::try_connect`] for connections that are accepted.
    pub async fn connect(&self, dest: SocketAddr) -> TcpStream {
        self.try_connect(dest).await.unwrap()
    }

    /// A TLS client connection for `sni` (trusting the Sluice CA, offering `alpn`).
    pub async fn connect_tls(
        &self,
        dest: SocketAddr,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = self.connect(dest).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// The leaf cache's counters.
    pub fn leaf_cache(&self) -> CacheStats {
        self.minter.cache_stats()
    }

    /// Waits (bounded, as a hang guard) until `n` records of `kind` are written; returns them.
    pub fn records(&self, kind: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
            let records: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|r| r["kind"] == kind)
                .collect();
            assert!(
                records.len() >= n || Instant::now() < deadline,
                "waited 10 s for {n} {kind} records, have {records:?}"
            );
            if records.len() >= n {
                return records;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the gateway and flushes its audit log.
    pub async fn stop(mut self) {
        self.drain.shutdown(Duration::from_secs(2)).await;
        if let Some(writer) = self.writer.take() {
            let _ = writer.finish().await;
        }
    }
}

/// Upstream servers on loopback: an HTTP echo, an HTTPS echo (h1 and h2) whose leaves the
/// gateway trusts through `ca_pem`, and a TCP echo.
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
    _dir: tempfile::TempDir,
}

impl Upstreams {
    /// Starts the three servers; they run until the test's runtime ends.
    pub async fn start() -> Upstreams {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), time::OffsetDateTime::now_utc())
            .unwrap();
        let ca_pem = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
        let leaves = Arc::new(
            ServerConfigCache::new(Arc::new(LeafMinter::new(Arc::new(ca)).unwrap())).unwrap(),
        );
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (
            http.local_addr().unwrap(),
            https.local_addr().unwrap(),
            tcp.local_addr().unwrap(),
        );
        let https_open = Arc::new(AtomicUsize::new(0));
        tokio::spawn(serve_http(http, None, Arc::default()));
        tokio::spawn(serve_http(https, Some(leaves), Arc::clone(&https_open)));
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
            _dir: dir,
        }
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

/// Echoes each request as `METHOD host path body-length version`.
async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<ServerConfigCache>>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let tls = tls.clone();
        let open = Open::new(&open);
        tokio::spawn(async move {
            let _open = open;
            let service = service_fn(|req: Request<Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
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
                let text = format!(
                    "{} {} {} {} {:?}",
                    parts.method,
                    host,
                    parts.uri.path(),
                    body.len(),
                    parts.version
                );
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
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
                    let Ok(tls) = start.into_stream(config).await else {
                        return;
                    };
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                }
            }
        });
    }
}

/// Sends `request` over `io` with HTTP/1.1 (or HTTP/2 when `h2`); returns status and body.
pub async fn send<IO>(io: IO, h2: bool, request: Request<Full<Bytes>>) -> (u16, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
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
