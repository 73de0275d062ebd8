//! An in-process interception engine in the lab's node namespace: a listener that peeks the
//! ClientHello (as the daemon's detector will), then calls `sluice::intercept`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use sluice::audit::AuditLog;
use sluice::intercept::{
    AllowAll, ConnSummary, InterceptContext, intercept_http, intercept_tls, reject_tls,
};
use sluice::tls::{CertificateAuthority, LeafMinter, ServerConfigCache};
use sluice::upstream::{UpstreamClient, UpstreamSettings};
use tests::netlab::NetnsThread;
use tests::{NetLab, TestCa, addrs};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// What the engine does with every accepted connection.
#[derive(Clone, Debug)]
pub enum Mode {
    /// TLS interception (host and ALPN from the peeked ClientHello).
    Tls,
    /// `reject_tls` with this reason.
    Reject(String),
    /// Plain HTTP interception.
    Http,
}

/// A running engine; stops on drop.
pub struct Engine {
    pub addr: SocketAddr,
    pub sluice_ca_pem: PathBuf,
    pub sluice_ca_der: CertificateDer<'static>,
    audit_path: PathBuf,
    summaries: Arc<Mutex<Vec<Result<ConnSummary, String>>>>,
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
        let summaries = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let audit_file = audit_path.clone();
        let results = summaries.clone();
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
                    let ctx = Arc::new(InterceptContext {
                        tls: Arc::new(ServerConfigCache::new(Arc::new(minter)).expect("tls")),
                        upstream: UpstreamClient::new(settings).expect("upstream client"),
                        audit,
                        policy: Arc::new(AllowAll),
                    });
                    let listener =
                        tokio::net::TcpListener::bind(SocketAddr::new(addrs::NODE_V4.into(), 0))
                            .await
                            .expect("bind");
                    addr_tx
                        .send(listener.local_addr().expect("addr"))
                        .expect("send addr");
                    loop {
                        let (stream, _) = tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => accepted.expect("accept"),
                        };
                        let _ = stream.set_nodelay(true);
                        let (ctx, mode, results) = (ctx.clone(), mode.clone(), results.clone());
                        tokio::spawn(async move {
                            let result = handle(stream, dest, mode, ctx).await;
                            results.lock().expect("lock").push(result);
                        });
                    }
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
            summaries,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Waits until at least `n` connections have ended, and returns their summaries.
    pub fn wait_summaries(&self, n: usize) -> Vec<Result<ConnSummary, String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let summaries = self.summaries.lock().expect("lock").clone();
            if summaries.len() >= n || Instant::now() > deadline {
                return summaries;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `n` audit records are written, and returns them all.
    pub fn wait_audit(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
            let records: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
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

async fn handle(
    stream: TcpStream,
    dest: SocketAddr,
    mode: Mode,
    ctx: Arc<InterceptContext>,
) -> Result<ConnSummary, String> {
    if let Mode::Http = mode {
        return intercept_http(stream, dest, None, ctx)
            .await
            .map_err(|e| e.to_string());
    }
    let (io, sni, alpn) = peek_hello(stream).await.map_err(|e| e.to_string())?;
    let host = sni.ok_or("no SNI")?;
    match mode {
        Mode::Reject(reason) => reject_tls(io, &host, &alpn, &reason, ctx)
            .await
            .map(|()| ConnSummary::default())
            .map_err(|e| e.to_string()),
        _ => intercept_tls(io, &host, &alpn, dest, None, ctx)
            .await
            .map_err(|e| e.to_string()),
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
