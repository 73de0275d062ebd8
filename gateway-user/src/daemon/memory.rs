//! Gives memory the daemon freed back to the system.
//!
//! The `sluice` binary allocates with jemalloc, which returns pages freed by a burst
//! (thousands of connections closing at once, pools dropped, leaves evicted) to the system
//! after `dirty_decay_ms` (10 s) — but only while something allocates, unless its background
//! thread runs. The daemon starts that thread, so an idle node shrinks back after a burst too.
//! (Only the daemon: `sluice exec` and the runtime wrapper fork and must stay single-threaded.)

/// Starts jemalloc's background purging thread; a warning if it cannot run (the daemon then
/// still returns memory, later, as it allocates).
pub fn start_background_purging() {
    match tikv_jemalloc_ctl::background_thread::write(true) {
        Ok(()) => tracing::debug!("memory: jemalloc background purging started"),
        Err(e) => tracing::warn!(
            error = %e,
            "memory: jemalloc's background thread did not start; freed memory returns only as the daemon allocates"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::start_background_purging;

    #[test]
    fn background_purging_starts() {
        start_background_purging();
        assert_eq!(
            tikv_jemalloc_ctl::background_thread::read().ok(),
            Some(true)
        );
    }
}
