//! Protocol detection: a bounded, deadline-limited peek at the first bytes of a connection.
//!
//! [`detect`] reads what the client sends first, up to [`Limits::max_bytes`] and within
//! [`Limits::deadline`], and classifies it with the pure [`classify`]: a TLS ClientHello
//! (SNI, ALPN), an HTTP/1 request head (method, target, Host) or something else. The
//! bytes it read come back in [`Detection::bytes`]; [`Detection::replay`] wraps the
//! stream so the next reader sees them again.
//!
//! # Security
//!
//! Detection only reports what it saw and fails closed: a client that stays silent,
//! sends too much, stops half way or breaks TLS/HTTP syntax gets an outcome saying so,
//! never an invented host. What to do with each outcome is the router's decision.

pub mod client_hello;
pub mod http1;
mod peek;
mod prefixed;

#[cfg(test)]
mod tests;

use std::io;
use std::time::Duration;

use bytes::Bytes;

pub use client_hello::{ClientHello, MAX_CLIENT_HELLO_LEN};
pub use http1::Http1Request;
pub use peek::detect;
pub use prefixed::Prefixed;

/// How much detection may read, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes buffered before giving up with [`Outcome::TooLarge`].
    /// Default is 16 KiB ([`MAX_CLIENT_HELLO_LEN`]).
    pub max_bytes: usize,
    /// Time allowed from the start of detection to a verdict, after which the
    /// outcome is [`Outcome::Timeout`]. Default is 5 s.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_CLIENT_HELLO_LEN,
            deadline: Duration::from_secs(5),
        }
    }
}

/// The result of [`detect`]: what was read and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Every byte read from the stream, to be replayed to whoever handles it next.
    pub bytes: Bytes,
    /// The verdict.
    pub outcome: Outcome,
}

impl Detection {
    /// Wraps `stream` so its next reads return [`Detection::bytes`] first. The bytes move
    /// into the wrapper (which frees them once replayed); [`Detection::bytes`] is left empty.
    pub fn replay<S>(&mut self, stream: S) -> Prefixed<S> {
        Prefixed::new(std::mem::take(&mut self.bytes), stream)
    }
}

/// What the first bytes of a connection turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A complete, well-formed TLS ClientHello.
    Tls(ClientHello),
    /// A complete, well-formed HTTP/1 request head.
    Http1(Http1Request),
    /// The first bytes are neither TLS nor HTTP/1 (SSH, h2c prior knowledge, ...).
    Opaque,
    /// No verdict before the deadline; this includes a client that sends nothing,
    /// as server-speaks-first protocols do.
    Timeout,
    /// The head grew past [`Limits::max_bytes`] (or a ClientHello past 16 KiB)
    /// without being complete.
    TooLarge,
    /// The client speaks TLS or HTTP/1 but broke its syntax.
    Malformed(Malformed),
    /// The client closed its side before a verdict (maybe after sending a little,
    /// kept in [`Detection::bytes`]).
    Closed,
    /// Reading from the client failed (e.g. connection reset).
    ReadFailed(io::ErrorKind),
}

/// Which protocol the client broke, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A TLS record or ClientHello violates TLS.
    #[error("downstream sent a malformed TLS ClientHello: {0}")]
    Tls(&'static str),
    /// A request head violates HTTP/1 syntax.
    #[error("downstream sent a malformed HTTP/1 request: {0}")]
    Http1(&'static str),
}

/// Classifies the bytes a client has sent so far; `None` means "read more".
///
/// TLS is tried first, then HTTP/1; bytes that are neither are [`Outcome::Opaque`].
/// Never returns [`Outcome::Timeout`], [`Outcome::Closed`] or [`Outcome::ReadFailed`]:
/// those come from the I/O around it. [`Outcome::TooLarge`] only for a ClientHello
/// whose declared length exceeds the 16 KiB cap.
pub fn classify(buf: &[u8]) -> Option<Outcome> {
    match client_hello::parse(buf) {
        Ok(hello) => Some(Outcome::Tls(hello)),
        Err(client_hello::Error::Incomplete) => None,
        Err(client_hello::Error::TooLarge) => Some(Outcome::TooLarge),
        Err(client_hello::Error::Malformed(why)) => Some(Outcome::Malformed(Malformed::Tls(why))),
        Err(client_hello::Error::NotTls) => match http1::parse(buf) {
            Ok(request) => Some(Outcome::Http1(request)),
            Err(http1::Error::Incomplete) => None,
            Err(http1::Error::NotHttp) => Some(Outcome::Opaque),
            Err(http1::Error::Malformed(why)) => Some(Outcome::Malformed(Malformed::Http1(why))),
        },
    }
}
