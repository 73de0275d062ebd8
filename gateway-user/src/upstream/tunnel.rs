//! Tunnels through an upstream proxy: TCP to the proxy (TLS too, for an `https://` proxy,
//! verified against the upstream roots), then `CONNECT host:port`, spoken by hyper's
//! HTTP/1 client. What comes back is a byte stream to the destination.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::DialError;
use super::egress::UpstreamProxy;

/// Opens a tunnel to `target` (`host:port`, as the CONNECT names it) through `proxy`,
/// all within `after`.
///
/// # Security
/// The proxy's password goes only into the `Proxy-Authorization` header (marked
/// sensitive); every error names the proxy by its label, never by its URL's secret.
pub(super) async fn open(
    proxy: &UpstreamProxy,
    tls: Option<&Arc<ClientConfig>>,
    target: &str,
    after: Duration,
) -> Result<TokioIo<Upgraded>, DialError> {
    let work = async {
        let tcp = connect_tcp(proxy).await?;
        if !proxy.url.tls {
            return request_tunnel(tcp, proxy, target).await;
        }
        let tls =
            tls.ok_or_else(|| fail(proxy, "no TLS client configuration for an https proxy"))?;
        let name = ServerName::try_from(proxy.url.host.as_str().to_owned())
            .map_err(|_| fail(proxy, "its host is not a TLS server name"))?;
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| {
                fail(
                    proxy,
                    &format!("TLS to the proxy failed: {}", tls_reason(&e)),
                )
            })?;
        request_tunnel(stream, proxy, target).await
    };
    tokio::time::timeout(after, work)
        .await
        .map_err(|_| fail(proxy, &format!("no tunnel to {target} within {after:?}")))?
}

fn fail(proxy: &UpstreamProxy, what: &str) -> DialError {
    DialError::Proxy {
        label: proxy.label.clone(),
        what: what.to_owned(),
    }
}

/// Connects to the proxy's first address that answers.
async fn connect_tcp(proxy: &UpstreamProxy) -> Result<TcpStream, DialError> {
    let authority = proxy.url.authority();
    let addrs: Vec<_> = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| fail(proxy, &format!("cannot resolve {authority}: {e}")))?
        .collect();
    let mut last = format!("{authority} has no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = format!("connection to {addr} refused (is the proxy running?)");
            }
            Err(e) => last = format!("connecting to {addr} failed: {e}"),
        }
    }
    Err(fail(proxy, &last))
}

/// Sends `CONNECT target` over `io` and returns the tunnel once the proxy answers 2xx.
async fn request_tunnel<IO>(
    io: IO,
    proxy: &UpstreamProxy,
    target: &str,
) -> Result<TokioIo<Upgraded>, DialError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail(proxy, &format!("HTTP handshake failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "upstream proxy connection ended");
        }
    });
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(target)
        .header(header::HOST, target);
    if let Some(auth) = proxy.url.basic_auth() {
        let mut value = HeaderValue::from_str(&auth)
            .map_err(|_| fail(proxy, "its user name cannot be sent in a header"))?;
        value.set_sensitive(true);
        request = request.header(header::PROXY_AUTHORIZATION, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| fail(proxy, &format!("{target:?} is not a CONNECT target")))?;
    let response = sender.send_request(request).await.map_err(|e| {
        fail(
            proxy,
            &format!("closed the connection instead of answering CONNECT {target}: {e}"),
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(proxy, &answered(status, target)));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| fail(proxy, &format!("tunnel to {target} failed: {e}")))?;
    Ok(TokioIo::new(upgraded))
}

/// What a refusing proxy said, in words an operator acts on.
fn answered(status: StatusCode, target: &str) -> String {
    let said = format!(
        "answered {} {} to CONNECT {target}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    match status {
        StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
            format!("{said}: its user name or password is wrong or missing")
        }
        StatusCode::FORBIDDEN => format!("{said}: the proxy's rules refuse this destination"),
        _ => said,
    }
}

/// The certificate problem in a failed TLS handshake, when rustls names one.
fn tls_reason(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(cert)) => format!("certificate: {cert}"),
        _ => error.to_string(),
    }
}

/// A connection toward an upstream: a TCP socket dialled directly (`Left`), or a tunnel
/// through an upstream proxy's `CONNECT` (`Right`).
pub type EgressStream = Either<TcpStream, TokioIo<Upgraded>>;
