//! The interception engine: serves one intercepted connection (TLS terminated with a minted
//! leaf, or plain HTTP/1) as an HTTP/1.1 or HTTP/2 server and forwards each request upstream.
//!
//! Per request: checks (SNI = Host, framing), the session's [`RequestPolicy`], hop-by-hop
//! stripping, forwarding over the pooled [`UpstreamClient`] to the original destination, and
//! one audit record ([`Kind::Request`](crate::audit::Kind::Request)) written by a drop
//! guard. Bodies stream both ways; WebSocket upgrades become a byte copy, or a message relay
//! that scrubs what the upstream sends when the request has a response filter.
//!
//! The connection-level audit record belongs to the caller, which adds the returned
//! [`ConnSummary`] to it.

mod body;
mod checks;
mod decode;
mod filtered;
mod forward;
mod framing;
mod hook;
mod park;
mod relay;
mod respond;
mod response;
mod serve;
mod state;
mod upgrade;

use std::fmt::Debug;
use std::sync::Arc;

use crate::audit::{AuditLog, Side, Sided};
use crate::tls::{LeafError, ServerConfigCache, TlsConfigError};
use crate::upstream::UpstreamClient;

pub use hook::{
    AllowAll, BodyFilter, HookFuture, Notes, Plan, Refusal, RequestInfo, RequestPolicy,
    ResponseFilter, SharedNotes, notes,
};
pub use serve::{forward_absolute, intercept_http, intercept_tls, reject_tls};
pub use state::Upgrades;

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
    /// The sandbox's client refused Sluice's certificate: it does not trust the CA, or it
    /// pins its server's.
    #[error(
        "downstream: the client refused Sluice's certificate for {host} ({alert}): it does not \
         trust the Sluice CA (`sluice exec` lays it in the trust store; elsewhere see `sluice \
         env`), or it pins its server's certificate (`sluice policy suggest` proposes a \
         passthrough entry)"
    )]
    TrustRefused {
        /// The host the leaf was for.
        host: String,
        /// The alert it sent (`unknown_ca`, `bad_certificate`, …), or `closed`.
        alert: &'static str,
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

impl Sided for InterceptError {
    fn side(&self) -> Side {
        match self {
            InterceptError::Host(_) | InterceptError::Tls(_) => Side::Gateway,
            InterceptError::Handshake { .. }
            | InterceptError::TrustRefused { .. }
            | InterceptError::HandshakeTimeout { .. }
            | InterceptError::Http(_) => Side::Downstream,
        }
    }
}
