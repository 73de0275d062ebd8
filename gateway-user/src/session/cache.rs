//! The node-local session cache the data path authenticates against.
//!
//! Positive lookups are kept for a short time (5 s by default) so each request does not ask
//! the store; misses for at most 1 s (so a just-created session is found quickly, and a
//! spray of made-up tokens costs one store lookup per token per second). Revocations arrive
//! by push ([`SessionStore::revocations`]): the session is dropped from the cache at once, so
//! a revocation on any node takes effect here within the pub/sub latency (milliseconds), not
//! after the cache TTL. [`RESYNC`] (sent after the store's subscription reconnects) drops
//! everything.
//!
//! # What happens when Redis is down
//! - A session this node has seen, whose entry is cached (even past the 5 s freshness) and
//!   which is neither revoked nor past `expires_at`, keeps working from the stale entry; a
//!   warning is logged once per outage. Revocations cannot be issued through an unreachable
//!   store, and after the subscription comes back the resync signal drops every stale entry.
//! - A session this node has not seen is refused with [`AuthError::StoreUnavailable`]: fail
//!   closed, never "allow because the store did not answer".
//! - Revoked and expired sessions are refused with their reason, cached or not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::model::{Session, SessionState, unix_now};
use super::store::{RESYNC, SessionStore, StoreError};
use super::token::{Token, TokenDigest};

/// Longest a miss is remembered, whatever the configuration says.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(1);
const MAX_MISSES: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Cache timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a found session is served without asking the store again. Default is 5 s.
    pub positive_ttl: Duration,
    /// How long a miss is remembered; capped at [`MAX_NEGATIVE_TTL`]. Default is 1 s.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            positive_ttl: Duration::from_secs(5),
            negative_ttl: MAX_NEGATIVE_TTL,
        }
    }
}

/// Why a session was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No session has this token (or it is not a session token at all).
    #[error("session: unknown token")]
    UnknownToken,
    /// No session has this id.
    #[error("session: no session {0}")]
    UnknownSession(String),
    /// The session was revoked.
    #[error("session {0} is revoked")]
    Revoked(String),
    /// The session is past its expiry.
    #[error("session {0} has expired")]
    Expired(String),
    /// The store did not answer and the session is not cached on this node.
    #[error(
        "session: the store is unavailable and this session is not cached here; refusing ({0})"
    )]
    StoreUnavailable(String),
}

/// Sessions by token and id, in front of a [`SessionStore`].
#[derive(Debug)]
pub struct SessionCache {
    inner: Arc<Inner>,
    listener: JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn SessionStore>,
    config: CacheConfig,
    maps: Mutex<Maps>,
    /// Bumped on every revocation, so a lookup that raced one does not cache its answer.
    epoch: AtomicU64,
    /// Whether the current outage has been logged.
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<String, Cached>,
    by_token: HashMap<TokenDigest, String>,
    misses: HashMap<Key, Instant>,
}

#[derive(Debug)]
struct Cached {
    session: Arc<Session>,
    fetched: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Token(TokenDigest),
    Id(String),
}

impl SessionCache {
    /// A cache in front of `store`, listening to its revocations (spawns a task: call within
    /// a Tokio runtime).
    pub fn new(store: Arc<dyn SessionStore>, config: CacheConfig) -> SessionCache {
        let config = CacheConfig {
            negative_ttl: config.negative_ttl.min(MAX_NEGATIVE_TTL),
            ..config
        };
        let revocations = store.revocations();
        let inner = Arc::new(Inner {
            store,
            config,
            maps: Mutex::new(Maps::default()),
            epoch: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        });
        let listener = tokio::spawn(listen(Arc::downgrade(&inner), revocations));
        SessionCache { inner, listener }
    }

    /// The usable session whose token is `token`.
    ///
    /// # Security
    /// Only the token's digest is looked up or kept.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Session>, AuthError> {
        if !Token::is_well_formed(token) {
            return Err(AuthError::UnknownToken);
        }
        self.inner.lookup(Key::Token(TokenDigest::of(token))).await
    }

    /// The usable session with this id (for sandboxes enrolled under a session).
    pub async fn by_id(&self, id: &str) -> Result<Arc<Session>, AuthError> {
        self.inner.lookup(Key::Id(id.to_owned())).await
    }
}

impl Drop for SessionCache {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Inner {
    async fn lookup(&self, key: Key) -> Result<Arc<Session>, AuthError> {
        let now = Instant::now();
        let stale = {
            let maps = self.lock();
            let cached = maps.cached(&key);
            if let Some(cached) = cached.filter(|c| now < c.fetched + self.config.positive_ttl) {
                return decide(&cached.session);
            }
            if maps
                .misses
                .get(&key)
                .is_some_and(|at| now < *at + self.config.negative_ttl)
            {
                return Err(unknown(&key));
            }
            cached.map(|c| Arc::clone(&c.session))
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        let found = match &key {
            Key::Token(digest) => self.store.find_by_token(digest).await,
            Key::Id(id) => self.store.get(id).await,
        };
        match found {
            Ok(found) => {
                if self.warned.swap(false, Ordering::Relaxed) {
                    tracing::info!("session cache: the store answers again");
                }
                let session = found.map(Arc::new);
                if self.epoch.load(Ordering::SeqCst) == epoch {
                    self.lock().record(&key, session.clone(), Instant::now());
                }
                match session {
                    Some(session) => decide(&session),
                    None => Err(unknown(&key)),
                }
            }
            Err(err) => self.outage(err, stale),
        }
    }

    /// The store failed: serve a stale but still valid entry, refuse anything else.
    fn outage(
        &self,
        err: StoreError,
        stale: Option<Arc<Session>>,
    ) -> Result<Arc<Session>, AuthError> {
        let first = !self.warned.swap(true, Ordering::Relaxed);
        match stale {
            Some(session) => {
                if first {
                    tracing::warn!(error = %err, "session cache: store unavailable; serving cached sessions until they expire or are revoked");
                }
                decide(&session)
            }
            None => {
                if first {
                    tracing::warn!(error = %err, "session cache: store unavailable; refusing sessions not cached here");
                }
                Err(AuthError::StoreUnavailable(err.to_string()))
            }
        }
    }

    fn forget(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut maps = self.lock();
        if id == RESYNC {
            maps.by_id.clear();
            maps.by_token.clear();
            maps.misses.clear();
        } else if let Some(cached) = maps.by_id.remove(id) {
            maps.by_token.remove(&cached.session.token_sha256);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Maps {
    fn cached(&self, key: &Key) -> Option<&Cached> {
        match key {
            Key::Token(digest) => self.by_token.get(digest).and_then(|id| self.by_id.get(id)),
            Key::Id(id) => self.by_id.get(id),
        }
    }

    fn record(&mut self, key: &Key, session: Option<Arc<Session>>, now: Instant) {
        match session {
            Some(session) => {
                self.misses.remove(key);
                self.by_token
                    .insert(session.token_sha256, session.id.clone());
                self.by_id.insert(
                    session.id.clone(),
                    Cached {
                        session,
                        fetched: now,
                    },
                );
            }
            None => {
                let id = match key {
                    Key::Token(digest) => self.by_token.remove(digest),
                    Key::Id(id) => Some(id.clone()),
                };
                if let Some(gone) = id.and_then(|id| self.by_id.remove(&id)) {
                    self.by_token.remove(&gone.session.token_sha256);
                }
                if self.misses.len() >= MAX_MISSES {
                    self.misses.clear();
                }
                self.misses.insert(key.clone(), now);
            }
        }
    }

    fn prune(&mut self, now: Instant, unix: u64, negative_ttl: Duration) {
        self.misses.retain(|_, at| now < *at + negative_ttl);
        let expired: Vec<String> = self
            .by_id
            .values()
            .filter(|c| unix >= c.session.expires_at)
            .map(|c| c.session.id.clone())
            .collect();
        for id in expired {
            if let Some(gone) = self.by_id.remove(&id) {
                self.by_token.remove(&gone.session.token_sha256);
            }
        }
    }
}

fn decide(session: &Arc<Session>) -> Result<Arc<Session>, AuthError> {
    match session.effective_state(unix_now()) {
        SessionState::Pending | SessionState::Active => Ok(Arc::clone(session)),
        SessionState::Revoked => Err(AuthError::Revoked(session.id.clone())),
        SessionState::Expired => Err(AuthError::Expired(session.id.clone())),
    }
}

fn unknown(key: &Key) -> AuthError {
    match key {
        Key::Token(_) => AuthError::UnknownToken,
        Key::Id(id) => AuthError::UnknownSession(id.clone()),
    }
}

/// Drops revoked sessions as the store announces them, and prunes expired entries.
async fn listen(inner: std::sync::Weak<Inner>, mut revocations: broadcast::Receiver<String>) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            received = revocations.recv() => {
                let Some(inner) = inner.upgrade() else { return };
                match received {
                    Ok(id) => inner.forget(&id),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "session cache: revocations lagged; dropping every cached session");
                        inner.forget(RESYNC);
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::warn!("session cache: the store stopped sending revocations; dropping every cached session");
                        inner.forget(RESYNC);
                        return;
                    }
                }
            }
            _ = prune.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let negative_ttl = inner.config.negative_ttl;
                inner.lock().prune(Instant::now(), unix_now(), negative_ttl);
            }
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
