//! In-process clients in the node namespace: TLS trusting only Sluice's CA, then hyper
//! HTTP/1.1 or HTTP/2.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tests::NetLab;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::harness::Engine;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub const HOST: &str = "api.example.test";

/// A full body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed_unsync()
}

/// TLS to the engine with SNI `sni`, offering `alpn`, trusting only Sluice's CA.
pub async fn tls(lab: &NetLab, engine: &Engine, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = lab.connect_from_node(engine.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let roots = sluice::tls::root_store_with(&engine.sluice_ca_der).expect("roots");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake with a leaf from Sluice's CA")
}

/// An HTTP client connection to the engine.
pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Client {
    /// Connects over TLS (SNI [`HOST`]) and speaks h2 or HTTP/1.1 per ALPN.
    pub async fn connect(lab: &NetLab, engine: &Engine, h2: bool) -> Client {
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let stream = tls(lab, engine, HOST, &[alpn]).await;
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(alpn),
            "ALPN mirrored"
        );
        Self::over(TokioIo::new(stream), h2).await
    }

    /// TLS straight to an upstream (no Sluice), trusting `ca`: the baseline to compare with.
    pub async fn direct(
        lab: &NetLab,
        addr: std::net::SocketAddr,
        ca: &tests::TestCa,
        h2: bool,
    ) -> Client {
        let tcp = lab.connect_from_node(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let config = ca.client_config(&[alpn]).expect("client config");
        let name = ServerName::try_from(HOST.to_owned()).expect("name");
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("tls");
        Self::over(TokioIo::new(stream), h2).await
    }

    /// Plain HTTP/1.1 to the engine.
    pub async fn plain(lab: &NetLab, engine: &Engine) -> Client {
        let tcp = lab.connect_from_node(engine.addr).await.expect("connect");
        Self::over(TokioIo::new(tcp), false).await
    }

    async fn over<IO>(io: TokioIo<IO>, h2: bool) -> Client
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Client::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("h1 handshake");
            tokio::spawn(conn.with_upgrades());
            Client::H1(sender)
        }
    }

    /// Sends `request` (relative URI; Host set here for HTTP/1.1, authority for h2).
    pub async fn send(&mut self, mut request: Request<Body>) -> Response<Incoming> {
        let sent = match self {
            Client::H1(sender) => {
                sender.ready().await.expect("ready");
                if !request.headers().contains_key(http::header::HOST) {
                    request
                        .headers_mut()
                        .insert(http::header::HOST, HOST.parse().expect("host"));
                }
                sender.send_request(request).await
            }
            Client::H2(sender) => {
                sender.ready().await.expect("ready");
                if request.uri().authority().is_none() {
                    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                    *request.uri_mut() = format!("https://{HOST}{path}").parse().expect("uri");
                }
                *request.version_mut() = http::Version::HTTP_2;
                sender.send_request(request).await
            }
        };
        sent.expect("response")
    }
}

/// Collects a response body as text.
pub async fn text(response: Response<Incoming>) -> String {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}
