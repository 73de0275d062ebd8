//! Upstream proxies created through the control API: kept in the session store so every
//! node sharing it sees them, their passwords sealed under the master key as session
//! credentials are.
//!
//! # Security
//! The store (Redis) is not trusted with the routing: every entry is sealed whole, its
//! password as the plaintext and every other field bound as AAD ([`StoredProxy::open`]
//! fails for an entry anyone without the master key wrote or changed), and the default is a
//! sealed [`StoredDefault`]. The table carries an *epoch*, written with its first entry: a
//! table that comes back without it, or with another, was lost or replaced, and a node keeps
//! what it had instead of reading "no proxies" (which would mean "direct").

use serde::{Deserialize, Serialize};

use super::crypto::{CryptoError, MasterKey, Sealed, credential_aad};
use super::model::unix_now;
use crate::credentials::Secret;
use crate::upstream::egress::{ConnectTo, ProxyConfigError, ProxySpec, split_password};

/// A proxy as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredProxy {
    /// Its id (the rules of a `[[upstream.proxies]]` id).
    pub id: String,
    /// What errors, audit records and listings call it.
    pub label: String,
    /// `http[s]://[user@]host[:port]/`: the URL with its password removed.
    pub url: String,
    /// Destinations that go direct.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// What the CONNECT names.
    #[serde(default)]
    pub connect_to: ConnectTo,
    /// Whether the URL has a password.
    pub has_password: bool,
    /// When it was written, unix seconds.
    pub updated_at: u64,
    /// The password as written in the URL (percent-encoding kept; empty when none), sealed
    /// with every field above bound as AAD ([`StoredProxy::aad`]).
    pub seal: Sealed,
}

/// Which stored proxy is the node default, sealed so only a holder of the master key can
/// name one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredDefault {
    /// The proxy's id.
    pub id: String,
    /// Nothing, sealed with AAD [`default_aad`] of the id.
    pub seal: Sealed,
}

/// Every stored proxy and the one the API made the default, as read from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyTable {
    /// By id.
    pub proxies: Vec<StoredProxy>,
    /// The default, one of `proxies`.
    pub default: Option<StoredDefault>,
    /// Entries that could not be read: id and why (a choice of one is refused).
    pub unreadable: Vec<(String, String)>,
    /// Why a default is stored but cannot be read, if so (the default is then refused).
    pub default_unreadable: Option<String>,
    /// Set with the first entry, never removed.
    pub epoch: Option<String>,
}

impl ProxyTable {
    /// The proxy with id `id`.
    pub fn get(&self, id: &str) -> Option<&StoredProxy> {
        self.proxies.iter().find(|p| p.id == id)
    }

    /// The id of the default, if there is one.
    pub fn default_id(&self) -> Option<&str> {
        self.default.as_ref().map(|d| d.id.as_str())
    }
}

/// How [`super::SessionStore::put_proxy`] treats an existing entry of the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Only if there is none (`POST`).
    Create,
    /// Whether or not there is one (`PUT`).
    Replace,
}

/// What [`super::SessionStore::remove_proxy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// It was removed.
    Yes,
    /// There was no such proxy.
    Absent,
    /// It is the default; unset that first.
    IsDefault,
}

/// The AAD prefix of a stored proxy (`@` cannot begin a session id, so this never equals a
/// session's AAD).
pub fn proxy_aad(id: &str) -> Vec<u8> {
    credential_aad("@proxy", id)
}

/// The AAD of the sealed default naming `id`.
pub fn default_aad(id: &str) -> Vec<u8> {
    credential_aad("@proxy-default", id)
}

/// A fresh epoch for a table's first write.
pub fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl StoredProxy {
    /// Checks `spec` (whose `url` may hold a password) as the node's file would, and seals
    /// it under `key`. `spec.default` is not part of the entry.
    pub fn seal(spec: &ProxySpec, key: &MasterKey) -> Result<StoredProxy, SealError> {
        spec.build()?;
        let (url, password) = split_password(&spec.url);
        let password = zeroize::Zeroizing::new(password);
        let mut entry = StoredProxy {
            id: spec.id.clone(),
            label: spec.label.clone().unwrap_or_else(|| spec.id.clone()),
            url,
            no_proxy: spec.no_proxy.clone(),
            connect_to: spec.connect_to,
            has_password: password.is_some(),
            updated_at: unix_now(),
            seal: Sealed::default(),
        };
        let plain = password.as_deref().unwrap_or_default();
        entry.seal = key.seal(plain.as_bytes(), &entry.aad())?;
        Ok(entry)
    }

    /// The entry as a spec with its password-less URL, and its password (as written in the
    /// URL, percent-encoding kept), once the seal proves the master key's holder wrote
    /// every field.
    pub fn open(&self, key: &MasterKey) -> Result<(ProxySpec, Option<Secret>), CryptoError> {
        let password = key.open(&self.seal, &self.aad())?;
        let spec = ProxySpec {
            id: self.id.clone(),
            label: Some(self.label.clone()),
            url: self.url.clone(),
            default: false,
            no_proxy: self.no_proxy.clone(),
            connect_to: self.connect_to,
        };
        Ok((spec, self.has_password.then_some(password)))
    }

    /// [`proxy_aad`] of the id, then every field but the seal (as JSON, in field order).
    fn aad(&self) -> Vec<u8> {
        let mut aad = proxy_aad(&self.id);
        aad.push(0);
        let fields = (
            &self.id,
            &self.label,
            &self.url,
            &self.no_proxy,
            self.connect_to,
            self.has_password,
            self.updated_at,
        );
        aad.extend_from_slice(&serde_json::to_vec(&fields).unwrap_or_default());
        aad
    }
}

impl StoredDefault {
    /// The default naming `id`, sealed under `key`.
    pub fn seal(id: &str, key: &MasterKey) -> Result<StoredDefault, CryptoError> {
        Ok(StoredDefault {
            id: id.to_owned(),
            seal: key.seal(b"", &default_aad(id))?,
        })
    }

    /// Whether the holder of `key` wrote it.
    pub fn verify(&self, key: &MasterKey) -> bool {
        key.open(&self.seal, &default_aad(&self.id)).is_ok()
    }
}

/// Why a proxy could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The entry is not valid.
    #[error(transparent)]
    Invalid(#[from] ProxyConfigError),
    /// Sealing failed.
    #[error("store: {0}")]
    Crypto(#[from] CryptoError),
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::SessionStore;

    /// The proxy password the store tests search for.
    pub(crate) const STORED_PASSWORD: &str = "St0red-proxy-pw";

    /// Proxy `kept`, with [`STORED_PASSWORD`] in its URL.
    pub(crate) fn kept_spec(default: bool, no_proxy: &[&str]) -> ProxySpec {
        ProxySpec {
            id: "kept".into(),
            label: None,
            url: format!("http://u:{STORED_PASSWORD}@kept.test:3128"),
            default,
            no_proxy: no_proxy.iter().map(|n| (*n).to_owned()).collect(),
            connect_to: ConnectTo::Name,
        }
    }

    /// What every store must do with proxies: create refuses a taken id, replace does
    /// not; the default must exist and cannot be removed; every change is announced; no
    /// password is kept in the clear (`raw` is everything the store holds, as text).
    pub(crate) async fn proxies_contract(store: &dyn SessionStore) {
        let key = MasterKey::generate().unwrap();
        let mut changes = store.proxy_changes();
        let tenant = |host: &str| {
            StoredProxy::seal(
                &ProxySpec {
                    id: "tenant".into(),
                    label: Some("Tenant".into()),
                    url: format!("http://u:{STORED_PASSWORD}@{host}:3128"),
                    default: false,
                    no_proxy: Vec::new(),
                    connect_to: ConnectTo::Name,
                },
                &key,
            )
            .unwrap()
        };
        assert_eq!(store.proxies().await.unwrap(), ProxyTable::default());
        assert!(
            store
                .put_proxy(tenant("a.test"), Put::Create)
                .await
                .unwrap()
        );
        let announced = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await;
        assert!(matches!(announced, Ok(Ok(()))), "the change is announced");
        assert!(
            !store
                .put_proxy(tenant("b.test"), Put::Create)
                .await
                .unwrap()
        );
        assert_eq!(
            store.proxies().await.unwrap().proxies[0].url,
            "http://u@a.test:3128/"
        );
        assert!(
            store
                .put_proxy(tenant("b.test"), Put::Replace)
                .await
                .unwrap()
        );
        let table = store.proxies().await.unwrap();
        assert_eq!(table.proxies.len(), 1);
        let (_, password) = table.proxies[0].open(&key).unwrap();
        assert_eq!(password.unwrap().expose(), STORED_PASSWORD.as_bytes());

        let default = |id: &str| StoredDefault::seal(id, &key).unwrap();
        assert!(!store.set_default_proxy(default("absent")).await.unwrap());
        assert!(store.set_default_proxy(default("tenant")).await.unwrap());
        let table = store.proxies().await.unwrap();
        assert_eq!(table.default_id(), Some("tenant"));
        assert!(table.default.unwrap().verify(&key));
        let epoch = table.epoch.clone();
        assert!(epoch.is_some(), "the first write sets an epoch");
        assert_eq!(
            store.remove_proxy("tenant").await.unwrap(),
            Removed::IsDefault
        );
        assert!(
            !store.unset_default_proxy("other").await.unwrap(),
            "not the default"
        );
        assert!(store.unset_default_proxy("tenant").await.unwrap());
        assert_eq!(store.remove_proxy("tenant").await.unwrap(), Removed::Yes);
        assert_eq!(store.remove_proxy("tenant").await.unwrap(), Removed::Absent);
        let table = store.proxies().await.unwrap();
        assert!(table.proxies.is_empty() && table.default.is_none());
        assert_eq!(table.epoch, epoch, "the epoch stays");
    }

    const PASSWORD: &str = "p%40ss-Wörd";

    fn spec(url: &str) -> ProxySpec {
        ProxySpec {
            id: "corp".into(),
            label: Some("Corp".into()),
            url: url.into(),
            default: true,
            no_proxy: vec![".internal".into()],
            connect_to: ConnectTo::Address,
        }
    }

    #[test]
    fn the_password_is_sealed_to_the_id_and_never_kept_in_the_clear() {
        let key = MasterKey::generate().unwrap();
        let stored =
            StoredProxy::seal(&spec(&format!("http://u:{PASSWORD}@proxy.test:3128")), &key)
                .unwrap();
        assert_eq!(stored.url, "http://u@proxy.test:3128/");
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains("ss-W"), "{json}");
        let (back, password) = stored.open(&key).unwrap();
        let decoded: Vec<u8> =
            percent_encoding::percent_decode(password.unwrap().expose()).collect();
        assert_eq!(
            decoded,
            "p@ss-Wörd".as_bytes(),
            "kept percent-encoded, same password"
        );
        assert_eq!(back.url, stored.url);
        assert_eq!(back.connect_to, ConnectTo::Address);
        assert_eq!(back.no_proxy, [".internal"]);

        let mut moved = stored.clone();
        moved.id = "other".into();
        assert!(
            moved.open(&key).is_err(),
            "a sealed password moved to another id"
        );
        let other_key = MasterKey::generate().unwrap();
        assert!(stored.open(&other_key).is_err());
    }

    #[test]
    fn an_invalid_entry_is_refused_before_anything_is_sealed() {
        let key = MasterKey::generate().unwrap();
        let err = StoredProxy::seal(&spec("socks5://u:secret@p:1"), &key).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let mut bad = spec("http://p:1");
        bad.id = "none".into();
        assert!(StoredProxy::seal(&bad, &key).is_err());
        bad.id = "ok".into();
        bad.no_proxy = vec!["a b".into()];
        assert!(StoredProxy::seal(&bad, &key).is_err());
    }
}
