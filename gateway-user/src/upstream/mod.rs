//! The upstream client: pooled HTTP/1.1 and HTTP/2 to the original destination, with TLS
//! verified for the request's host.
//!
//! - Every connection goes to the address the caller passes (the original destination in
//!   transparent mode, the resolved CONNECT target in proxy mode), never to a resolution of
//!   the sandbox-supplied name.
//! - TLS: SNI is the request's host; the certificate must verify for that host against the
//!   configured roots (the node's trust store and webpki by default) plus `extra_roots`.
//!   ALPN mirrors the sandbox's connection ([`Offer`]): `h2` and `http/1.1` when the sandbox
//!   speaks HTTP/2 (h2 is used when the upstream offers it), `http/1.1` alone when it speaks
//!   HTTP/1.1 (each request in flight then has an upstream connection of its own, as the
//!   sandbox's own client would have had) and for WebSocket upgrades.
//! - Connections are pooled per (destination address, egress, offer, authority, worker
//!   thread — see [`crate::workers`]): one hyper-util client each, at most
//!   [`UpstreamSettings::pooled_hosts`] of them in all, the least recently used dropped first
//!   (with its idle connections). So a sandbox that reaches ever
//!   new names holds a bounded number of idle upstream connections, not one per name.
//! - Egress: directly, or through the connection's upstream proxy (a `CONNECT` tunnel, for
//!   `http` too); see [`egress`].

mod connect;
mod dial;
pub mod egress;
mod roots;
mod tunnel;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lru::LruCache;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;

use connect::DestConnector;
pub use connect::{UpstreamStream, ViaProxy};
pub use dial::{DialError, Dialed, Dialer, check_destination};
pub use egress::{Egress, NodeProxies, UpstreamProxy};
pub use roots::{RootCounts, Roots, client_configs};
pub use tunnel::EgressStream;

/// Error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of requests sent upstream (streamed, never buffered).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Default of [`UpstreamSettings::pooled_hosts`].
pub const DEFAULT_POOLED_HOSTS: usize = 512;
/// Idle pooled connections kept per pool (destination, egress, offer, authority, worker).
const MAX_IDLE_PER_HOST: usize = 32;

/// What an upstream connection offers in ALPN, mirroring the sandbox's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offer {
    /// `h2` and `http/1.1`: the sandbox speaks HTTP/2, and its requests may share one
    /// multiplexed upstream connection.
    Http2,
    /// `http/1.1` alone: the sandbox speaks HTTP/1.1. Not multiplexing its connections onto
    /// one upstream connection keeps them as parallel as the sandbox made them (and avoids
    /// a hop through one shared connection's task per request).
    Http1,
    /// `http/1.1` alone, for one upgraded exchange (WebSocket): never pooled.
    Upgrade,
}

/// Settings of the upstream client.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Limit on the TLS handshake (the TCP connect is the [`Dialer`]'s). Default is 10 s.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response head after the request was sent. Default is 300 s.
    pub response_timeout: Duration,
    /// Idle pooled connections close after this. Default is 90 s.
    pub pool_idle_timeout: Duration,
    /// Most pools (destination, egress, offer, authority, worker) kept at once, in all; the
    /// least recently used is dropped with its idle connections (connections in use stay
    /// open). Default is [`DEFAULT_POOLED_HOSTS`].
    pub pooled_hosts: usize,
    /// The built-in root sets trusted. Default is the node's trust store plus webpki.
    pub roots: Roots,
    /// PEM files of extra trusted roots. Default is none.
    pub extra_roots: Vec<PathBuf>,
    /// Sluice's own CA, never trusted as an upstream root. Default is none.
    pub own_ca: Option<CertificateDer<'static>>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(300),
            pool_idle_timeout: Duration::from_secs(90),
            pooled_hosts: DEFAULT_POOLED_HOSTS,
            roots: Roots::default(),
            extra_roots: Vec::new(),
            own_ca: None,
        }
    }
}

/// Why the upstream connection could not be made (cloneable: it travels through hyper's
/// error chain and is read back from there).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection could not be made (or the destination is refused).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The host cannot be a TLS server name.
    #[error("upstream: {host:?} is not a valid TLS server name")]
    BadName {
        /// The host.
        host: String,
    },
    /// The upstream's certificate did not verify for the host.
    #[error("upstream certificate for {host} is not valid: {reason}")]
    Certificate {
        /// The host the certificate had to be valid for.
        host: String,
        /// rustls's verdict (unknown issuer, wrong name, expired...).
        reason: String,
    },
    /// The TLS handshake did not finish in time.
    #[error("upstream: TLS handshake with {host} at {dest} timed out")]
    TlsTimeout {
        /// The host.
        host: String,
        /// The address dialled.
        dest: SocketAddr,
    },
    /// Another TLS failure (protocol alert, closed connection...).
    #[error("upstream: TLS handshake with {host} at {dest} failed: {source}")]
    Tls {
        /// The host.
        host: String,
        /// The address dialled.
        dest: SocketAddr,
        /// The error.
        source: Arc<std::io::Error>,
    },
}

/// Errors of the upstream client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The connection could not be made.
    #[error(transparent)]
    Connect(ConnectError),
    /// The upstream accepted the request but sent no response head in time.
    #[error("upstream: no response within {after:?}")]
    ResponseTimeout {
        /// The limit.
        after: Duration,
    },
    /// The exchange failed after connecting (reset, protocol error...).
    #[error("upstream: request failed: {0}")]
    Request(String),
    /// An extra root file could not be read or holds no usable certificate.
    #[error("upstream: extra root {path}: {reason}; fix or remove it in the configuration")]
    Roots {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The configured root sets hold no certificate (an empty trust store and no
    /// `extra_roots`): every upstream would fail.
    #[error(
        "upstream: roots = {roots:?} trusts no certificate; install the node's CA bundle, \
         add extra_roots, or include webpki"
    )]
    NoRoots {
        /// The configured sets.
        roots: Roots,
    },
    /// rustls refused the client configuration (gateway side).
    #[error("upstream: building the TLS client configuration failed: {0}")]
    Config(#[source] rustls::Error),
}

impl crate::audit::Sided for UpstreamError {
    /// The dialer says for a dial (a refused destination is the policy's); the gateway's
    /// own trust configuration is the gateway's; the rest is the upstream's.
    fn side(&self) -> crate::audit::Side {
        use crate::audit::Side;
        match self {
            UpstreamError::Connect(ConnectError::Dial(dial)) => dial.side(),
            UpstreamError::Roots { .. }
            | UpstreamError::NoRoots { .. }
            | UpstreamError::Config(_) => Side::Gateway,
            UpstreamError::Connect(_)
            | UpstreamError::ResponseTimeout { .. }
            | UpstreamError::Request(_) => Side::Upstream,
        }
    }
}

impl UpstreamError {
    /// The label of the upstream proxy that failed, when one did.
    pub fn proxy_label(&self) -> Option<&str> {
        match self {
            UpstreamError::Connect(ConnectError::Dial(dial)) => dial.proxy_label(),
            _ => None,
        }
    }

    /// The status to answer the sandbox with: 403 for a refused destination, 504 for
    /// timeouts, 502 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Connect(ConnectError::Dial(
                DialError::Internal { .. } | DialError::InternalName { .. },
            )) => StatusCode::FORBIDDEN,
            UpstreamError::ResponseTimeout { .. }
            | UpstreamError::Connect(
                ConnectError::Dial(DialError::Timeout { .. }) | ConnectError::TlsTimeout { .. },
            ) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// One pooled client per destination, egress (proxy id or `direct`), ALPN offer, authority
/// and worker thread (see [`crate::workers`]: a connection's driver runs on the worker that
/// opened it, so requests only use the connections of their own worker).
type PoolKey = (SocketAddr, String, Offer, String, Option<usize>);

/// The shared upstream client; cheap to clone.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// ALPN `h2`, `http/1.1`.
    tls: Arc<ClientConfig>,
    /// ALPN `http/1.1` only.
    tls_h1: Arc<ClientConfig>,
    settings: UpstreamSettings,
    dialer: Dialer,
    clients: Mutex<LruCache<PoolKey, Client<DestConnector, Body>>>,
}

impl UpstreamClient {
    /// A client trusting `settings.roots` plus `settings.extra_roots`, connecting through
    /// `dialer`. The TLS configurations are built once here.
    pub fn new(
        settings: UpstreamSettings,
        dialer: Dialer,
    ) -> Result<UpstreamClient, UpstreamError> {
        let (tls, tls_h1, _) = client_configs(
            settings.roots,
            &settings.extra_roots,
            settings.own_ca.as_ref(),
        )?;
        Ok(UpstreamClient::with_tls(settings, dialer, tls, tls_h1))
    }

    /// A client using the TLS configurations [`client_configs`] built (`tls` offering `h2`
    /// and `http/1.1`, `tls_h1` only `http/1.1`); `settings`' root fields are not read.
    pub fn with_tls(
        settings: UpstreamSettings,
        dialer: Dialer,
        tls: Arc<ClientConfig>,
        tls_h1: Arc<ClientConfig>,
    ) -> UpstreamClient {
        let pooled_hosts = NonZeroUsize::new(settings.pooled_hosts).unwrap_or(NonZeroUsize::MIN);
        UpstreamClient {
            inner: Arc::new(Inner {
                tls,
                tls_h1,
                settings,
                dialer,
                clients: Mutex::new(LruCache::new(pooled_hosts)),
            }),
        }
    }

    /// Sends `request` (absolute URI: scheme and authority name the upstream; the TLS name
    /// is its host) over a pooled connection to `dest` along `egress`, and returns the
    /// response head with its body streaming. `offer` chooses the connection's ALPN (and
    /// pool).
    pub async fn send(
        &self,
        dest: SocketAddr,
        egress: &Egress,
        request: Request<Body>,
        offer: Offer,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let egress = self.inner.dialer.settle(egress);
        // A refused egress is answered with this request's own reason, never through a pool
        // (a pool keyed "refused" would keep the first session's reason for everyone).
        if let Egress::Refused(why) = &egress {
            return Err(UpstreamError::Connect(ConnectError::Dial(
                DialError::NoEgress(why.clone()),
            )));
        }
        let authority = request
            .uri()
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned());
        let key = (
            dest,
            egress.key().into_owned(),
            offer,
            authority,
            crate::workers::current(),
        );
        let client = self.client_for(key, &egress);
        let after = self.inner.settings.response_timeout;
        match tokio::time::timeout(after, client.request(request)).await {
            Err(_) => Err(UpstreamError::ResponseTimeout { after }),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(classify(&error)),
        }
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.inner.settings
    }

    /// How many pools are kept (a metric).
    pub fn pooled_hosts(&self) -> usize {
        self.lock_clients().len()
    }

    fn lock_clients(
        &self,
    ) -> std::sync::MutexGuard<'_, LruCache<PoolKey, Client<DestConnector, Body>>> {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool for `key`, made most recently used; a new one may push out the least
    /// recently used pool, whose idle connections close when it drops.
    fn client_for(&self, key: PoolKey, egress: &Egress) -> Client<DestConnector, Body> {
        let (dest, offer) = (key.0, key.2);
        let mut clients = self.lock_clients();
        if let Some(client) = clients.get(&key) {
            return client.clone();
        }
        let settings = &self.inner.settings;
        let connector = DestConnector {
            dest,
            egress: egress.clone(),
            dialer: self.inner.dialer.clone(),
            tls: Arc::clone(if offer == Offer::Http2 {
                &self.inner.tls
            } else {
                &self.inner.tls_h1
            }),
            handshake_timeout: settings.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(if offer == Offer::Upgrade {
                0
            } else {
                MAX_IDLE_PER_HOST
            })
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_adaptive_window(true)
            .build(connector);
        // The evicted pool is dropped after the lock is released.
        let _evicted = clients.push(key, client.clone());
        drop(clients);
        client
    }
}

/// Finds our [`ConnectError`] in hyper's error chain, or describes the failure.
fn classify(error: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut chain = Vec::new();
    while let Some(err) = source {
        if let Some(connect) = err.downcast_ref::<ConnectError>() {
            return UpstreamError::Connect(connect.clone());
        }
        chain.push(err.to_string());
        source = err.source();
    }
    UpstreamError::Request(chain.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let dest: SocketAddr = "203.0.113.10:443".parse().unwrap();
        let cases = [
            (
                UpstreamError::Connect(DialError::Refused { dest }.into()),
                StatusCode::BAD_GATEWAY,
            ),
            (
                UpstreamError::Connect(
                    DialError::Timeout {
                        dest,
                        after: Duration::from_secs(1),
                    }
                    .into(),
                ),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                UpstreamError::Connect(
                    DialError::Internal {
                        destination: dest,
                        what: "loopback address".into(),
                    }
                    .into(),
                ),
                StatusCode::FORBIDDEN,
            ),
            (
                UpstreamError::Connect(ConnectError::Certificate {
                    host: "a.test".into(),
                    reason: "x".into(),
                }),
                StatusCode::BAD_GATEWAY,
            ),
            (
                UpstreamError::ResponseTimeout {
                    after: Duration::from_secs(1),
                },
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (UpstreamError::Request("x".into()), StatusCode::BAD_GATEWAY),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }
}
