//! Audit: one JSON record per connection, per DNS query and per intercepted request.
//!
//! Records are built on the data path and handed to a writer task over a channel, so a slow
//! disk or an unreachable Redis never adds latency to a request. The [`ConnAudit`] guard
//! writes its record when it is dropped, so every connection leaves exactly one record, even on
//! error paths.
//!
//! Two stores ([`AuditTarget`]): a JSONL file (the embedded default), or a Redis stream shared
//! by the nodes. In Redis mode each record carries its node id and a node-unique increasing
//! `seq`; batches go in with one idempotent script call, records Redis does not confirm are
//! spooled to local disk and replayed in order when it answers again (none lost, none
//! duplicated), and the spool is bounded (when full, new records are dropped and counted).
//! [`query`] reads either store back.

mod counters;
mod entry;
mod error;
mod guard;
mod outcome;
pub mod query;
mod record;
mod redis_stream;
mod script;
mod seq;
mod sink;
mod spool;

pub use error::AuditError;
pub use guard::ConnAudit;
pub use outcome::{Outcome, Said, Side, Sided};
pub use query::{
    AuditPage, AuditQuery, MAX_FOLLOW, QueryError, follow_file, follow_redis, query_file,
    query_redis,
};
pub use record::{Decision, Kind, Mode, Record, Who};
pub use seq::SeqError;
pub use sink::{AuditLog, AuditTarget, AuditWriter, DEFAULT_SPOOL_MAX_BYTES, now_rfc3339};
pub use spool::SpoolError;
