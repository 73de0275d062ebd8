//! The session store interface, shared by the embedded store and the Redis store.
//!
//! Methods return boxed futures ([`StoreFuture`]) so the trait is object safe and the daemon
//! holds an `Arc<dyn SessionStore>` without the `async-trait` crate.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast;

use super::crypto::{CryptoError, MasterKey, credential_aad};
use super::model::{
    NewSession, Session, SessionState, StoredCredential, unix_now, upstream_proxy_aad,
};
use super::proxies::{ProxyTable, Put, Removed, StoredDefault, StoredProxy};
use super::token::{Token, TokenDigest, TokenError, new_session_id};
use super::validate::ValidationError;
use crate::policy::PolicySpec;

/// The id sent on [`SessionStore::revocations`] when revocations may have been missed (the
/// store's subscription was re-established): every cached session must be dropped.
pub const RESYNC: &str = "*";

/// A store operation in flight.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
///
/// # Security
/// Messages never contain a token, a credential value or a store password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request was not valid (names the field).
    #[error("session: {0}")]
    Invalid(#[from] ValidationError),
    /// The store could not be reached or did not answer.
    #[error("store: unreachable ({0})")]
    Unreachable(String),
    /// A stored record could not be read.
    #[error("store: session record {id} is unreadable ({reason})")]
    Corrupt {
        /// The record's session id or key.
        id: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Writing the embedded store's file failed.
    #[error("store: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store's file has permissions that expose it.
    #[error("store: {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Sealing a credential failed.
    #[error("store: {0}")]
    Crypto(#[from] CryptoError),
    /// Generating a token or id failed.
    #[error("store: {0}")]
    Token(#[from] TokenError),
}

/// Where sessions live: in this process ([`super::EmbeddedStore`]) or in Redis
/// ([`super::RedisStore`]), shared by every node.
///
/// Reads return sessions whatever their state; callers decide with
/// [`Session::is_usable`]. Sessions past expiry read as [`SessionState::Expired`] until the
/// store drops them.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Validates `new`, seals its credentials under `key`, stores the session as `pending`
    /// and returns it with its token.
    ///
    /// # Security
    /// The token exists only in the return value; the store keeps its digest.
    fn create<'a>(
        &'a self,
        new: NewSession,
        key: &'a MasterKey,
    ) -> StoreFuture<'a, (Session, Token)>;

    /// The session with this id.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// The session whose token has this digest.
    fn find_by_token<'a>(&'a self, digest: &'a TokenDigest) -> StoreFuture<'a, Option<Session>>;

    /// Every stored session, oldest first.
    fn list(&self) -> StoreFuture<'_, Vec<Session>>;

    /// Marks the session revoked and tells every node; `false` if there is no such session.
    fn revoke<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;

    /// Moves a pending session to active; `true` if it changed (`false`: absent, already
    /// active, revoked or expired).
    fn activate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;

    /// Replaces the session's policy (already validated) and tells every node; `false` if
    /// there is no such session. Connections opened afterwards follow the new policy.
    fn set_policy<'a>(&'a self, id: &'a str, policy: &'a PolicySpec) -> StoreFuture<'a, bool>;

    /// Ids of sessions revoked or changed on any node, as they happen: a cache drops them
    /// and reads them again. [`RESYNC`] means "drop all".
    fn revocations(&self) -> broadcast::Receiver<String>;

    /// The upstream proxies created through the API, and their default.
    fn proxies(&self) -> StoreFuture<'_, ProxyTable>;

    /// Stores `proxy`; `false` when `put` is [`Put::Create`] and the id is taken.
    fn put_proxy(&self, proxy: StoredProxy, put: Put) -> StoreFuture<'_, bool>;

    /// Removes proxy `id`, unless it is the default.
    fn remove_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Removed>;

    /// Makes `default` the default; `false` if there is no such proxy.
    fn set_default_proxy(&self, default: StoredDefault) -> StoreFuture<'_, bool>;

    /// Stops proxy `id` being the default; `false` if it is not (an unreadable default is
    /// cleared whatever `id` says).
    fn unset_default_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;

    /// A message each time the proxies change on any node (and when changes may have been
    /// missed): read [`SessionStore::proxies`] again.
    fn proxy_changes(&self) -> broadcast::Receiver<()>;
}

/// Builds the session a validated `new` describes, sealing its secrets: the part of
/// [`SessionStore::create`] every store shares.
pub fn seal_new_session(new: NewSession, key: &MasterKey) -> Result<(Session, Token), StoreError> {
    new.validate()?;
    let id = new_session_id()?;
    let token = Token::generate()?;
    let now = unix_now();
    let credentials = new
        .credentials
        .into_iter()
        .map(|(spec, secret)| {
            let sealed = key.seal(secret.expose(), &credential_aad(&id, &spec.name))?;
            Ok(StoredCredential { spec, sealed })
        })
        .collect::<Result<Vec<_>, CryptoError>>()?;
    let (upstream_proxy, upstream_proxy_password) = match new.upstream_proxy {
        Some(url) => {
            let (bare, password) = crate::upstream::egress::split_password(&url);
            let password = zeroize::Zeroizing::new(password);
            let sealed = password
                .as_deref()
                .map(|p| key.seal(p.as_bytes(), &upstream_proxy_aad(&id)))
                .transpose()?;
            (Some(bare), sealed)
        }
        None => (None, None),
    };
    let session = Session {
        id,
        token_sha256: token.digest(),
        state: SessionState::Pending,
        created_at: now,
        expires_at: now.saturating_add(new.ttl.as_secs()),
        credentials,
        policy: new.policy,
        upstream_proxy,
        upstream_proxy_password,
        labels: new.labels,
    };
    Ok((session, token))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::credentials::{CredentialSpec, Secret};
    use crate::policy::PolicySpec;

    /// The credential value and proxy password the store tests search for.
    pub(crate) const SECRET: &[u8] = b"ghp_TopSecretValue123";
    pub(crate) const PROXY_PASSWORD: &str = "ProxyPassw0rd";

    pub(crate) fn new_session(ttl: Duration) -> NewSession {
        NewSession {
            ttl,
            credentials: vec![(
                CredentialSpec {
                    name: "github".into(),
                    hosts: vec!["api.github.com".into()],
                    headers: vec!["authorization".into()],
                    query: false,
                    body: false,
                },
                Secret::new(SECRET.to_vec()),
            )],
            policy: PolicySpec::default(),
            upstream_proxy: Some(format!("http://agent:{PROXY_PASSWORD}@proxy.internal:3128")),
            labels: BTreeMap::from([("owner".into(), "ci".into())]),
        }
    }

    #[test]
    fn sealing_keeps_no_plaintext() {
        let key = MasterKey::generate().unwrap();
        let (session, token) =
            seal_new_session(new_session(Duration::from_secs(600)), &key).unwrap();
        assert_eq!(session.state, SessionState::Pending);
        assert_eq!(session.expires_at - session.created_at, 600);
        assert_eq!(session.token_sha256, token.digest());
        assert_eq!(
            session.upstream_proxy.as_deref(),
            Some("http://agent@proxy.internal:3128/")
        );
        let json = serde_json::to_string(&session).unwrap();
        assert!(!json.contains("TopSecret") && !json.contains(PROXY_PASSWORD));
        assert!(!json.contains(token.expose()));
        assert_eq!(
            session
                .open_credential("github", &key)
                .unwrap()
                .unwrap()
                .expose(),
            SECRET
        );
        let password = session.upstream_proxy_password(&key).unwrap().unwrap();
        assert_eq!(password.expose(), PROXY_PASSWORD.as_bytes());
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, session);
    }

    #[test]
    fn invalid_request_is_refused_with_the_field() {
        let key = MasterKey::generate().unwrap();
        let err = seal_new_session(new_session(Duration::ZERO), &key).unwrap_err();
        assert!(err.to_string().starts_with("session: ttl:"), "{err}");
    }
}
