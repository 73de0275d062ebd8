//! The rate limiter shared by every node: GCRA in a Redis Lua script.
//!
//! Each budget is one Redis string, `{prefix}rl:{scope}:{key}`, holding the TAT in
//! microseconds of Redis server time (`TIME`, so node clocks do not matter). The script reads,
//! decides and writes in one atomic step, and sets the key to expire (`SET … PX`) when its TAT
//! passes, after which an absent key means an unused budget.
//!
//! # Fallback
//! When Redis fails or does not answer within the timeout (default 250 ms), the request is
//! counted by a node-local [`LocalLimiter`] instead and reported with `shared: false`: the limit
//! is still enforced, but per node (so N nodes allow up to N times the budget). One warning is
//! logged per outage; while down, Redis is probed by at most one request per second and the
//! others go straight to the local budget. Budgets are not carried across: the local budget
//! starts empty at an outage, and the shared one does not see requests counted locally.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::{Duration, Instant};

use super::{LocalLimiter, RateError, RateFuture, RateLimiter, RateOutcome, retry_after};

/// GCRA over `KEYS[1]` with `ARGV[1]` = per_minute; returns `{1, 0}` (allowed) or
/// `{0, wait_us}`. The same computation as [`super::gcra`].
const GCRA_LUA: &str = r"
local n = tonumber(ARGV[1])
local interval = math.max(math.floor(60000000 / n), 1)
local window = interval * n
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next = tat + interval
local wait = next - now - window
if wait > 0 then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1)
return {1, 0}
";

/// How long one Redis call may take before the local budget is used. Default is 250 ms.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// While Redis is down, how often one request tries it again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Budgets shared by all nodes through Redis, with a node-local fallback (see the module
/// docs).
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    timeout: Duration,
    fallback: LocalLimiter,
    outage: Mutex<Outage>,
}

#[derive(Debug, Default)]
struct Outage {
    down: bool,
    next_probe: Option<Instant>,
}

impl RedisLimiter {
    /// Connects to `url` (`redis://…`, `redis+unix:///…`); keys start with `prefix`.
    ///
    /// # Security
    /// The URL may hold a password: it is never put into errors or logs.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisLimiter, RateError> {
        let client = redis::Client::open(url)
            .map_err(|e| RateError::Url(e.detail().unwrap_or(e.category()).to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| RateError::Connect(e.to_string()))?;
        Ok(RedisLimiter::new(conn, prefix))
    }

    /// Uses an existing connection (e.g. the session store's); keys start with `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> RedisLimiter {
        RedisLimiter {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(GCRA_LUA),
            timeout: DEFAULT_TIMEOUT,
            fallback: LocalLimiter::new(),
            outage: Mutex::new(Outage::default()),
        }
    }

    /// Sets how long a Redis call may take before the local budget is used.
    pub fn with_timeout(mut self, timeout: Duration) -> RedisLimiter {
        self.timeout = timeout;
        self
    }

    /// Whether Redis is currently considered down (budgets are node-local).
    pub fn is_degraded(&self) -> bool {
        self.outage().down
    }

    async fn check(
        &self,
        scope: &str,
        key: &str,
        per_minute: u32,
    ) -> Result<RateOutcome, RateError> {
        if per_minute == 0 {
            return Err(RateError::ZeroLimit);
        }
        if !self.should_try_redis() {
            return self.fallback.check(scope, key, per_minute);
        }
        let redis_key = format!("{}rl:{scope}:{key}", self.prefix);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.prepare_invoke();
        invocation.key(&redis_key).arg(per_minute);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((allowed, wait))) => {
                self.mark_up();
                Ok(if allowed == 1 {
                    RateOutcome::Allowed { shared: true }
                } else {
                    RateOutcome::Limited {
                        retry_after: retry_after(u64::try_from(wait).unwrap_or(0)),
                        shared: true,
                    }
                })
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                self.fallback.check(scope, key, per_minute)
            }
            Err(_) => {
                self.mark_down(&format!("no answer within {:?}", self.timeout));
                self.fallback.check(scope, key, per_minute)
            }
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        // Two plain fields: a panic elsewhere cannot leave them inconsistent.
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up: always. Down: one request per [`PROBE_EVERY`].
    fn should_try_redis(&self) -> bool {
        let mut outage = self.outage();
        if !outage.down {
            return true;
        }
        let now = Instant::now();
        if outage.next_probe.is_some_and(|at| now < at) {
            return false;
        }
        outage.next_probe = Some(now + PROBE_EVERY);
        true
    }

    fn mark_down(&self, why: &str) {
        let mut outage = self.outage();
        if !outage.down {
            tracing::warn!(
                error = why,
                "rate limiter: Redis unreachable; counting budgets on this node only until it is back"
            );
            outage.down = true;
        }
        outage.next_probe = Some(Instant::now() + PROBE_EVERY);
    }

    fn mark_up(&self) {
        let mut outage = self.outage();
        if outage.down {
            tracing::info!("rate limiter: Redis is back; budgets are shared across nodes again");
            *outage = Outage::default();
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, per_minute: u32) -> RateFuture<'a> {
        Box::pin(self.check(scope, key, per_minute))
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
