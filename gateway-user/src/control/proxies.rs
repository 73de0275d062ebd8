//! Upstream proxy endpoints of the control API: list them, and test one (open a tunnel
//! through it), at most [`TESTS_PER_MINUTE`] times a minute per proxy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::sessions::Failure;
use crate::api::{ProxyTest, ProxyTestResult, ProxyView};
use crate::daemon::Node;
use crate::upstream::egress::ConnectTo;

/// Tests allowed per proxy per minute.
pub const TESTS_PER_MINUTE: usize = 5;
/// Why proxies cannot be created, changed or removed through the API.
pub const READ_ONLY: &str = "upstream proxies are defined in the node's configuration \
    ([[upstream.proxies]]) or by SLUICE_PROXY_URL in the daemon's environment; creating, \
    changing or removing them through the API is not supported yet. Edit the file and \
    restart the daemon";

/// The tunnel a test opens when the request names none.
pub const DEFAULT_TARGET: &str = "example.com:443";

/// The node's upstream proxies, passwords masked.
pub fn list(node: &Node) -> Vec<ProxyView> {
    let proxies = node.proxy.dialer.proxies();
    let config = proxies.list.iter().map(|p| (p, "config"));
    let env = proxies.env.iter().map(|p| (p, "env"));
    config
        .chain(env)
        .map(|(p, source)| ProxyView {
            id: p.id.clone(),
            label: p.label.clone(),
            url: p.url.to_string(),
            default: proxies.default.as_deref() == Some(p.id.as_str())
                || (source == "env" && proxies.default.is_none()),
            no_proxy: node
                .config
                .upstream
                .proxies
                .iter()
                .find(|spec| spec.id == p.id && source == "config")
                .map(|spec| spec.no_proxy.clone())
                .unwrap_or_default(),
            connect_to: match p.connect_to {
                ConnectTo::Name => "name".into(),
                ConnectTo::Address => "address".into(),
            },
            source: source.into(),
        })
        .collect()
}

/// Opens a tunnel through proxy `id` to the request's target and reports how it went.
pub async fn test(
    node: &Node,
    limiter: &TestLimiter,
    id: &str,
    request: ProxyTest,
) -> Result<ProxyTestResult, Failure> {
    let proxies = node.proxy.dialer.proxies();
    let proxy = proxies
        .by_id(id)
        .or(proxies.env.as_ref().filter(|p| p.id == id))
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no upstream proxy {id:?}; `sluice proxy list` shows the ids"),
            )
        })?;
    let target = request.target.unwrap_or_else(|| DEFAULT_TARGET.to_owned());
    if !limiter.allow(id, Instant::now()) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!("proxy {id}: at most {TESTS_PER_MINUTE} tests a minute; try again shortly"),
        ));
    }
    let started = Instant::now();
    let outcome = node.proxy.dialer.probe(proxy, &target).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, message) = match outcome {
        Ok(()) => (true, format!("tunnel to {target} open")),
        Err(crate::upstream::DialError::Proxy { what, .. }) => (false, what),
        Err(e) => (false, e.to_string()),
    };
    tracing::info!(proxy = id, target, ok, latency_ms, "upstream: proxy test");
    Ok(ProxyTestResult {
        id: proxy.id.clone(),
        label: proxy.label.clone(),
        target,
        ok,
        message,
        latency_ms,
    })
}

/// Counts tests per proxy over the last minute.
#[derive(Debug, Default)]
pub struct TestLimiter {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl TestLimiter {
    /// Whether proxy `id` may be tested at `now` (and counts the test if so).
    pub fn allow(&self, id: &str, now: Instant) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let times = recent.entry(id.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= TESTS_PER_MINUTE {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_tests_a_minute_per_proxy() {
        let limiter = TestLimiter::default();
        let start = Instant::now();
        for _ in 0..TESTS_PER_MINUTE {
            assert!(limiter.allow("corp", start));
        }
        assert!(!limiter.allow("corp", start + Duration::from_secs(59)));
        assert!(limiter.allow("other", start), "counted per proxy");
        assert!(limiter.allow("corp", start + Duration::from_secs(60)));
    }
}
