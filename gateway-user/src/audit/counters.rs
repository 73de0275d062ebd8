//! What happened to records, counted by the writers and read by [`AuditLog`](super::AuditLog)
//! for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to records, for metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub written: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    /// Request records queued (every intercepted HTTP request, whatever its decision).
    pub requests: AtomicU64,
    /// Records with decision `deny` queued (requests, connections, DNS queries).
    pub refusals: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
