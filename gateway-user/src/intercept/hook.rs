//! The per-request hook the session layer plugs into: decide, rewrite the head (credential
//! injection), and filter the request body (PII, placeholders) and the response (scrubbing).

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, StatusCode};

use crate::audit::{Record, Side, Sided, Who};
use crate::host::Host;
use crate::policy::CompiledPolicy;
use crate::session::Unusable;
use crate::upstream::egress::{EgressError, Level};

/// A boxed future, so the hook stays object safe.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The per-request decision hook.
pub trait RequestPolicy: Send + Sync + Debug {
    /// Decides on a request. It may rewrite the head (`parts`: the URI's query, headers),
    /// and returns the filters its body and response go through. The default allows
    /// everything unchanged.
    ///
    /// # Security
    /// Runs after the SNI/Host and framing checks and before anything reaches the upstream;
    /// `parts.headers` may hold credentials (never log values). A refusal is answered with
    /// its status and reason, and nothing is sent upstream.
    fn check<'a>(
        &'a self,
        req: RequestInfo,
        parts: &'a mut Parts,
    ) -> HookFuture<'a, Result<Plan, Refusal>> {
        let _ = (req, parts);
        Box::pin(async { Ok(Plan::default()) })
    }

    /// The policy a connection of `who` is routed by, given `node`, the node's rules: the
    /// session's policy layered over them; an error says why the session cannot be used,
    /// and which side is to blame (the connection is then only intercepted, each request
    /// refused). The default is `node` itself.
    fn connection<'a>(
        &'a self,
        who: &'a Who,
        node: &'a Arc<CompiledPolicy>,
    ) -> HookFuture<'a, Result<Arc<CompiledPolicy>, Unusable>> {
        let _ = who;
        Box::pin(async move { Ok(node.clone()) })
    }

    /// What the session of `who` says about its upstream proxy (its URL's password
    /// opened). The default says nothing.
    ///
    /// # Security
    /// An error refuses the connection: a proxy that was asked for is never skipped.
    fn session_proxy<'a>(&'a self, who: &'a Who) -> HookFuture<'a, Result<Level, EgressError>> {
        let _ = who;
        Box::pin(async { Ok(Level::Inherit) })
    }
}

/// A [`RequestPolicy`] that allows every request (for tests and policy-less setups).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl RequestPolicy for AllowAll {}

/// What a [`RequestPolicy`] knows of a request besides its head.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Who made the connection, when known.
    pub who: Option<Who>,
    /// The original destination (where the request will be sent).
    pub dest: SocketAddr,
    /// `https` or `http`. `https` means the request goes upstream over TLS whose certificate
    /// is verified for `host`; `http` means plain HTTP to `dest`, which the sandbox chose.
    pub scheme: &'static str,
    /// The host; equals the SNI on TLS connections, whose upstream certificate must verify
    /// for it.
    pub host: Host,
    /// The port from the authority, or the scheme's default.
    pub port: u16,
    /// The node's rules of the connection (its session's policy is layered over them).
    pub node: Arc<CompiledPolicy>,
}

/// Where a request body's refusal is left for the request handler to answer: a filter's
/// (the body is refused), or the sandbox's own body breaking off (malformed chunking, a
/// reset). The body then ends with an error, which reaches the handler as the upstream
/// client's; the slot says whose it really is.
pub(crate) type RefusalSlot = Arc<Mutex<Option<Refusal>>>;

/// Leaves `refusal` in `slot` unless one is there already (the first cause is the one the
/// sandbox is told).
pub(crate) fn leave_refusal(slot: &RefusalSlot, refusal: Refusal) {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(refusal);
}

/// Takes the refusal left in `slot`, if any.
pub(crate) fn take_refusal(slot: &RefusalSlot) -> Option<Refusal> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// What happens to an allowed request's body and response.
#[derive(Debug, Default)]
pub struct Plan {
    /// Filters the request body on its way upstream.
    pub body: Option<Box<dyn BodyFilter>>,
    /// Filters the response on its way to the sandbox.
    pub response: Option<Box<dyn ResponseFilter>>,
    /// Facts for the request's audit record, filled in as the request goes.
    pub notes: SharedNotes,
}

/// A streaming filter over a request body (PII scanning, placeholder swapping).
///
/// # Security
/// A refusal mid-body aborts the upstream request; bytes not yet released are never sent.
pub trait BodyFilter: Send + Debug {
    /// Takes the next chunk; returns what may be sent now.
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Refusal>;
    /// The body ended; returns what is still held back.
    fn finish(&mut self) -> Result<Bytes, Refusal>;
}

/// A filter over a response (scrubbing real secrets back to placeholders).
///
/// # Security
/// The engine hands it the body decoded: a `Content-Encoding` it can decode (gzip, deflate,
/// br, zstd) is removed and the body sent on identity-encoded; any other, several stacked,
/// or a stream that does not decode is refused (502, or the body aborted if its head was
/// already sent), so no byte a filter could not read reaches the sandbox.
pub trait ResponseFilter: Send + Debug {
    /// Rewrites response header values.
    fn headers(&mut self, headers: &mut HeaderMap);
    /// Takes the next body chunk; returns what may be sent now.
    fn push(&mut self, chunk: &[u8]) -> Bytes;
    /// The body ended; returns what is still held back.
    fn finish(&mut self) -> Bytes;
    /// Rewrites trailer values (sent after the body, HTTP/2 and chunked HTTP/1.1).
    fn trailers(&mut self, trailers: &mut HeaderMap);
    /// Rewrites one whole WebSocket message from the upstream (a text or binary message, or
    /// the payload of a ping, pong or close frame); returns what the sandbox gets instead.
    ///
    /// # Security
    /// Called on complete messages only (the relay bounds their size and never negotiates
    /// compression), so a value cannot straddle two calls. There is no default: a filter
    /// that forgot WebSockets would otherwise pass messages unscrubbed.
    fn message(&mut self, message: &[u8]) -> Bytes;
}

/// A refusal by a [`RequestPolicy`] or one of its filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status sent to the sandbox (403 normally, 429 for rate limits).
    pub status: StatusCode,
    /// Which side refused or failed (written to the audit record).
    pub side: Side,
    /// Why, in words the agent can act on (sent in the body and written to the audit log).
    pub reason: String,
    /// For 429 and 503: when to try again (sent as `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// A 403 refusal by a rule, with `reason`.
    pub fn forbidden(reason: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::FORBIDDEN, Side::Policy, reason)
    }

    /// A refusal with `status`, blaming `side`, for `reason`.
    pub fn new(status: StatusCode, side: Side, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            side,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Sided for Refusal {
    fn side(&self) -> Side {
        self.side
    }
}

/// Audit facts a request gathers on its way (shared by the hook and its filters).
pub type SharedNotes = Arc<Mutex<Notes>>;

/// Audit facts of one request beyond what the engine knows.
///
/// # Security
/// Names and counts only: never a credential value or matched PII text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Credentials swapped in (names).
    pub credentials: Vec<String>,
    /// PII findings by type.
    pub pii: std::collections::BTreeMap<String, u32>,
    /// A refusal not enforced (policy in audit mode).
    pub would_refuse: Option<String>,
}

impl Notes {
    /// Adds a credential name once.
    pub fn injected(&mut self, name: &str) {
        if !self.credentials.iter().any(|n| n == name) {
            self.credentials.push(name.to_owned());
        }
    }

    /// Copies the notes into `record`.
    pub fn apply(&self, record: &mut Record) {
        record.credentials.clone_from(&self.credentials);
        record.pii.clone_from(&self.pii);
        record.would_refuse.clone_from(&self.would_refuse);
    }
}

/// Locks shared notes (a poisoned lock still holds usable notes).
pub fn notes(shared: &SharedNotes) -> std::sync::MutexGuard<'_, Notes> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
