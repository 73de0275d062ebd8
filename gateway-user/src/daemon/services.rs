//! The session services a node runs with: the store (embedded or Redis), the node-local
//! session cache, rate budgets, compiled policies and the master key.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::gate::{CompiledSessions, SessionGate};
use crate::live::LiveStore;
use crate::policy::{LocalLimiter, RateLimiter, RedisLimiter};
use crate::session::model::mask_password;
use crate::session::{
    CacheConfig, EmbeddedStore, KeySource, MasterKey, RedisStore, SessionCache, SessionStore,
};

/// What the request path and the control API share about sessions.
#[derive(Debug)]
pub struct Services {
    /// The store sessions are created in and read from.
    pub store: Arc<dyn SessionStore>,
    /// The node-local cache in front of it (revocations pushed).
    pub sessions: Arc<SessionCache>,
    /// Seals and opens credential values.
    pub master: Arc<MasterKey>,
    /// Request-rate budgets.
    pub limiter: Arc<dyn RateLimiter>,
    /// Compiled per-session policies.
    pub compiled: Arc<CompiledSessions>,
    /// The live configuration (its sessions: declared in the file, no policy, no
    /// credentials); swapped on reload.
    pub live: LiveStore,
}

impl Services {
    /// Opens the configured store (Redis when `store.redis_url` is set, else the embedded
    /// one in `state_dir`) and loads or creates the master key.
    ///
    /// # Errors
    /// Redis unreachable at start, a master key that is malformed or readable by others,
    /// an unreadable sessions file: the daemon does not start without its store.
    pub async fn start(config: &Config, live: LiveStore) -> anyhow::Result<Services> {
        let key_source = KeySource::from_env_or_file(config.master_key_path());
        let master = tokio::task::spawn_blocking(move || MasterKey::load(key_source))
            .await
            .context("daemon: load the master key")??;
        let (store, limiter): (Arc<dyn SessionStore>, Arc<dyn RateLimiter>) =
            match &config.store.redis_url {
                Some(url) => {
                    let shown = mask_password(url);
                    let prefix = &config.store.key_prefix;
                    let store = RedisStore::connect(url, prefix)
                        .await
                        .with_context(|| format!("daemon: session store at {shown}"))?;
                    let limiter = RedisLimiter::connect(url, prefix)
                        .await
                        .with_context(|| format!("daemon: rate limits at {shown}"))?;
                    tracing::info!(redis = %shown, "store: sessions and rate budgets in Redis");
                    (Arc::new(store), Arc::new(limiter))
                }
                None => {
                    let store = EmbeddedStore::open(&config.state_dir)
                        .context("daemon: open the embedded session store")?;
                    if let Some(path) = store.path() {
                        tracing::info!(path = %path.display(), "store: embedded sessions");
                    }
                    (Arc::new(store), Arc::new(LocalLimiter::new()))
                }
            };
        let sessions = Arc::new(SessionCache::new(store.clone(), CacheConfig::default()));
        Ok(Services {
            store,
            sessions,
            master: Arc::new(master),
            limiter,
            compiled: Arc::new(CompiledSessions::default()),
            live,
        })
    }

    /// The request hook that applies sessions to intercepted requests.
    pub fn gate(&self) -> SessionGate {
        SessionGate {
            sessions: self.sessions.clone(),
            compiled: self.compiled.clone(),
            limiter: self.limiter.clone(),
            master: self.master.clone(),
            live: self.live.clone(),
        }
    }
}
