//! The interception engine: serves one intercepted connection (TLS terminated with a minted
//! leaf, or plain HTTP/1) as an HTTP/1.1 or HTTP/2 server and forwards each request upstream.
//!
//! Per request: checks (SNI = Host, framing), the session's [`RequestPolicy`], hop-by-hop
//! stripping, forwarding over the pooled [`UpstreamClient`] to the original destination, and
//! one audit record ([`Kind::Request`](crate::audit::Kind::Request)) written by a drop
//! guard. Bodies stream both ways; WebSocket upgrades become a byte copy.
//!
//! The connection-level audit record belongs to the caller, which adds the returned
//! [`ConnSummary`] to it.

mod body;
mod checks;
mod forward;
mod framing;
mod response;
mod serve;
mod upgrade;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};

use crate::audit::{AuditLog, Who};
use crate::tls::{LeafError, ServerConfigCache, TlsConfigError};
use crate::upstream::UpstreamClient;

pub use serve::{forward_absolute, intercept_http, intercept_tls, reject_tls};

/// Everything the engine needs, shared by all intercepted connections.
#[derive(Debug)]
pub struct InterceptContext {
    /// Leaves and the shared server configurations.
    pub tls: Arc<ServerConfigCache>,
    /// The pooled upstream client.
    pub upstream: UpstreamClient,
    /// Where request records go.
    pub audit: AuditLog,
    /// The per-request hook (sessions and credentials plug in here).
    pub policy: Arc<dyn RequestPolicy>,
}

/// The per-request decision hook.
pub trait RequestPolicy: Send + Sync + Debug {
    /// May refuse a request (answered with the refusal's status and its reason in the body).
    /// The default allows everything.
    ///
    /// # Security
    /// Runs after the SNI/Host and framing checks and before anything reaches the upstream.
    fn check(&self, req: &RequestFacts<'_>) -> Result<(), Refusal> {
        let _ = req;
        Ok(())
    }
}

/// A [`RequestPolicy`] that allows every request (for tests and policy-less setups).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl RequestPolicy for AllowAll {}

/// What a [`RequestPolicy`] sees of a request.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// Who made the connection, when known.
    pub who: Option<&'a Who>,
    /// The original destination (where the request will be sent).
    pub dest: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The host (lowercase, no port, no brackets); equals the SNI on TLS connections.
    pub host: &'a str,
    /// The port from the authority, or the scheme's default.
    pub port: u16,
    /// The method.
    pub method: &'a Method,
    /// Path and query as sent.
    pub path_and_query: &'a str,
    /// Request headers (hop-by-hop ones already removed).
    ///
    /// # Security
    /// May hold credentials (Authorization, Cookie): never log values.
    pub headers: &'a HeaderMap,
}

/// A refusal by a [`RequestPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status sent to the sandbox (403 normally).
    pub status: StatusCode,
    /// Why, in words the agent can act on (sent in the body and written to the audit log).
    pub reason: String,
}

impl Refusal {
    /// A 403 refusal with `reason`.
    pub fn forbidden(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

/// What happened on an intercepted connection, for the caller's connection record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnSummary {
    /// Requests answered (forwarded or refused).
    pub requests: u64,
    /// Body bytes from the sandbox to upstreams (WebSocket bytes included).
    pub bytes_up: u64,
    /// Body bytes from upstreams to the sandbox (WebSocket bytes included).
    pub bytes_down: u64,
    /// `h2` or `http/1.1`: what the sandbox spoke.
    pub protocol: String,
    /// Set when the HTTP connection with the sandbox ended with an error (a reset, a
    /// protocol violation); requests already answered are audited regardless.
    pub error: Option<String>,
}

/// Errors of an intercepted connection (request-level failures are answered and audited
/// per request, not returned here).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterceptError {
    /// The host cannot be put in a certificate.
    #[error("intercept: {0}")]
    Host(#[from] LeafError),
    /// No server configuration (leaf minting failed; gateway side).
    #[error("intercept: {0}")]
    Tls(#[from] TlsConfigError),
    /// The sandbox's TLS handshake failed.
    #[error(
        "downstream: TLS handshake for {host} failed: {source}; does the sandbox trust the Sluice CA (see `sluice env`)?"
    )]
    Handshake {
        /// The host the leaf was for.
        host: String,
        /// The error.
        source: std::io::Error,
    },
    /// The sandbox did not finish the TLS handshake in time.
    #[error("downstream: TLS handshake for {host} timed out")]
    HandshakeTimeout {
        /// The host the leaf was for.
        host: String,
    },
    /// The HTTP connection with the sandbox failed (protocol error, reset...).
    #[error("downstream: HTTP connection error: {0}")]
    Http(String),
}
