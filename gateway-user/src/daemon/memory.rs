//! Gives memory the daemon freed back to the system.
//!
//! glibc's allocator keeps what a burst freed (thousands of connections closing at once,
//! pools dropped, leaves evicted) in its arenas, so the daemon's RSS would stay at the burst's
//! peak for good. Every [`GIVE_BACK_EVERY`] the daemon asks it to return its free pages
//! (`malloc_trim`), which releases free memory in the middle of every arena, not only at the
//! top of the heap. (jemalloc was tried: it gives memory back on its own, but kept tens of
//! MiB of freed pages while a large body streamed, or cost a third of the h2 request rate
//! when told to return them at once.)

use std::time::Duration;

use crate::drain::Drain;

/// How often free memory is returned to the system.
pub const GIVE_BACK_EVERY: Duration = Duration::from_secs(5);

/// Runs until the drain stops, giving memory back every [`GIVE_BACK_EVERY`] on a blocking
/// thread.
pub async fn give_back_periodically(drain: Drain) {
    let stopping = drain.stopping();
    tokio::pin!(stopping);
    let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopping => return,
            _ = tick.tick() => {
                let _ = tokio::task::spawn_blocking(give_back_free_memory).await;
            }
        }
    }
}

/// Returns the allocator's free pages to the system; true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim(3) is a libc call without preconditions: it takes the arena locks itself"
)]
pub fn give_back_free_memory() -> bool {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it touches no
    // memory of ours and may be called from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other C libraries' allocators manage this themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// A burst freed in the middle of the heap (every 64th block stays alive, so the heap
    /// cannot shrink from its top) is given back: RSS falls.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_burst_freed_in_the_middle_of_the_heap_is_given_back() {
        let rss = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // 64 MiB in 4 KiB blocks.
        let mut blocks: Vec<Vec<u8>> = (0..16_384).map(|_| vec![7u8; 4096]).collect();
        let peak = rss();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter(|(i, _)| i % 64 == 0)
            .map(|(_, b)| b)
            .collect();
        let freed = rss();
        assert!(super::give_back_free_memory(), "nothing was given back");
        let after = rss();
        assert!(
            after + 32 * 1024 < freed,
            "RSS {peak} KiB at peak, {freed} KiB after freeing, {after} KiB after giving back"
        );
        assert_eq!(kept.len(), 256);
    }
}
