//! Session endpoints of the control API: create, list, show, revoke, and what a sandbox
//! needs (`env`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::api::CreateSession;
use crate::daemon::Node;
use crate::policy::CompiledPolicy;
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

/// Why `upstream_proxy` is refused (the request's URL, which may hold a password, is never
/// quoted).
pub const UPSTREAM_PROXY_REFUSED: &str = "upstream_proxy: upstream proxy chaining is not \
    supported yet (tracker issue 12): this session's traffic would go direct, not through \
    the proxy. Create the session without it";

/// An API failure: status and a message naming the problem.
pub type Failure = (StatusCode, String);

/// Creates a session from a parsed request.
///
/// # Security
/// `upstream_proxy` is refused: the data path does not chain through upstream proxies yet
/// (tracker issue 12), and a session that stored one would believe its traffic takes the
/// mandated path while it goes direct.
pub async fn create(node: &Node, request: CreateSession) -> Result<CreatedSession, Failure> {
    if request.upstream_proxy.is_some() {
        return Err((StatusCode::BAD_REQUEST, UPSTREAM_PROXY_REFUSED.to_owned()));
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

fn store_failure(error: StoreError) -> Failure {
    let status = match error {
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.to_string())
}
