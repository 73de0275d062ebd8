//! Request-rate limits: at most `per_minute` requests per rolling minute for each
//! (session, host) pair, with a burst of the full `per_minute`.
//!
//! The algorithm is GCRA (generic cell rate algorithm): each budget is one timestamp, the
//! *theoretical arrival time* (TAT). A request moves the TAT one emission interval
//! (`60 s / per_minute`) later; it is refused when that would put the TAT more than one
//! minute ahead of now. So the `(N+1)`th request within a minute at limit `N` is limited,
//! and its `retry_after` is the time until one more would be allowed, rounded up to whole
//! seconds (at least 1). The timestamps are whole microseconds; for a limit that does not
//! divide 60 000 000 µs the interval is rounded down (a burst is still exactly `N`).
//!
//! Two implementations: [`LocalLimiter`] (this node only) and [`RedisLimiter`] (one budget
//! shared by every node, falling back to a node-local budget while Redis is unreachable).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod local;
mod shared;

pub use local::LocalLimiter;
pub use shared::RedisLimiter;

/// The future [`RateLimiter::acquire`] returns.
pub type RateFuture<'a> = Pin<Box<dyn Future<Output = Result<RateOutcome, RateError>> + Send + 'a>>;

/// Counts requests against per-minute budgets; shared as `Arc<dyn RateLimiter>`.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Takes one request from the budget of `key` (a host, see
    /// [`super::rate_limit_for`]) within `scope` (a session id).
    ///
    /// # Security
    /// On `Err` the caller must refuse the request (fail closed).
    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, per_minute: u32) -> RateFuture<'a>;
}

/// Whether a request fits its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateOutcome {
    /// Within the budget.
    Allowed {
        /// `true` if counted in the budget shared by all nodes; `false` if counted on this
        /// node only (a [`LocalLimiter`], or a [`RedisLimiter`] while Redis is unreachable).
        shared: bool,
    },
    /// Over the budget: answer 429 with `Retry-After`.
    Limited {
        /// Time until one more request would be allowed, whole seconds, at least 1 s.
        retry_after: Duration,
        /// As for [`RateOutcome::Allowed`].
        shared: bool,
    },
}

/// Why a rate limit could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// A zero budget (the policy compiler rejects it, so this is a caller bug).
    #[error("rate limiter: per_minute must be at least 1; use deny to block a host")]
    ZeroLimit,
    /// The Redis URL is malformed.
    #[error("rate limiter: bad Redis URL: {0}; expected redis://HOST:PORT or redis+unix:///PATH")]
    Url(String),
    /// Redis could not be reached when the limiter was created.
    #[error("rate limiter: cannot reach Redis: {0}; check that it runs and the URL is right")]
    Connect(String),
}

impl RateOutcome {
    /// Whether the request is over its budget.
    pub fn is_limited(&self) -> bool {
        matches!(self, RateOutcome::Limited { .. })
    }

    /// Whether the request was counted in the budget shared by all nodes.
    pub fn shared(&self) -> bool {
        match self {
            RateOutcome::Allowed { shared } | RateOutcome::Limited { shared, .. } => *shared,
        }
    }
}

/// One GCRA step, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Allowed; store this TAT.
    Allow {
        /// The new theoretical arrival time.
        tat: u64,
    },
    /// Limited; one more request fits after this many microseconds.
    Limit {
        /// Microseconds to wait.
        wait: u64,
    },
}

/// One GCRA step for a budget whose stored TAT is `tat` (`None`: unused or expired) at
/// `now`. The Lua script in [`shared`] is the same computation.
fn gcra(tat: Option<u64>, now: u64, per_minute: u32) -> Step {
    let n = u64::from(per_minute.max(1));
    let interval = (60_000_000 / n).max(1);
    let window = interval * n;
    let next = tat.unwrap_or(now).max(now) + interval;
    match (next - now).checked_sub(window) {
        Some(wait) if wait > 0 => Step::Limit { wait },
        _ => Step::Allow { tat: next },
    }
}

/// Rounds a wait up to whole seconds, at least one.
fn retry_after(wait_us: u64) -> Duration {
    Duration::from_secs(wait_us.div_ceil(1_000_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_table() {
        let t0 = 1_000_000_000;
        let cases: &[(Option<u64>, u64, u32, Step)] = &[
            (
                None,
                t0,
                60,
                Step::Allow {
                    tat: t0 + 1_000_000,
                },
            ),
            (
                Some(t0 - 5),
                t0,
                60,
                Step::Allow {
                    tat: t0 + 1_000_000,
                },
            ),
            (
                Some(t0 + 59_000_000),
                t0,
                60,
                Step::Allow {
                    tat: t0 + 60_000_000,
                },
            ),
            (
                Some(t0 + 60_000_000),
                t0,
                60,
                Step::Limit { wait: 1_000_000 },
            ),
            (
                Some(t0 + 60_000_000),
                t0 + 400_000,
                60,
                Step::Limit { wait: 600_000 },
            ),
            (
                Some(t0 + 60_000_000),
                t0 + 1_000_000,
                60,
                Step::Allow {
                    tat: t0 + 61_000_000,
                },
            ),
            (
                None,
                t0,
                1,
                Step::Allow {
                    tat: t0 + 60_000_000,
                },
            ),
            (
                Some(t0 + 60_000_000),
                t0,
                1,
                Step::Limit { wait: 60_000_000 },
            ),
            (
                Some(t0 + 59_999_996),
                t0,
                7,
                Step::Limit { wait: 8_571_428 },
            ),
            (None, t0, u32::MAX, Step::Allow { tat: t0 + 1 }),
        ];
        for &(tat, now, n, want) in cases {
            assert_eq!(gcra(tat, now, n), want, "{tat:?} {now} {n}");
        }
    }

    #[test]
    fn burst_is_exactly_the_limit() {
        for n in [1, 2, 7, 60, 61, 1000, 7777, 1_000_000] {
            let mut tat = None;
            for i in 0..n {
                match gcra(tat, 5, n) {
                    Step::Allow { tat: t } => tat = Some(t),
                    Step::Limit { .. } => unreachable!("limit {n}: request {i} limited"),
                }
            }
            assert!(matches!(gcra(tat, 5, n), Step::Limit { .. }), "limit {n}");
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        for (us, secs) in [
            (0, 1),
            (1, 1),
            (1_000_000, 1),
            (1_000_001, 2),
            (8_571_428, 9),
            (60_000_000, 60),
        ] {
            assert_eq!(retry_after(us), Duration::from_secs(secs), "{us}");
        }
    }
}
