//! The node-local rate limiter: GCRA timestamps in a mutex-guarded map.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::{Duration, Instant};

use super::{RateError, RateFuture, RateLimiter, RateOutcome, Step, gcra, retry_after};

/// How often expired budgets are dropped (also whenever the map doubles).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Budgets counted on this node only, in memory.
///
/// Memory stays bounded: a budget expires at most one minute after its last request and is
/// dropped by a sweep every 10 s or whenever the map has doubled since the last sweep, so the
/// map holds about the (session, host) pairs of the last 70 s. Uses the tokio clock, so tests
/// can drive it with `tokio::time::pause`.
#[derive(Debug)]
pub struct LocalLimiter {
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// scope → key → TAT (µs since `epoch`).
    scopes: HashMap<String, HashMap<String, u64>>,
    entries: usize,
    next_sweep: u64,
    entries_after_sweep: usize,
}

impl LocalLimiter {
    /// An empty limiter.
    pub fn new() -> LocalLimiter {
        LocalLimiter {
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// [`RateLimiter::acquire`] without the future: takes one request from the budget of
    /// `key` within `scope`. Always reports `shared: false`.
    pub fn check(&self, scope: &str, key: &str, per_minute: u32) -> Result<RateOutcome, RateError> {
        if per_minute == 0 {
            return Err(RateError::ZeroLimit);
        }
        let now = self.now_us();
        // The map holds plain timestamps, so a panic elsewhere cannot leave it inconsistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.maybe_sweep(now);
        let stored = state
            .scopes
            .get(scope)
            .and_then(|keys| keys.get(key))
            .copied();
        match gcra(stored, now, per_minute) {
            Step::Limit { wait } => Ok(RateOutcome::Limited {
                retry_after: retry_after(wait),
                shared: false,
            }),
            Step::Allow { tat } => {
                state.store(scope, key, tat);
                Ok(RateOutcome::Allowed { shared: false })
            }
        }
    }

    /// How many budgets are held (expired ones included until the next sweep).
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter::new()
    }
}

impl RateLimiter for LocalLimiter {
    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, per_minute: u32) -> RateFuture<'a> {
        Box::pin(std::future::ready(self.check(scope, key, per_minute)))
    }
}

impl State {
    fn store(&mut self, scope: &str, key: &str, tat: u64) {
        let keys = match self.scopes.get_mut(scope) {
            Some(keys) => keys,
            None => self.scopes.entry(scope.to_owned()).or_default(),
        };
        match keys.get_mut(key) {
            Some(slot) => *slot = tat,
            None => {
                keys.insert(key.to_owned(), tat);
                self.entries += 1;
            }
        }
    }

    /// Drops budgets whose TAT has passed (they are the same as unused ones).
    fn maybe_sweep(&mut self, now: u64) {
        let grown = self.entries > (2 * self.entries_after_sweep).max(1024);
        if now < self.next_sweep && !grown {
            return;
        }
        self.scopes.retain(|_, keys| {
            keys.retain(|_, tat| *tat > now);
            !keys.is_empty()
        });
        self.entries = self.scopes.values().map(HashMap::len).sum();
        self.entries_after_sweep = self.entries;
        let every = u64::try_from(SWEEP_EVERY.as_micros()).unwrap_or(u64::MAX);
        self.next_sweep = now.saturating_add(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(outcome: RateOutcome) -> Option<Duration> {
        match outcome {
            RateOutcome::Allowed { shared: false } => None,
            RateOutcome::Limited {
                retry_after,
                shared: false,
            } => Some(retry_after),
            other => unreachable!("local outcome marked shared: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sixty_per_minute() {
        let limiter = LocalLimiter::new();
        for i in 0..60 {
            let outcome = limiter.acquire("s1", "api.test", 60).await.unwrap();
            assert_eq!(limited(outcome), None, "request {i}");
        }
        let retry = limited(limiter.acquire("s1", "api.test", 60).await.unwrap()).unwrap();
        assert_eq!(retry, Duration::from_secs(1));
        // Other hosts and other sessions have their own budgets.
        assert_eq!(
            limited(limiter.check("s1", "other.test", 60).unwrap()),
            None
        );
        assert_eq!(limited(limiter.check("s2", "api.test", 60).unwrap()), None);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(limited(limiter.check("s1", "api.test", 60).unwrap()).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(limited(limiter.check("s1", "api.test", 60).unwrap()), None);
        assert!(limited(limiter.check("s1", "api.test", 60).unwrap()).is_some());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..60 {
            assert_eq!(limited(limiter.check("s1", "api.test", 60).unwrap()), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_the_time_until_the_next_slot() {
        let limiter = LocalLimiter::new();
        for _ in 0..7 {
            assert_eq!(limited(limiter.check("s", "k", 7).unwrap()), None);
        }
        // 60 s / 7 = 8.57 s until one more fits: 9 s rounded up.
        assert_eq!(
            limited(limiter.check("s", "k", 7).unwrap()),
            Some(Duration::from_secs(9))
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(
            limited(limiter.check("s", "k", 7).unwrap()),
            Some(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limited(limiter.check("s", "k", 7).unwrap()), None);
        assert_eq!(limited(limiter.check("s", "one", 1).unwrap()), None);
        assert_eq!(
            limited(limiter.check("s", "one", 1).unwrap()),
            Some(Duration::from_secs(60))
        );
        assert!(matches!(
            limiter.check("s", "k", 0),
            Err(RateError::ZeroLimit)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_budgets_are_dropped() {
        let limiter = LocalLimiter::new();
        for i in 0..5000 {
            limiter
                .check(&format!("s{}", i % 10), &format!("h{i}.test"), 60)
                .unwrap();
        }
        // Growth past twice the last sweep triggers sweeps, but all these budgets are live.
        assert_eq!(limiter.tracked(), 5000);
        tokio::time::advance(Duration::from_secs(61)).await;
        limiter.check("s0", "fresh.test", 60).unwrap();
        assert_eq!(limiter.tracked(), 1);
        assert_eq!(limiter.state.lock().unwrap().scopes.len(), 1);
    }
}
