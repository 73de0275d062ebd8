//! RedisLimiter against a real `redis-server` listening only on a unix socket.

use super::*;
use crate::testing::RedisServer;

#[tokio::test]
async fn two_nodes_share_one_budget() {
    let server = RedisServer::start().unwrap();
    let node_a = RedisLimiter::connect(&server.url(), "t:").await.unwrap();
    let node_b: std::sync::Arc<dyn RateLimiter> =
        std::sync::Arc::new(RedisLimiter::connect(&server.url(), "t:").await.unwrap());
    for i in 0..30 {
        let a = node_a.acquire("s1", "api.test", 60).await.unwrap();
        let b = node_b.acquire("s1", "api.test", 60).await.unwrap();
        assert_eq!(a, RateOutcome::Allowed { shared: true }, "a {i}");
        assert_eq!(b, RateOutcome::Allowed { shared: true }, "b {i}");
    }
    let RateOutcome::Limited {
        retry_after,
        shared,
    } = node_a.acquire("s1", "api.test", 60).await.unwrap()
    else {
        unreachable!("61st request allowed");
    };
    assert!(shared);
    assert!((1..=60).contains(&retry_after.as_secs()), "{retry_after:?}");
    assert!(
        node_b
            .acquire("s1", "api.test", 60)
            .await
            .unwrap()
            .is_limited()
    );
    // Other sessions and hosts have their own budgets.
    assert!(
        !node_b
            .acquire("s2", "api.test", 60)
            .await
            .unwrap()
            .is_limited()
    );
    assert!(
        !node_b
            .acquire("s1", "other.test", 60)
            .await
            .unwrap()
            .is_limited()
    );
    assert!(matches!(
        node_a.acquire("s1", "api.test", 0).await,
        Err(RateError::ZeroLimit)
    ));

    // The key is where the module docs say, and expires within a minute.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:rl:s1:api.test")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=61_000).contains(&ttl), "{ttl}");
    assert!(!node_a.is_degraded());
    assert!(format!("{node_a:?}").contains("degraded: false"));
}

#[tokio::test]
async fn one_per_minute_says_retry_after_a_minute() {
    let server = RedisServer::start().unwrap();
    let limiter = RedisLimiter::connect(&server.url(), "").await.unwrap();
    assert!(!limiter.acquire("s", "k", 1).await.unwrap().is_limited());
    let outcome = limiter.acquire("s", "k", 1).await.unwrap();
    let RateOutcome::Limited { retry_after, .. } = outcome else {
        unreachable!("second request allowed")
    };
    assert!(
        (59..=60).contains(&retry_after.as_secs()),
        "{retry_after:?}"
    );
}

#[tokio::test]
async fn falls_back_to_a_local_budget_when_redis_dies() {
    let mut server = RedisServer::start().unwrap();
    let limiter = RedisLimiter::connect(&server.url(), "t:").await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            limiter.acquire("s", "k", 5).await.unwrap(),
            RateOutcome::Allowed { shared: true }
        );
    }
    server.kill();
    // From here the clock moves only when every task waits for a timer, so it shows whether a
    // request waited for Redis (the call's timeout, a reconnect).
    tokio::time::pause();
    let outcome = limiter.acquire("s", "k", 5).await.unwrap();
    assert_eq!(
        outcome,
        RateOutcome::Allowed { shared: false },
        "finds Redis gone"
    );
    assert!(limiter.is_degraded());
    let degraded_at = tokio::time::Instant::now();
    for i in 1..5 {
        let outcome = limiter.acquire("s", "k", 5).await.unwrap();
        assert_eq!(outcome, RateOutcome::Allowed { shared: false }, "{i}");
    }
    let outcome = limiter.acquire("s", "k", 5).await.unwrap();
    assert!(outcome.is_limited() && !outcome.shared(), "{outcome:?}");
    assert_eq!(
        tokio::time::Instant::now(),
        degraded_at,
        "no request after the first waited for the dead Redis"
    );
}

#[tokio::test]
async fn connect_errors_name_the_problem() {
    let err = RedisLimiter::connect("nonsense://x", "").await.unwrap_err();
    assert!(
        err.to_string().starts_with("rate limiter: bad Redis URL"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis+unix://{}/absent.sock", dir.path().display());
    let err = RedisLimiter::connect(&url, "").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("rate limiter: cannot reach Redis"),
        "{err}"
    );
}
