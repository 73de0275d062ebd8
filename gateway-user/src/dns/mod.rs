//! The DNS responder for sandboxes.
//!
//! The kernel redirects every UDP/53 datagram a sandbox sends, whatever resolver it names, to
//! the daemon's DNS listener. This module answers those queries: allowed names resolve (static
//! hosts table first, then the system resolver), denied names get NXDOMAIN, and every query,
//! answered or dropped, produces one [`DnsEvent`] for the audit log.
//!
//! Layout, one job per file:
//! - [`message`]: pure parsing and answer building with `hickory-proto` ([`answer`],
//!   [`prepare`]); no I/O, tested as tables.
//! - [`resolve`]: the [`Resolver`] (static table, then a bounded-time system lookup).
//! - [`server`]: the [`DnsServer`] that carries datagrams between a UDP socket, the policy
//!   hook ([`QueryPolicy`]), the resolver and the audit callback.
//! - [`admit`]: which names a sandbox may resolve (pure, from its policy).
//! - [`budget`]: the cap on distinct names per sandbox per minute.
//! - [`exfil`]: flags for names that look like smuggled data (audit only).
//!
//! # Security
//!
//! DNS is a classic exfiltration channel (data encoded in query names, TXT tunnels). The policy
//! hook runs before any upstream lookup, so a denied name never leaves the node; only A and
//! AAAA are ever resolved upstream (HTTPS/SVCB get an empty answer made here), and every other
//! type is refused outright. Every failure (timeout, resolver error, overload, unencodable
//! answer) ends in SERVFAIL or no answer at all, never in an invented address. Under an
//! allow-all policy DNS exfiltration cannot be closed, only rate-limited ([`budget`]) and made
//! visible ([`exfil`] flags in the audit record).

pub mod admit;
pub mod budget;
pub mod exfil;
pub mod message;
pub mod resolve;
pub mod server;

pub use budget::NameBudget;
pub use message::{
    Outcome, Pending, Prepared, QueryInfo, Question, Reply, Resolution, answer, prepare,
    question_of,
};
pub use resolve::{Resolver, SystemResolver, Upstream};
pub use server::{Admission, Admit, DnsEvent, DnsServer, QueryPolicy};

use std::time::Duration;

/// Errors of the DNS responder.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist in the static table and no upstream is configured.
    #[error(
        "dns resolve: name not found in the static hosts table and no system resolver is configured"
    )]
    NotFound,
    /// The upstream lookup took longer than the configured timeout.
    #[error(
        "dns resolve: system resolver timed out after {0:?}; check the node's resolver (/etc/resolv.conf)"
    )]
    Timeout(Duration),
    /// The system resolver returned an error (including "no such name": `getaddrinfo` does not
    /// let us tell the two apart, so both fail closed as SERVFAIL).
    #[error("dns resolve: system resolver failed: {0}")]
    Lookup(#[source] std::io::Error),
    /// Too many system lookups are already in flight; the query is answered SERVFAIL.
    #[error("dns resolve: too many system lookups in flight ({0}); the node resolver is slow")]
    UpstreamBusy(usize),
    /// The blocking lookup task died (panicked or was cancelled at runtime shutdown).
    #[error("dns resolve: system lookup task failed: {0}")]
    LookupTask(String),
    /// The listening socket failed in a way that retrying will not fix.
    #[error("dns server: receiving on the DNS socket failed: {0}; restart the listener")]
    Receive(#[source] std::io::Error),
    /// Encoding a reply failed (should not happen with well-formed input).
    #[error("dns message: encoding the reply failed: {0}")]
    Encode(#[source] hickory_proto::ProtoError),
}
