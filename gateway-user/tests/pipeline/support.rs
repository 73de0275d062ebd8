//! The assembled data path in-process, without root or the kernel: the daemon's transparent
//! listener on port 0, connections identified from a table, its explicit proxy (`HTTPS_PROXY`)
//! on port 0 beside it, the daemon's session gate over an in-memory store, real upstreams on loopback (an internal range the test's live rules
//! allow), real TLS, HTTP and WebSocket clients.

pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sluice::audit::{AuditLog, AuditWriter, Who};
use sluice::config::PolicyConfig;
use sluice::credentials::{CredentialSpec, Secret};
use sluice::detect::Limits;
use sluice::drain::Drain;
use sluice::gate::{CompiledSessions, SessionGate};
use sluice::intercept::InterceptContext;
use sluice::live::Live;
use sluice::net::Cidr;
use sluice::policy::{LocalLimiter, PolicySpec};
use sluice::proxy::{
    ExplicitProxy, Identity, ProxyContext, TableIdentify, serve_explicit, serve_transparent,
};
use sluice::session::{
    AuthError, CacheConfig, EmbeddedStore, MasterKey, NewSession, SessionCache, SessionStore,
};
use sluice::tls::{
    CacheStats, CertificateAuthority, DEFAULT_LEAF_CACHE_SIZE, LeafMinter, ServerConfigCache,
};
use sluice::upstream::{DEFAULT_POOLED_HOSTS, Dialer, UpstreamClient, UpstreamSettings};
use tokio::net::{TcpListener, TcpStream};
use upstream::Upstreams;

/// A TLS connection from a sandbox through the gateway.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// `API_KEY` = `secret`, bound to api.test, allowed in any header, in queries and in bodies.
pub fn api_key(secret: &str) -> (CredentialSpec, Secret) {
    let spec = CredentialSpec {
        name: "API_KEY".into(),
        hosts: vec!["api.test".into()],
        headers: Vec::new(),
        query: true,
        body: true,
    };
    (spec, Secret::new(secret.as_bytes().to_vec()))
}

/// A ten-minute session with `credentials` under `policy`.
pub fn session_with(credentials: Vec<(CredentialSpec, Secret)>, policy: PolicySpec) -> NewSession {
    NewSession {
        ttl: Duration::from_secs(600),
        credentials,
        policy,
        upstream_proxy: None,
        labels: Default::default(),
    }
}

/// A running gateway: the transparent listener of the daemon, in this process, with the
/// daemon's session gate (a connection of a sandbox without a session is served as the node's
/// rules say; one with a session under that session's policy and credentials).
pub struct Gateway {
    /// Where clients connect (as the kernel would redirect them).
    pub addr: SocketAddr,
    /// The explicit proxy (`HTTPS_PROXY=http://sluice:<token>@proxy`), sharing the
    /// transparent listener's context, session cache and resolver, as the daemon runs it.
    pub proxy: SocketAddr,
    /// The Sluice CA clients trust.
    pub ca: rustls::pki_types::CertificateDer<'static>,
    /// Identities by client address (clients not in it are refused).
    pub identities: Arc<TableIdentify>,
    minter: Arc<LeafMinter>,
    store: Arc<EmbeddedStore>,
    sessions: Arc<SessionCache>,
    master: Arc<MasterKey>,
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
    /// Limit on the upstream TLS handshake (`upstream.connect_timeout_ms`, as
    /// `UpstreamSettings::connect_timeout`).
    pub tls_handshake_timeout: Duration,
    /// Limit on waiting for an upstream's response head (`UpstreamSettings::response_timeout`).
    pub response_timeout: Duration,
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
            tls_handshake_timeout: UpstreamSettings::default().connect_timeout,
            response_timeout: UpstreamSettings::default().response_timeout,
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
        let resolver = sluice::dns::Resolver::static_only(hosts);
        // The session gate as the daemon builds it (`daemon::services`), over a store only
        // this test sees.
        let store = Arc::new(EmbeddedStore::in_memory());
        let sessions = Arc::new(SessionCache::new(store.clone(), CacheConfig::default()));
        let master = Arc::new(MasterKey::generate().unwrap());
        let gate = SessionGate {
            sessions: sessions.clone(),
            compiled: Arc::new(CompiledSessions::default()),
            limiter: Arc::new(LocalLimiter::new()),
            master: master.clone(),
            live: live.clone(),
        };
        let settings = UpstreamSettings {
            extra_roots: vec![upstream_ca.ca_pem.clone()],
            pooled_hosts: setup.pooled_hosts,
            pool_idle_timeout: setup.pool_idle_timeout,
            connect_timeout: setup.tls_handshake_timeout,
            response_timeout: setup.response_timeout,
            ..UpstreamSettings::default()
        };
        let minter =
            Arc::new(LeafMinter::with_capacity(Arc::new(ca), setup.leaf_cache_size).unwrap());
        let intercept = Arc::new(InterceptContext {
            tls: Arc::new(ServerConfigCache::new(Arc::clone(&minter)).unwrap()),
            upstream: UpstreamClient::new(settings, dialer.clone()).unwrap(),
            audit: audit.clone(),
            policy: Arc::new(gate),
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
            resolver: resolver.clone(),
            trust_failures: Arc::default(),
            // Two thread-per-core workers, as the daemon runs them on a 2-core node.
            workers: Some(Arc::new(sluice::workers::Workers::start(2).unwrap())),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::new();
        // The explicit proxy as the daemon starts it (`Daemon::start` with `listen.proxy`).
        let explicit = Arc::new(ExplicitProxy {
            ctx: ctx.clone(),
            cache: sessions.clone(),
            resolver,
        });
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = proxy_listener.local_addr().unwrap();
        drain.spawn(serve_transparent(listener, ctx, drain.clone()));
        drain.spawn(serve_explicit(proxy_listener, explicit, drain.clone()));
        Gateway {
            addr,
            proxy,
            ca: ca_der,
            identities,
            minter,
            store,
            sessions,
            master,
            audit_path,
            drain,
            writer: Some(writer),
            _dir: dir,
        }
    }

    /// A client connection to the gateway, identified as sandbox 7 (without a session) going
    /// to `dest`. (A refused connection may be reset before `connect` returns.)
    pub async fn try_connect(&self, dest: SocketAddr) -> std::io::Result<TcpStream> {
        self.dial(None, dest).await
    }

    /// [`Gateway::try_connect`] for connections that are accepted.
    pub async fn connect(&self, dest: SocketAddr) -> TcpStream {
        self.try_connect(dest).await.unwrap()
    }

    /// [`Gateway::connect`] from a sandbox of session `id`.
    pub async fn connect_in(&self, id: &str, dest: SocketAddr) -> TcpStream {
        self.dial(Some(id), dest).await.unwrap()
    }

    /// A TLS client connection for `sni` (trusting the Sluice CA, offering `alpn`).
    pub async fn connect_tls(
        &self,
        dest: SocketAddr,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::io::Result<Tls> {
        self.tls(self.connect(dest).await, sni, alpn).await
    }

    /// A client over a new connection to `dest`: TLS with SNI `sni` (HTTP/2 when `h2`), or
    /// plain HTTP/1.1 without `sni`.
    pub async fn client(&self, dest: SocketAddr, sni: Option<&str>, h2: bool) -> Client {
        let Some(sni) = sni else {
            return Client::open(self.connect(dest).await, false).await;
        };
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let tls = self.connect_tls(dest, sni, &[alpn]).await.unwrap();
        Client::open(tls, h2).await
    }

    /// [`Gateway::connect_tls`] from a sandbox of session `id`.
    pub async fn connect_tls_in(
        &self,
        id: &str,
        dest: SocketAddr,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::io::Result<Tls> {
        self.tls(self.connect_in(id, dest).await, sni, alpn).await
    }

    /// Creates `new` in the gateway's session store (sealing its credentials under the
    /// gateway's master key, as the control API does); returns the session's id.
    pub async fn create_session(&self, new: NewSession) -> String {
        self.create_session_with_token(new).await.0
    }

    /// [`Gateway::create_session`], returning the session's id and its token (what a
    /// sandbox presents to the explicit proxy).
    pub async fn create_session_with_token(&self, new: NewSession) -> (String, String) {
        let (session, token) = self.store.create(new, &self.master).await.unwrap();
        (session.id, token.expose().to_owned())
    }

    /// Revokes session `id` in the store, then waits (bounded, as a hang guard) until the
    /// revocation pushed to the gateway's session cache has taken effect there.
    pub async fn revoke(&self, id: &str) {
        assert!(self.store.revoke(id).await.unwrap(), "no session {id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.sessions.by_id(id).await;
            if matches!(found, Err(AuthError::Revoked(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for the revocation of {id}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn dial(&self, session: Option<&str>, dest: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let identity = Identity {
            who: Who {
                sandbox: 7,
                session: session.map(str::to_owned),
                ..Who::default()
            },
            destination: dest,
            proxy: None,
        };
        self.identities
            .insert(socket.local_addr().unwrap(), identity);
        socket.connect(self.addr).await
    }

    async fn tls(&self, tcp: TcpStream, sni: &str, alpn: &[&[u8]]) -> std::io::Result<Tls> {
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

    /// Stops the gateway and flushes its audit log; returns the whole log (to search it
    /// for what must never be written).
    pub async fn stop(mut self) -> String {
        self.drain.shutdown(Duration::from_secs(2)).await;
        if let Some(writer) = self.writer.take() {
            let _ = writer.finish().await;
        }
        std::fs::read_to_string(&self.audit_path).unwrap()
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The value of header `name`, or "" without one.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// An HTTP/1.1 or HTTP/2 client over one connection, for several requests in turn.
pub enum Client {
    /// HTTP/1.1 (kept alive).
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// Handshakes over `io` with HTTP/1.1 (or HTTP/2 when `h2`).
    pub async fn open<IO>(io: IO, h2: bool) -> Client
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Client::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .unwrap();
            tokio::spawn(conn);
            Client::H1(sender)
        }
    }

    /// Sends `request`; returns the response with its body still streaming.
    pub async fn response(&mut self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        match self {
            Client::H1(sender) => {
                sender.ready().await.unwrap();
                sender.send_request(request).await.unwrap()
            }
            Client::H2(sender) => sender.send_request(request).await.unwrap(),
        }
    }

    /// Sends `request`; returns the response read whole.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Reply {
        let (parts, body) = self.response(request).await.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Sends `request` over `io` with HTTP/1.1 (or HTTP/2 when `h2`); returns status and body.
pub async fn send<IO>(io: IO, h2: bool, request: Request<Full<Bytes>>) -> (u16, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let reply = Client::open(io, h2).await.send(request).await;
    (reply.status, reply.body)
}

/// A request with `Host: host` and `headers` (appended, so a name may repeat), carrying
/// `body`.
pub fn request(
    method: &str,
    uri: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// Writes raw `bytes` on `io`, then reads until the gateway closes the connection (bounded,
/// as a hang guard); returns what came back.
pub async fn exchange<IO>(mut io: IO, bytes: &[u8]) -> String
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    // A TLS stream may end without close_notify: what was read before counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut answer))
        .await
        .expect("the gateway left the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}
