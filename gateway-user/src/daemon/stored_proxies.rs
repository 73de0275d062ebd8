//! Keeps the dialer's API-created upstream proxies in step with the session store: read at
//! start, again whenever any node announces a change, and every [`REFRESH_EVERY`] in case
//! an announcement was lost.
//!
//! # Security
//! A stored proxy this node cannot build (its seal does not open with this node's master
//! key: written or changed by someone without it; a URL that no longer parses; an id the
//! node's file also defines) is kept as *broken*: a level that names it, or a default that
//! is it, refuses its connections rather than sending them another way. A store that cannot
//! be read, or whose table lost its epoch (Redis flushed or replaced), keeps the proxies last
//! read (never "no proxies", which would mean "direct").

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::Node;
use crate::session::{MasterKey, StoredProxy};
use crate::session::{ProxyTable, StoreError};
use crate::upstream::egress::{ProxyConfigError, ProxyUrl};
use crate::upstream::{NodeProxies, UpstreamProxy};

/// How often the proxies are reread without an announcement.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

impl Node {
    /// Rereads the API-created proxies from the store and puts them in effect.
    ///
    /// # Errors
    /// The store cannot be read; the proxies in effect stay.
    pub async fn refresh_proxies(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.proxy_refresh.lock().await;
        let table = self.services.store.proxies().await?;
        let now = self.proxy.dialer.proxies();
        same_table(&now, &table)?;
        let next = built(&table, &now, &self.services.master);
        for (id, reason) in &next.broken {
            tracing::warn!(id, reason, "upstream: stored proxy unusable on this node");
        }
        self.proxy.dialer.set_proxies(next);
        Ok(())
    }
}

/// Refreshes `node`'s proxies on every announced change and every [`REFRESH_EVERY`], until
/// the node's drain stops.
pub async fn watch(node: Arc<Node>) {
    let mut changes = Some(node.services.store.proxy_changes());
    let stopping = node.drain.stopping();
    tokio::pin!(stopping);
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.tick().await;
    loop {
        let announced = async {
            match changes.as_mut() {
                Some(changes) => changes.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stopping => return,
            received = announced => {
                if let Err(RecvError::Closed) = received {
                    tracing::warn!("upstream: the store stopped announcing proxy changes; rereading every 30 s");
                    changes = None;
                    continue;
                }
            }
            _ = tick.tick() => {}
        }
        if let Err(error) = node.refresh_proxies().await {
            tracing::warn!(%error, "upstream: cannot reread stored proxies; keeping those in effect");
        }
    }
}

/// Refuses a table that is not the one `now` was read from (its epoch changed or vanished:
/// Redis flushed or replaced), which would otherwise read as "no proxies", that is direct.
fn same_table(now: &NodeProxies, table: &ProxyTable) -> Result<(), StoreError> {
    if now.epoch.is_some() && table.epoch != now.epoch {
        return Err(StoreError::Corrupt {
            id: "upstream proxies".into(),
            reason: "the store's proxy table was lost or replaced (its epoch changed); keeping \
                     the proxies in effect: restart the daemon to take the store as it is now"
                .into(),
        });
    }
    Ok(())
}

/// `now` with its API-created proxies replaced by those of `table`.
fn built(table: &ProxyTable, now: &NodeProxies, key: &MasterKey) -> NodeProxies {
    let mut next = NodeProxies {
        epoch: table.epoch.clone(),
        broken: table.unreadable.clone(),
        default_problem: table.default_unreadable.clone(),
        ..NodeProxies::default()
    };
    for entry in &table.proxies {
        let result = if now.list.iter().any(|p| p.id == entry.id) {
            Err(Unusable::SameIdAsFile)
        } else {
            build(entry, key)
        };
        match result {
            Ok(proxy) => next.stored.push(Arc::new(proxy)),
            Err(reason) => {
                if let Ok(url) = ProxyUrl::parse(&entry.url) {
                    next.broken_addresses.push((url.host, url.port));
                }
                next.broken.push((entry.id.clone(), reason.to_string()));
            }
        }
    }
    if let Some(default) = &table.default {
        if default.verify(key) {
            next.stored_default = Some(default.id.clone());
        } else {
            next.default_problem = Some(format!(
                "the stored default ({:?}) does not verify with this node's master key",
                default.id
            ));
        }
    }
    now.with_stored(next)
}

/// Why a stored proxy cannot be used on this node (it is then kept as broken).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    /// The node's file defines a proxy of the same id.
    #[error("the node's file defines a proxy of the same id here; give the API's another id")]
    SameIdAsFile,
    /// The seal does not open with this node's master key.
    #[error(
        "its seal does not open with this node's master key (written or changed by someone \
         without it)"
    )]
    Seal,
    /// The opened specification is not a usable proxy.
    #[error(transparent)]
    Spec(#[from] ProxyConfigError),
    /// The opened password is not UTF-8.
    #[error("{0}")]
    Password(&'static str),
}

/// One stored proxy, its password opened.
fn build(entry: &StoredProxy, key: &MasterKey) -> Result<UpstreamProxy, Unusable> {
    let (spec, password) = entry.open(key).map_err(|_| Unusable::Seal)?;
    let mut proxy = spec.build()?;
    if let Some(password) = password {
        proxy
            .url
            .set_encoded_password(password.expose())
            .map_err(Unusable::Password)?;
    }
    proxy.revision = revision(entry);
    Ok(proxy)
}

/// A short digest of the entry as stored: a replaced entry (even with the same URL: its
/// password is sealed afresh) has another.
fn revision(entry: &StoredProxy) -> String {
    use sha2::Digest as _;
    let json = serde_json::to_vec(entry).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::StoredDefault;
    use crate::upstream::egress::{Egress, EgressError, Level, ProxyChoice, ProxySpec, resolve};

    fn spec(id: &str, url: &str) -> ProxySpec {
        ProxySpec {
            id: id.into(),
            label: None,
            url: url.into(),
            default: false,
            no_proxy: Vec::new(),
            connect_to: Default::default(),
        }
    }

    fn egress_of(node: &NodeProxies, session: &Level) -> Result<String, EgressError> {
        resolve(&Level::Inherit, session, node).map(|e| match e {
            Egress::Proxy(p) => p.id.clone(),
            other => other.key().into_owned(),
        })
    }

    #[test]
    fn stored_proxies_join_the_files_and_their_default_overrides_the_files() {
        let key = MasterKey::generate().unwrap();
        let mut file = spec("corp", "http://corp.test:3128");
        file.default = true;
        let now = NodeProxies::build(&[file], None).unwrap();
        let table = ProxyTable {
            proxies: vec![
                StoredProxy::seal(&spec("tenant", "http://u:p%40w@tenant.test:3128"), &key)
                    .unwrap(),
            ],
            ..ProxyTable::default()
        };
        let node = built(&table, &now, &key);
        assert_eq!(egress_of(&node, &Level::Inherit).unwrap(), "corp");
        let tenant = node.by_id("tenant").unwrap();
        assert_eq!(tenant.url.password.as_ref().unwrap().expose(), b"p@w");

        let with_default = built(
            &ProxyTable {
                default: Some(StoredDefault::seal("tenant", &key).unwrap()),
                ..table.clone()
            },
            &now,
            &key,
        );
        assert_eq!(egress_of(&with_default, &Level::Inherit).unwrap(), "tenant");
        let session = Level::Chose(ProxyChoice::Direct, None);
        assert_eq!(egress_of(&with_default, &session).unwrap(), "direct");

        // A default nobody with the master key wrote, or an id the file also defines, is
        // refused: never the file's proxy, never direct.
        let other = MasterKey::generate().unwrap();
        let forged = built(
            &ProxyTable {
                default: Some(StoredDefault::seal("tenant", &other).unwrap()),
                ..table.clone()
            },
            &now,
            &key,
        );
        let err = egress_of(&forged, &Level::Inherit).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        let shadow = ProxyTable {
            proxies: vec![StoredProxy::seal(&spec("corp", "http://shadow.test:1"), &key).unwrap()],
            ..ProxyTable::default()
        };
        let shadowed = built(&shadow, &now, &key);
        assert!(
            egress_of(&shadowed, &Level::Inherit).is_err(),
            "ambiguous id refused"
        );
        assert_eq!(
            shadowed.broken_addresses.len(),
            1,
            "its address stays off limits"
        );
    }

    #[test]
    fn a_replaced_proxy_never_shares_pooled_connections_with_its_old_version() {
        let key = MasterKey::generate().unwrap();
        let entry = |url: &str| StoredProxy::seal(&spec("tenant", url), &key).unwrap();
        let pool_key = |table: &ProxyTable| {
            let node = built(table, &NodeProxies::default(), &key);
            let session = Level::Chose(ProxyChoice::Id("tenant".into()), None);
            let egress = resolve(&Level::Inherit, &session, &node).unwrap();
            egress.key().into_owned()
        };
        let first = ProxyTable {
            proxies: vec![entry("http://u:old@tenant.test:3128")],
            ..ProxyTable::default()
        };
        let again = pool_key(&first);
        assert_eq!(pool_key(&first), again, "a reread keeps the pool");
        assert!(again.starts_with("tenant#"), "{again}");
        let replaced = ProxyTable {
            proxies: vec![entry("http://u:new@tenant.test:3128")],
            ..ProxyTable::default()
        };
        assert_ne!(
            pool_key(&replaced),
            again,
            "same URL, new password: a new pool"
        );
    }

    #[test]
    fn a_table_that_lost_its_epoch_is_not_taken() {
        let key = MasterKey::generate().unwrap();
        let table = ProxyTable {
            proxies: vec![StoredProxy::seal(&spec("tenant", "http://t.test:1"), &key).unwrap()],
            default: Some(StoredDefault::seal("tenant", &key).unwrap()),
            epoch: Some("e1".into()),
            ..ProxyTable::default()
        };
        let first = NodeProxies::default();
        same_table(&first, &table).unwrap();
        let now = built(&table, &first, &key);
        same_table(&now, &table).unwrap();
        let flushed = ProxyTable::default();
        let err = same_table(&now, &flushed).unwrap_err();
        assert!(err.to_string().contains("lost or replaced"), "{err}");
        let replaced = ProxyTable {
            epoch: Some("e2".into()),
            ..table.clone()
        };
        assert!(same_table(&now, &replaced).is_err());
    }

    #[test]
    fn a_stored_proxy_this_node_cannot_open_refuses_rather_than_going_direct() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let table = ProxyTable {
            proxies: vec![
                StoredProxy::seal(&spec("tenant", "http://u:pw@tenant.test:3128"), &other).unwrap(),
            ],
            default: Some(StoredDefault::seal("tenant", &key).unwrap()),
            ..ProxyTable::default()
        };
        let node = built(&table, &NodeProxies::default(), &key);
        assert!(node.by_id("tenant").is_none());
        let err = egress_of(&node, &Level::Inherit).unwrap_err();
        assert!(err.to_string().contains("master key"), "{err}");
        let session = Level::Chose(ProxyChoice::Id("tenant".into()), None);
        assert!(egress_of(&node, &session).is_err());
    }
}
