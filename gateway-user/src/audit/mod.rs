//! Audit: one JSON record per connection, per DNS query and per intercepted request.
//!
//! Records are built on the data path and handed to a writer task over a channel, so a slow
//! disk never adds latency to a request. The [`ConnAudit`] guard writes its record when it is
//! dropped, so every connection leaves exactly one record, even on error paths.

mod guard;
mod record;
mod sink;

pub use guard::ConnAudit;
pub use record::{Decision, Kind, Mode, Record, Who};
pub use sink::{AuditError, AuditLog, AuditWriter};
