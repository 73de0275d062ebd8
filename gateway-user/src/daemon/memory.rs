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

/// The glibc tunable that sets how many freed chunks of each size a thread keeps for reuse.
const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";
/// Freed chunks of each size (up to 1 KiB) a thread keeps: glibc's default is 7, fewer than
/// a request frees of some sizes, so the rest went through the arena's locked slow path
/// (`_int_malloc`, `_int_free`, consolidation) and the allocator took about a tenth of the
/// daemon's CPU per request (W1 h1 profile: 11.4 µs of 118.6). 64 roughly halves that, and
/// bounds what a thread may keep to 64 chunks per size (about 2 MiB in the worst case).
const TCACHE_COUNT: u32 = 64;

/// Re-executes this process (same arguments, same pid) with [`TCACHE_TUNABLE`] set in
/// `GLIBC_TUNABLES`, which glibc reads only at start. Call before any thread is started.
/// Returns without doing anything if the tunable is already set (by an earlier call, or by
/// the operator, whose value is kept) or if the daemon does not run as root (a process
/// holding capabilities without being root could lose them across `exec`); returns after
/// logging if the exec fails, leaving the daemon on glibc's defaults (slower, not less safe).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_allocator_tunables() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = tunables_with_tcache(current.as_deref()) else {
        return;
    };
    let mut args = std::env::args_os();
    let Some(argv0) = args.next() else {
        return;
    };
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    tracing::warn!(
        %error,
        "could not re-execute with {TCACHE_TUNABLE}={TCACHE_COUNT}; running with glibc's allocator defaults"
    );
}

/// Other C libraries have no such tunable.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_allocator_tunables() {}

/// `GLIBC_TUNABLES` with [`TCACHE_TUNABLE`] added to `current`, or `None` if it is set there.
fn tunables_with_tcache(current: Option<&str>) -> Option<String> {
    let ours = format!("{TCACHE_TUNABLE}={TCACHE_COUNT}");
    match current.filter(|c| !c.is_empty()) {
        None => Some(ours),
        Some(c)
            if c.split(':')
                .any(|t| t.split('=').next() == Some(TCACHE_TUNABLE)) =>
        {
            None
        }
        Some(c) => Some(format!("{c}:{ours}")),
    }
}

/// Bytes the daemon has allocated and not yet freed (glibc's `mallinfo2`: arena chunks in
/// use plus `mmap`ed blocks), for `/metrics`. Set against RSS it tells live data from memory
/// the allocator holds: freed, but on pages that a live allocation still pins.
///
/// Walks every arena's free lists under its lock: for a scrape, not for a request path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "mallinfo2(3) is a libc call without preconditions that returns a plain struct"
)]
pub fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 reads glibc's own arena statistics under their locks and returns
    // them by value; it touches no memory of ours.
    let info = unsafe { libc::mallinfo2() };
    u64::try_from(info.uordblks.saturating_add(info.hblkhd)).ok()
}

/// Only glibc's allocator is asked; elsewhere the metric is left out.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tcache_tunable_is_added_once_and_an_operators_value_kept() {
        let ours = "glibc.malloc.tcache_count=64";
        assert_eq!(super::tunables_with_tcache(None).as_deref(), Some(ours));
        assert_eq!(super::tunables_with_tcache(Some("")).as_deref(), Some(ours));
        assert_eq!(
            super::tunables_with_tcache(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=64")
        );
        assert_eq!(super::tunables_with_tcache(Some(ours)), None);
        assert_eq!(
            super::tunables_with_tcache(Some(
                "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=7"
            )),
            None
        );
        // A longer name that merely starts the same is another tunable.
        assert!(super::tunables_with_tcache(Some("glibc.malloc.tcache_count_x=1")).is_some());
    }

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
        let _alone = BURSTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// The in-use figure follows what is allocated: 128 MiB more while a burst lives, back
    /// down once it is freed (within 16 MiB: other tests allocate and free concurrently).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn heap_in_use_follows_live_allocations() {
        const MIB: u64 = 1024 * 1024;
        let _alone = BURSTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = super::heap_in_use().unwrap();
        let blocks: Vec<Vec<u8>> = (0..32_768).map(|_| vec![1u8; 4096]).collect();
        let during = super::heap_in_use().unwrap();
        assert!(
            during >= before + 112 * MIB,
            "in use {before} before a 128 MiB burst, {during} during it"
        );
        drop(blocks);
        let after = super::heap_in_use().unwrap();
        assert!(
            after + 112 * MIB <= during,
            "in use {during} during a 128 MiB burst, {after} after freeing it"
        );
    }

    /// Held by the tests that allocate and free bursts, so they do not measure each other.
    static BURSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
}
