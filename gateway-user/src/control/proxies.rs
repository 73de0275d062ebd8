//! Upstream proxy endpoints of the control API: list them; create, replace and remove
//! those kept in the session store (every node sharing it sees them) and make one the
//! default; test one (open a tunnel through it), at most [`TESTS_PER_MINUTE`] times a
//! minute per proxy. Proxies of the node's file and environment are read-only here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::sessions::{Failure, store_failure};
use crate::api::{ProxyTest, ProxyTestResult, ProxyView};
use crate::daemon::Node;
use crate::session::proxies::SealError;
use crate::session::{Put, Removed, StoredDefault, StoredProxy};
use crate::upstream::UpstreamProxy;
use crate::upstream::egress::{ConnectTo, ProxySpec, check_id};

/// Tests allowed per proxy per minute.
pub const TESTS_PER_MINUTE: usize = 5;

/// The tunnel a test opens when the request names none.
pub const DEFAULT_TARGET: &str = "example.com:443";

/// The node's upstream proxies, passwords masked: the file's, the API's (with those this
/// node cannot use), the environment's.
pub fn list(node: &Node) -> Vec<ProxyView> {
    let proxies = node.proxy.dialer.proxies();
    let default = proxies.default_id();
    let view = |p: &UpstreamProxy, source: &str| ProxyView {
        id: p.id.clone(),
        label: p.label.clone(),
        url: p.url.to_string(),
        default: default == Some(p.id.as_str()) || (source == "env" && default.is_none()),
        no_proxy: p.no_proxy.iter().map(ToString::to_string).collect(),
        connect_to: match p.connect_to {
            ConnectTo::Name => "name".into(),
            ConnectTo::Address => "address".into(),
        },
        source: source.into(),
        problem: None,
    };
    let config = proxies.list.iter().map(|p| view(p, "config"));
    let api = proxies.stored.iter().map(|p| view(p, "api"));
    let broken = proxies.broken.iter().map(|(id, problem)| ProxyView {
        id: id.clone(),
        label: id.clone(),
        url: String::new(),
        default: default == Some(id.as_str()),
        no_proxy: Vec::new(),
        connect_to: String::new(),
        source: "api".into(),
        problem: Some(problem.clone()),
    });
    let env = proxies.env.iter().map(|p| view(p, "env"));
    config.chain(api).chain(broken).chain(env).collect()
}

/// `POST /v1/proxies` (`put` = [`Put::Create`]) and `PUT /v1/proxies/{id}`
/// ([`Put::Replace`], `path_id` the id in the path): stores `spec` with its password
/// sealed, makes it the default if it says so, and answers its view.
pub async fn put(
    node: &Node,
    spec: ProxySpec,
    put: Put,
    path_id: Option<&str>,
) -> Result<ProxyView, Failure> {
    if let Some(path_id) = path_id
        && path_id != spec.id
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("id: the body says {:?}, the path {path_id:?}", spec.id),
        ));
    }
    read_only(node, &spec.id)?;
    let services = &node.services;
    let stored = StoredProxy::seal(&spec, &services.master).map_err(|e| match e {
        SealError::Invalid(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        SealError::Crypto(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    let written = services
        .store
        .put_proxy(stored, put)
        .await
        .map_err(store_failure)?;
    if !written {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "upstream proxy {:?} exists; `sluice proxy add --replace` (PUT /v1/proxies/{}) \
                 replaces it",
                spec.id, spec.id
            ),
        ));
    }
    if spec.default {
        let default = StoredDefault::seal(&spec.id, &services.master)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let set = services
            .store
            .set_default_proxy(default)
            .await
            .map_err(store_failure)?;
        if !set {
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "upstream proxy {:?} was removed before it could be made the default",
                    spec.id
                ),
            ));
        }
    }
    tracing::info!(
        id = spec.id,
        replaced = (put == Put::Replace),
        default = spec.default,
        "upstream: proxy stored"
    );
    shown(node, &spec.id).await
}

/// `DELETE /v1/proxies/{id}`: removes a stored proxy (not the default); answers its view
/// as it was.
pub async fn remove(node: &Node, id: &str) -> Result<ProxyView, Failure> {
    read_only(node, id)?;
    let before = shown(node, id).await;
    match node
        .services
        .store
        .remove_proxy(id)
        .await
        .map_err(store_failure)?
    {
        Removed::Yes => {}
        Removed::Absent => return Err(not_found(id)),
        Removed::IsDefault => {
            return Err((
                StatusCode::CONFLICT,
                format!(
                    "upstream proxy {id:?} is the default; `sluice proxy default --unset {id}` \
                     first (connections that use it would otherwise change path unseen)"
                ),
            ));
        }
    }
    tracing::info!(id, "upstream: stored proxy removed");
    refresh(node).await?;
    before
}

/// `PUT /v1/proxies/{id}/default` (`on`) and `DELETE /v1/proxies/{id}/default`: makes a
/// stored proxy the node default (over the file's), or stops it being the default.
pub async fn set_default(node: &Node, id: &str, on: bool) -> Result<ProxyView, Failure> {
    read_only(node, id)?;
    let services = &node.services;
    let changed = if on {
        let default = StoredDefault::seal(id, &services.master)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        services.store.set_default_proxy(default).await
    } else {
        services.store.unset_default_proxy(id).await
    }
    .map_err(store_failure)?;
    if !changed && on {
        return Err(not_found(id));
    }
    if !changed {
        return Err((
            StatusCode::CONFLICT,
            format!("upstream proxy {id:?} is not the default"),
        ));
    }
    tracing::info!(id, default = on, "upstream: default proxy changed");
    shown(node, id).await
}

/// Refuses an id that is not one (the empty id of `//default` among them) and a change to a
/// proxy of the node's file or environment.
fn read_only(node: &Node, id: &str) -> Result<(), Failure> {
    let proxies = node.proxy.dialer.proxies();
    let source = if proxies.list.iter().any(|p| p.id == id) {
        "the node's configuration ([[upstream.proxies]])"
    } else if proxies.env.as_ref().is_some_and(|p| p.id == id) {
        "the daemon's environment (SLUICE_PROXY_URL or PROXY_URL)"
    } else {
        return check_id(id).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()));
    };
    Err((
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "upstream proxy {id:?} is defined in {source}, which the API cannot change; \
             edit it there and restart the daemon, or give an API proxy another id"
        ),
    ))
}

/// Puts the store's proxies in effect on this node at once (other nodes follow on the
/// store's announcement).
async fn refresh(node: &Node) -> Result<(), Failure> {
    node.refresh_proxies().await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the change is stored but could not be read back: {e}"),
        )
    })
}

/// Refreshes, then the view of proxy `id`.
async fn shown(node: &Node, id: &str) -> Result<ProxyView, Failure> {
    refresh(node).await?;
    list(node)
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> Failure {
    (
        StatusCode::NOT_FOUND,
        format!("no upstream proxy {id:?}; `sluice proxy list` shows the ids"),
    )
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
        .ok_or_else(|| not_found(id))?;
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
