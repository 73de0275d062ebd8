//! The assembled data path in-process, in the lab's node namespace: the daemon's transparent
//! listener (accept → identify → detect → route → intercept → audit) with connections
//! identified from a table instead of the kernel's map, all forwarded to one destination.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use sluice::audit::{AuditLog, Who};
use sluice::detect::Limits;
use sluice::drain::Drain;
use sluice::host::Host;
use sluice::intercept::{AllowAll, InterceptContext, reject_tls};
use sluice::live::Live;
use sluice::proxy::{Identity, ProxyContext, TableIdentify, serve_transparent};
use sluice::tls::{CertificateAuthority, LeafMinter, ServerConfigCache};
use sluice::upstream::{Dialer, UpstreamClient, UpstreamSettings};
use tests::netlab::NetnsThread;
use tests::{NetLab, TestCa, addrs};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// What the engine does with every accepted connection.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The daemon's pipeline: TLS or plain HTTP, detected and intercepted.
    Tls,
    /// `reject_tls` with this reason (no pipeline).
    Reject(String),
    /// The daemon's pipeline, for plain HTTP clients.
    Http,
}

/// A running engine; stops on drop.
pub struct Engine {
    pub addr: SocketAddr,
    pub sluice_ca_pem: PathBuf,
    pub sluice_ca_der: CertificateDer<'static>,
    audit_path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<NetnsThread<()>>,
    _dir: tempfile::TempDir,
}

impl Engine {
    /// Starts an engine forwarding every connection to `dest`, trusting `upstream_ca` for
    /// upstream TLS (besides webpki roots).
    pub fn start(lab: &NetLab, upstream_ca: &TestCa, dest: SocketAddr, mode: Mode) -> Engine {
        Self::start_with(lab, upstream_ca, dest, mode, Duration::from_secs(3))
    }

    pub fn start_with(
        lab: &NetLab,
        upstream_ca: &TestCa,
        dest: SocketAddr,
        mode: Mode,
        connect_timeout: Duration,
    ) -> Engine {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_create(dir.path(), time::OffsetDateTime::now_utc())
            .expect("sluice CA");
        let sluice_ca_der = ca.cert_der().clone();
        let sluice_ca_pem = dir.path().join("sluice-ca.pem");
        std::fs::write(&sluice_ca_pem, ca.cert_pem()).expect("write CA");
        let upstream_pem = upstream_ca
            .write_pem(dir.path(), "upstream-ca.pem")
            .expect("upstream CA pem");
        let audit_path = dir.path().join("audit.jsonl");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let audit_file = audit_path.clone();
        let thread = lab
            .spawn_in_node("sl-engine", move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let (audit, _writer) = AuditLog::open(&audit_file).expect("audit");
                    let minter = LeafMinter::new(Arc::new(ca)).expect("minter");
                    let settings = UpstreamSettings {
                        connect_timeout,
                        extra_roots: vec![upstream_pem],
                        ..UpstreamSettings::default()
                    };
                    let live = Live::default().into_store();
                    let dialer = Dialer::new(connect_timeout, live.clone());
                    let ctx = Arc::new(InterceptContext {
                        tls: Arc::new(ServerConfigCache::new(Arc::new(minter)).expect("tls")),
                        upstream: UpstreamClient::new(settings, dialer.clone())
                            .expect("upstream client"),
                        audit: audit.clone(),
                        policy: Arc::new(AllowAll),
                    });
                    let listener =
                        tokio::net::TcpListener::bind(SocketAddr::new(addrs::NODE_V4.into(), 0))
                            .await
                            .expect("bind");
                    addr_tx
                        .send(listener.local_addr().expect("addr"))
                        .expect("send addr");
                    let drain = Drain::new();
                    match mode {
                        Mode::Reject(reason) => {
                            drain.spawn(reject_all(listener, reason, ctx, drain.clone()));
                        }
                        Mode::Tls | Mode::Http => {
                            let identity = Identity {
                                who: Who {
                                    sandbox: 1,
                                    ..Who::default()
                                },
                                destination: dest,
                                proxy: None,
                            };
                            let proxy = Arc::new(ProxyContext {
                                identify: Arc::new(TableIdentify::every(identity)),
                                audit,
                                dialer,
                                live,
                                max_connections: 1024,
                                detect_limits: Limits::default(),
                                intercept: ctx,
                                resolver: sluice::dns::Resolver::static_only(Default::default()),
                                trust_failures: Arc::default(),
                                workers: None,
                            });
                            drain.spawn(serve_transparent(listener, proxy, drain.clone()));
                        }
                    }
                    let _ = (&mut stopped).await;
                    drain.shutdown(Duration::from_secs(1)).await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("engine thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("engine address");
        Engine {
            addr,
            sluice_ca_pem,
            sluice_ca_der,
            audit_path,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Waits until at least `n` connections have ended, and returns their records.
    pub fn wait_connections(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_records("connection", n)
    }

    /// Waits until at least `n` request records are written, and returns them all.
    pub fn wait_audit(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_records("request", n)
    }

    fn wait_records(&self, kind: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
            let records: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
                .filter(|r| r["kind"] == kind)
                .collect();
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers every connection with `reject_tls` (host and ALPN from its ClientHello).
async fn reject_all(
    listener: tokio::net::TcpListener,
    reason: String,
    ctx: Arc<InterceptContext>,
    drain: Drain,
) {
    let stopping = drain.stopping();
    tokio::pin!(stopping);
    loop {
        let stream = tokio::select! {
            () = &mut stopping => return,
            accepted = listener.accept() => accepted.expect("accept").0,
        };
        let (reason, ctx) = (reason.clone(), ctx.clone());
        drain.spawn(async move {
            let Ok((io, Some(sni), alpn)) = peek_hello(stream).await else {
                return;
            };
            let host = Host::parse(&sni).expect("SNI is a host");
            let _ = reject_tls(io, &host, &alpn, &reason, ctx).await;
        });
    }
}

/// Reads the ClientHello (SNI, ALPN) and returns a stream that replays it.
async fn peek_hello(
    mut stream: TcpStream,
) -> std::io::Result<(
    impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Option<String>,
    Vec<Vec<u8>>,
)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        acceptor.read_tls(&mut &buf[..n])?;
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let sni = hello.server_name().map(str::to_owned);
                let alpn = hello
                    .alpn()
                    .map(|a| a.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                let (read, write) = stream.into_split();
                let replay = std::io::Cursor::new(seen).chain(read);
                return Ok((tokio::io::join(replay, write), sni, alpn));
            }
            Err((error, _)) => return Err(std::io::Error::other(error)),
        }
    }
}
