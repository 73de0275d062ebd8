//! Session cache tests: a scripted store for timing and outages, and two Redis "nodes".

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::policy::PolicySpec;
use crate::session::crypto::MasterKey;
use crate::session::embedded::EmbeddedStore;
use crate::session::model::NewSession;
use crate::session::proxies::{ProxyTable, Put, Removed, StoredDefault, StoredProxy};
use crate::session::redis::RedisStore;
use crate::session::store::StoreFuture;
use crate::session::store::tests::new_session;
use crate::testing::RedisServer;

/// An in-memory store that counts lookups and can be taken down or made to report
/// sessions as long expired.
#[derive(Debug)]
struct Scripted {
    inner: EmbeddedStore,
    lookups: AtomicUsize,
    down: AtomicBool,
    expired: AtomicBool,
    announce: broadcast::Sender<String>,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            inner: EmbeddedStore::in_memory(),
            lookups: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            announce: broadcast::channel(16).0,
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    fn answer(&self, found: Option<Session>) -> Result<Option<Session>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unreachable("test: down".into()));
        }
        Ok(found.map(|mut s| {
            if self.expired.load(Ordering::SeqCst) {
                s.expires_at = 1;
            }
            s
        }))
    }
}

impl SessionStore for Scripted {
    fn create<'a>(
        &'a self,
        new: NewSession,
        key: &'a MasterKey,
    ) -> StoreFuture<'a, (Session, Token)> {
        self.inner.create(new, key)
    }
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move { self.answer(self.inner.get(id).await?) })
    }
    fn find_by_token<'a>(&'a self, digest: &'a TokenDigest) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move { self.answer(self.inner.find_by_token(digest).await?) })
    }
    fn list(&self) -> StoreFuture<'_, Vec<Session>> {
        self.inner.list()
    }
    fn revoke<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let existed = self.inner.revoke(id).await?;
            let _ = self.announce.send(id.to_owned());
            Ok(existed)
        })
    }
    fn activate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        self.inner.activate(id)
    }
    fn set_policy<'a>(&'a self, id: &'a str, policy: &'a PolicySpec) -> StoreFuture<'a, bool> {
        self.inner.set_policy(id, policy)
    }
    fn revocations(&self) -> broadcast::Receiver<String> {
        self.announce.subscribe()
    }
    fn proxies(&self) -> StoreFuture<'_, ProxyTable> {
        self.inner.proxies()
    }
    fn put_proxy(&self, proxy: StoredProxy, put: Put) -> StoreFuture<'_, bool> {
        self.inner.put_proxy(proxy, put)
    }
    fn remove_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Removed> {
        self.inner.remove_proxy(id)
    }
    fn set_default_proxy(&self, default: StoredDefault) -> StoreFuture<'_, bool> {
        self.inner.set_default_proxy(default)
    }
    fn unset_default_proxy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        self.inner.unset_default_proxy(id)
    }
    fn proxy_changes(&self) -> broadcast::Receiver<()> {
        self.inner.proxy_changes()
    }
}

async fn created(store: &dyn SessionStore) -> (Session, Token) {
    let key = MasterKey::generate().unwrap();
    store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap()
}

fn unknown_token() -> String {
    format!("sluice_stk_{}", "x".repeat(43))
}

/// Polls until `check` holds; fails the test if it has not after 30 s (a hang guard, not a
/// speed requirement).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn caches_hits_for_the_ttl_and_misses_for_a_second() {
    let store = Scripted::new();
    let (session, token) = created(store.as_ref()).await;
    let cache = SessionCache::new(store.clone(), CacheConfig::default());

    assert_eq!(
        cache.authenticate(token.expose()).await.unwrap().id,
        session.id
    );
    assert_eq!(cache.by_id(&session.id).await.unwrap().id, session.id);
    assert_eq!(store.lookups(), 1, "second lookup served from the cache");
    tokio::time::advance(Duration::from_secs(5)).await;
    cache.authenticate(token.expose()).await.unwrap();
    assert_eq!(store.lookups(), 2, "refetched after 5 s");

    assert_eq!(
        cache.authenticate("garbage").await,
        Err(AuthError::UnknownToken)
    );
    assert_eq!(store.lookups(), 2, "malformed tokens never reach the store");
    let stranger = unknown_token();
    assert_eq!(
        cache.authenticate(&stranger).await,
        Err(AuthError::UnknownToken)
    );
    assert_eq!(
        cache.authenticate(&stranger).await,
        Err(AuthError::UnknownToken)
    );
    assert_eq!(store.lookups(), 3, "a miss is remembered briefly");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        cache.authenticate(&stranger).await,
        Err(AuthError::UnknownToken)
    );
    assert_eq!(store.lookups(), 4, "but not longer than 1 s");
    let err = cache.by_id("ses_nope").await.unwrap_err();
    assert_eq!(err, AuthError::UnknownSession("ses_nope".into()));

    // A configured negative TTL above 1 s is capped.
    let long = CacheConfig {
        negative_ttl: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let capped = SessionCache::new(store.clone(), long);
    assert_eq!(capped.inner.config.negative_ttl, MAX_NEGATIVE_TTL);
}

#[tokio::test]
async fn revocation_drops_the_cached_session_at_once() {
    let store = Scripted::new();
    let (session, token) = created(store.as_ref()).await;
    let (other, other_token) = created(store.as_ref()).await;
    // Entries stay fresh for the whole test: only the announcement can drop them.
    let config = CacheConfig {
        positive_ttl: Duration::from_secs(3600),
        ..CacheConfig::default()
    };
    let cache = SessionCache::new(store.clone(), config);
    cache.authenticate(token.expose()).await.unwrap();
    cache.authenticate(other_token.expose()).await.unwrap();

    store.revoke(&session.id).await.unwrap();
    eventually("the revoked session is refused", async || {
        cache.authenticate(token.expose()).await == Err(AuthError::Revoked(session.id.clone()))
    })
    .await;
    let before = store.lookups();
    assert_eq!(
        cache.authenticate(other_token.expose()).await.unwrap().id,
        other.id
    );
    assert_eq!(store.lookups(), before, "other sessions stay cached");

    let _ = store.announce.send(RESYNC.to_owned());
    eventually("a resync drops every entry", async || {
        cache.authenticate(other_token.expose()).await.unwrap();
        store.lookups() > before
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn outage_serves_cached_sessions_and_refuses_the_rest() {
    let store = Scripted::new();
    let (session, token) = created(store.as_ref()).await;
    let (_, uncached) = created(store.as_ref()).await;
    let cache = SessionCache::new(store.clone(), CacheConfig::default());
    cache.authenticate(token.expose()).await.unwrap();

    store.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        assert_eq!(
            cache.authenticate(token.expose()).await.unwrap().id,
            session.id
        );
    }
    assert!(store.lookups() > 1, "the store was asked (and failed)");
    let refused = cache.authenticate(uncached.expose()).await.unwrap_err();
    assert!(
        matches!(refused, AuthError::StoreUnavailable(_)),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("store: unreachable"),
        "{refused}"
    );
    assert!(!refused.to_string().contains(uncached.expose()));
    let refused = cache.by_id("ses_other").await.unwrap_err();
    assert!(
        matches!(refused, AuthError::StoreUnavailable(_)),
        "{refused:?}"
    );

    store.down.store(false, Ordering::SeqCst);
    cache.authenticate(uncached.expose()).await.unwrap();
}

#[tokio::test]
async fn expired_sessions_are_refused_with_the_reason() {
    let store = Scripted::new();
    let (session, token) = created(store.as_ref()).await;
    store.expired.store(true, Ordering::SeqCst);
    let cache = SessionCache::new(store.clone(), CacheConfig::default());
    assert_eq!(
        cache.authenticate(token.expose()).await,
        Err(AuthError::Expired(session.id.clone()))
    );
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(
        cache.by_id(&session.id).await,
        Err(AuthError::Expired(session.id.clone()))
    );
}

#[tokio::test]
async fn redis_revocation_on_one_node_drops_the_session_on_another() {
    let server = RedisServer::start().unwrap();
    let node_a = RedisStore::connect(&server.url(), "c:").await.unwrap();
    let node_b: Arc<dyn SessionStore> =
        Arc::new(RedisStore::connect(&server.url(), "c:").await.unwrap());
    // Node B's entry stays fresh for the whole test: only the pushed revocation can make it
    // ask the store again and see the session revoked.
    let config = CacheConfig {
        positive_ttl: Duration::from_secs(3600),
        ..CacheConfig::default()
    };
    let cache_b = SessionCache::new(node_b, config);
    let (session, token) = created(&node_a).await;
    cache_b.authenticate(token.expose()).await.unwrap();

    node_a.revoke(&session.id).await.unwrap();
    eventually("node B refuses the revoked session", async || {
        cache_b.authenticate(token.expose()).await == Err(AuthError::Revoked(session.id.clone()))
    })
    .await;
}

#[tokio::test]
async fn redis_outage_keeps_cached_sessions_and_fails_closed_for_others() {
    let mut server = RedisServer::start().unwrap();
    let store: Arc<dyn SessionStore> =
        Arc::new(RedisStore::connect(&server.url(), "c:").await.unwrap());
    // Entries are never fresh: every lookup asks the store, so a served entry is a stale one.
    let config = CacheConfig {
        positive_ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    let cache = SessionCache::new(store.clone(), config);
    let (session, token) = created(store.as_ref()).await;
    let (_, uncached) = created(store.as_ref()).await;
    cache.authenticate(token.expose()).await.unwrap();

    server.kill();
    assert_eq!(
        cache.authenticate(token.expose()).await.unwrap().id,
        session.id,
        "stale entry served"
    );
    let refused = cache.authenticate(uncached.expose()).await.unwrap_err();
    assert!(
        matches!(refused, AuthError::StoreUnavailable(_)),
        "{refused:?}"
    );
    let refused = cache.authenticate(&unknown_token()).await.unwrap_err();
    assert!(
        matches!(refused, AuthError::StoreUnavailable(_)),
        "{refused:?}"
    );
}
