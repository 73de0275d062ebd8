//! The connector under the pooled client: dials one fixed address along the connection's
//! egress, then (for `https`) does TLS with SNI and verification for the request's host.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ConnectError, Egress, EgressStream};
use crate::host::Host;

/// Dials `dest` whatever host the URI names; the URI only gives the scheme and TLS name.
///
/// # Security
/// The address dialled is the one the caller checked (the original destination), never a
/// resolution of a name the sandbox supplied; the [`super::Dialer`] checks it again.
#[derive(Clone, Debug)]
pub(super) struct DestConnector {
    pub(super) dest: SocketAddr,
    pub(super) egress: Egress,
    pub(super) dialer: super::Dialer,
    pub(super) tls: Arc<ClientConfig>,
    pub(super) handshake_timeout: Duration,
}

impl tower_service::Service<Uri> for DestConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}

impl DestConnector {
    async fn connect(self, uri: Uri) -> Result<UpstreamStream, ConnectError> {
        let dest = self.dest;
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or_default()
            .to_owned();
        let name = Host::parse(&host).ok();
        let dialed = self.dialer.dial(dest, name.as_ref(), &self.egress).await?;
        let via = dialed
            .via
            .map(|proxy| ViaProxy(proxy.label.as_str().into()));
        let tcp = dialed.stream;
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return Ok(UpstreamStream::Plain(tcp, via));
        }
        let name = ServerName::try_from(host.clone())
            .map_err(|_| ConnectError::BadName { host: host.clone() })?;
        let handshake = TlsConnector::from(self.tls).connect(name, tcp);
        let tls = tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .map_err(|_| ConnectError::TlsTimeout {
                host: host.clone(),
                dest,
            })?
            .map_err(|source| tls_error(&host, dest, source))?;
        Ok(UpstreamStream::Tls(Box::new(tls), via))
    }
}

/// Turns a failed handshake into a certificate error when rustls says so.
fn tls_error(host: &str, dest: SocketAddr, source: io::Error) -> ConnectError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => ConnectError::Certificate {
            host: host.to_owned(),
            reason: cert.to_string(),
        },
        _ => ConnectError::Tls {
            host: host.to_owned(),
            dest,
            source: Arc::new(source),
        },
    }
}

/// The label of the upstream proxy a response came through, in its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViaProxy(pub Arc<str>);

/// A connection to an upstream: plain TCP or TLS over TCP, directly or through a proxy
/// (its label).
#[derive(Debug)]
pub enum UpstreamStream {
    /// `http`.
    Plain(EgressStream, Option<ViaProxy>),
    /// `https`.
    Tls(Box<TlsStream<EgressStream>>, Option<ViaProxy>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        let (connected, via) = match self {
            UpstreamStream::Plain(_, via) => (Connected::new(), via),
            UpstreamStream::Tls(tls, via) => {
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    (Connected::new().negotiated_h2(), via)
                } else {
                    (Connected::new(), via)
                }
            }
        };
        match via {
            Some(via) => connected.extra(via.clone()),
            None => connected,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s, _) => s.is_write_vectored(),
            UpstreamStream::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s, _) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
