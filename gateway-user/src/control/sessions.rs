//! Session endpoints of the control API: create, list, show, revoke, and what a sandbox
//! needs (`env`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::api::CreateSession;
use crate::audit::{Decision, Kind, Record, Who};
use crate::daemon::Node;
use crate::policy::{CompiledPolicy, PolicySpec};
use crate::session::{
    AuthError, NewSession, SessionState, SessionView, StoreError, model::unix_now,
};

/// `POST /v1/sessions` answer: the only place the token ever appears.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct CreatedSession {
    /// The session.
    pub session: SessionView,
    /// The session token (`sluice_stk_…`): shown once, stored only as a digest.
    pub token: String,
    /// Placeholder per credential name (`NAME` → `sluice_cred:NAME`).
    pub placeholders: BTreeMap<String, String>,
}

/// An API failure: status and a message naming the problem.
pub type Failure = (StatusCode, String);

/// Creates a session from a parsed request.
///
/// # Security
/// An `upstream_proxy` id must name a proxy this node defines (a node that does not know it
/// refuses the session's connections rather than send them direct). A URL's password is
/// sealed by the store and never shown again.
pub async fn create(node: &Node, request: CreateSession) -> Result<CreatedSession, Failure> {
    if let Some(choice) = request.upstream_proxy.as_deref() {
        check_proxy_choice(node, choice)?;
    }
    CompiledPolicy::compile(&request.policy)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("policy.{e}")))?;
    let placeholders = request
        .credentials
        .iter()
        .map(|c| (c.name.clone(), format!("sluice_cred:{}", c.name)))
        .collect();
    let new = NewSession {
        ttl: Duration::from_secs(request.ttl_seconds),
        credentials: request.credentials.into_iter().map(|c| c.split()).collect(),
        policy: request.policy,
        upstream_proxy: request.upstream_proxy,
        labels: request.labels,
    };
    let services = &node.services;
    let (session, token) = services
        .store
        .create(new, &services.master)
        .await
        .map_err(store_failure)?;
    tracing::info!(session = %session.id, "session: created");
    Ok(CreatedSession {
        session: session.view(unix_now()),
        token: token.expose().to_owned(),
        placeholders,
    })
}

/// Refuses an `upstream_proxy` that is neither `none`, a URL, nor the id of a proxy this
/// node defines (the message never quotes a URL's password).
fn check_proxy_choice(node: &Node, choice: &str) -> Result<(), Failure> {
    use crate::upstream::egress::ProxyChoice;
    let bad = |why: String| (StatusCode::BAD_REQUEST, format!("upstream_proxy: {why}"));
    match ProxyChoice::parse(choice).map_err(|e| bad(e.to_string()))? {
        ProxyChoice::Id(id) => {
            let proxies = node.proxy.dialer.proxies();
            if proxies.by_id(&id).is_some() {
                return Ok(());
            }
            let ids = proxies.ids();
            Err(bad(format!(
                "this node defines no proxy {id:?} (it defines: {}); give an id from \
                 `sluice proxy list`, an http(s):// URL, or none",
                if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.join(", ")
                }
            )))
        }
        ProxyChoice::Direct | ProxyChoice::Url(_) => Ok(()),
    }
}

/// Every session (without tokens or values).
pub async fn list(node: &Node) -> Result<Vec<SessionView>, Failure> {
    let now = unix_now();
    let sessions = node.services.store.list().await.map_err(store_failure)?;
    Ok(sessions.iter().map(|s| s.view(now)).collect())
}

/// One session.
pub async fn show(node: &Node, id: &str) -> Result<SessionView, Failure> {
    match node.services.store.get(id).await.map_err(store_failure)? {
        Some(session) => Ok(session.view(unix_now())),
        None => Err(not_found(id)),
    }
}

/// Revokes a session on every node.
pub async fn revoke(node: &Node, id: &str) -> Result<SessionView, Failure> {
    if !node
        .services
        .store
        .revoke(id)
        .await
        .map_err(store_failure)?
    {
        return Err(not_found(id));
    }
    tracing::info!(session = %id, "session: revoked");
    show(node, id).await
}

/// Replaces a session's policy on every node: connections opened from then on follow it
/// (one already open keeps the policy it started with). The policy is compiled first, so
/// a bad one is refused with the field at fault and nothing changes; a revoked or expired
/// session is refused (409) since nothing would ever use the change.
pub async fn set_policy(node: &Node, id: &str, policy: PolicySpec) -> Result<SessionView, Failure> {
    CompiledPolicy::compile(&policy)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("policy.{e}")))?;
    let store = &node.services.store;
    let session = store
        .get(id)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| not_found(id))?;
    if !session.is_usable(unix_now()) {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "session {id} is {}: its policy can no longer change; create a new session",
                session.state.as_str()
            ),
        ));
    }
    if !store.set_policy(id, &policy).await.map_err(store_failure)? {
        return Err(not_found(id));
    }
    let mut record = Record::new(Kind::Session);
    record.who = Some(Who {
        session: Some(id.to_owned()),
        ..Who::default()
    });
    record.decision = Decision::Allow;
    record.reason = Some("policy replaced through the API".to_owned());
    node.audit.write(record);
    tracing::info!(session = %id, "session: policy replaced");
    show(node, id).await
}

/// Fails unless `id` names a usable session (enrolling a sandbox under it). Asks the
/// node's session cache, so a session this node has seen can still be used while the store
/// is unreachable; one it has not seen cannot (fail closed).
pub async fn require_usable(node: &Node, id: &str) -> Result<(), Failure> {
    let session = node.services.sessions.by_id(id).await.map_err(|e| {
        let status = match e {
            AuthError::UnknownSession(_) | AuthError::UnknownToken => StatusCode::NOT_FOUND,
            AuthError::Revoked(_) | AuthError::Expired(_) => StatusCode::CONFLICT,
            AuthError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, e.to_string())
    })?;
    if session.state == SessionState::Pending {
        let _ = node.services.store.activate(id).await;
    }
    Ok(())
}

fn not_found(id: &str) -> Failure {
    (StatusCode::NOT_FOUND, format!("no session {id}"))
}

/// The answer to a store error: 400 for invalid input, 503 when unreachable.
pub fn store_failure(error: StoreError) -> Failure {
    let status = match error {
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.to_string())
}
