//! Upstream proxies created through the control API: kept in the session store so every
//! node sharing it sees them, their passwords sealed under the master key as session
//! credentials are.
//!
//! # Security
//! A [`StoredProxy`] (what goes into Redis and `proxies.json`) holds the URL without its
//! password, and the password sealed with AAD [`proxy_aad`] (bound to the proxy's id, so
//! a sealed password cannot be moved to another entry).

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
    /// The URL's password as written (percent-encoding kept), sealed with AAD
    /// [`proxy_aad`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Sealed>,
    /// Destinations that go direct.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// What the CONNECT names.
    #[serde(default)]
    pub connect_to: ConnectTo,
    /// When it was written, unix seconds.
    pub updated_at: u64,
}

/// Every stored proxy and the one the API made the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTable {
    /// By id.
    pub proxies: Vec<StoredProxy>,
    /// The id of the default, one of `proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl ProxyTable {
    /// The proxy with id `id`.
    pub fn get(&self, id: &str) -> Option<&StoredProxy> {
        self.proxies.iter().find(|p| p.id == id)
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

/// The AAD binding a stored proxy's sealed password to its id (`@` cannot begin a session
/// id, so this never equals a session's AAD).
pub fn proxy_aad(id: &str) -> Vec<u8> {
    credential_aad("@proxy", id)
}

impl StoredProxy {
    /// Checks `spec` (whose `url` may hold a password) as the node's file would, and seals
    /// its password under `key`. `spec.default` is not part of the entry.
    pub fn seal(spec: &ProxySpec, key: &MasterKey) -> Result<StoredProxy, SealError> {
        spec.build()?;
        let (url, password) = split_password(&spec.url);
        let password = zeroize::Zeroizing::new(password);
        let password = password
            .as_deref()
            .map(|p| key.seal(p.as_bytes(), &proxy_aad(&spec.id)))
            .transpose()?;
        Ok(StoredProxy {
            id: spec.id.clone(),
            label: spec.label.clone().unwrap_or_else(|| spec.id.clone()),
            url,
            password,
            no_proxy: spec.no_proxy.clone(),
            connect_to: spec.connect_to,
            updated_at: unix_now(),
        })
    }

    /// The entry as a spec with its password-less URL, and its password opened (as written
    /// in the URL, percent-encoding kept).
    pub fn open(&self, key: &MasterKey) -> Result<(ProxySpec, Option<Secret>), CryptoError> {
        let password = self
            .password
            .as_ref()
            .map(|sealed| key.open(sealed, &proxy_aad(&self.id)))
            .transpose()?;
        let spec = ProxySpec {
            id: self.id.clone(),
            label: Some(self.label.clone()),
            url: self.url.clone(),
            default: false,
            no_proxy: self.no_proxy.clone(),
            connect_to: self.connect_to,
        };
        Ok((spec, password))
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

        assert!(!store.set_default_proxy(Some("absent")).await.unwrap());
        assert!(store.set_default_proxy(Some("tenant")).await.unwrap());
        assert_eq!(
            store.proxies().await.unwrap().default.as_deref(),
            Some("tenant")
        );
        assert_eq!(
            store.remove_proxy("tenant").await.unwrap(),
            Removed::IsDefault
        );
        assert!(store.set_default_proxy(None).await.unwrap());
        assert_eq!(store.remove_proxy("tenant").await.unwrap(), Removed::Yes);
        assert_eq!(store.remove_proxy("tenant").await.unwrap(), Removed::Absent);
        assert_eq!(store.proxies().await.unwrap(), ProxyTable::default());
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
