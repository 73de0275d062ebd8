//! Client connections: TCP (straight, or through an explicit proxy's `CONNECT`), then TLS
//! verified against a given CA, then minimal HTTP/1.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where connections go: straight to `addr`, or through `proxy` (`http://[user:pass@]host:port`).
#[derive(Clone)]
pub struct Target {
    /// The upstream's address (what a captured client dials), or the proxy's when proxied.
    pub addr: SocketAddr,
    /// `host:port` for `CONNECT` when going through an explicit proxy.
    pub connect_to: Option<String>,
    /// `Proxy-Authorization` value, if the proxy URL had credentials.
    pub proxy_auth: Option<String>,
    /// TLS settings (roots = the CA the client trusts).
    pub tls: TlsConnector,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("connect_to", &self.connect_to)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Builds a target for `host:port` at `addr`, optionally through `proxy`, trusting `ca`.
    pub fn new(
        addr: SocketAddr,
        host_port: &str,
        proxy: Option<&str>,
        ca: &Path,
    ) -> anyhow::Result<Target> {
        let tls = connector(ca)?;
        let Some(proxy) = proxy else {
            return Ok(Target {
                addr,
                connect_to: None,
                proxy_auth: None,
                tls,
            });
        };
        let rest = proxy
            .strip_prefix("http://")
            .context("client: proxy must be http://")?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hp)) => (Some(auth), hp),
            None => (None, rest),
        };
        Ok(Target {
            addr: hostport
                .parse()
                .context("client: proxy address must be IP:port")?,
            connect_to: Some(host_port.to_owned()),
            proxy_auth: auth.map(|a| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(a)
                )
            }),
            tls,
        })
    }

    /// A TCP connection to the upstream (tunnelled when proxied) with TCP_NODELAY.
    pub async fn tcp(&self) -> anyhow::Result<TcpStream> {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .context("client: connect")?;
        stream.set_nodelay(true)?;
        if let Some(to) = &self.connect_to {
            let mut req = format!("CONNECT {to} HTTP/1.1\r\nHost: {to}\r\n");
            if let Some(auth) = &self.proxy_auth {
                req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
            }
            req.push_str("\r\n");
            stream.write_all(req.as_bytes()).await?;
            let head = read_head(&mut stream).await?;
            if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")) {
                bail!(
                    "client: CONNECT refused: {}",
                    head.lines().next().unwrap_or("")
                );
            }
        }
        Ok(stream)
    }

    /// TCP (or tunnel) plus a TLS handshake with SNI `sni`, offering ALPN http/1.1.
    pub async fn tls(&self, sni: &str) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp().await?;
        let name = ServerName::try_from(sni.to_owned()).context("client: bad SNI")?;
        self.tls
            .connect(name, tcp)
            .await
            .context("client: TLS handshake")
    }
}

/// One bare TCP connect to `addr`, closed at once with RST (zero linger): neither side keeps
/// the 4-tuple in TIME_WAIT, so a fast loop never runs out of ephemeral ports. The linger is set
/// before the connect, so even a connection the peer closes first ends with RST.
pub async fn connect_rst(addr: SocketAddr) -> std::io::Result<()> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_zero_linger()?;
    let stream = socket.connect(addr).await?;
    drop(stream);
    Ok(())
}

/// A TLS connector trusting only the CA in `ca` (PEM), offering `http/1.1`.
pub fn connector(ca: &Path) -> anyhow::Result<TlsConnector> {
    let pem = std::fs::read(ca).with_context(|| format!("client: read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Sends `GET path` and reads the whole response (content-length bodies); returns the status.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> anyhow::Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-bench\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let head = read_head(stream).await?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("client: no status")?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(status)
}

/// Reads up to the end of an HTTP head (`\r\n\r\n`), byte by byte (heads are small).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> anyhow::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("client: connection closed in the response head");
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            bail!("client: response head over 64 KiB");
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
