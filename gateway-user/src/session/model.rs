//! A session as the store keeps it, the request that creates one, and the view the API shows.
//!
//! # States
//! `pending` (created, nothing enrolled or sent yet) → `active` (first sandbox enrolled or
//! first request) → `revoked` | `expired`. Pending and active sessions are both usable: the
//! difference is informational (has the token been used yet?). Revoked and expired sessions
//! are refused. Expiry is by timestamp, so a stored `pending`/`active` session past its
//! `expires_at` reads as `expired` ([`Session::effective_state`]).
//!
//! # Security
//! The serialized [`Session`] (what goes into Redis and `sessions.json`) holds no plaintext
//! secret: the token only as its SHA-256, credential values and the upstream proxy password
//! only sealed under the master key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::crypto::{CryptoError, MasterKey, Sealed, credential_aad};
use super::token::TokenDigest;
use crate::credentials::{CredentialSpec, Secret};
use crate::policy::PolicySpec;

/// A session's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Created; no sandbox enrolled and no request seen yet. Usable.
    Pending,
    /// In use. Usable.
    Active,
    /// Revoked by an operator. Refused.
    Revoked,
    /// Past its expiry time. Refused.
    Expired,
}

impl SessionState {
    /// The state's name as serialized (`pending`, `active`, `revoked`, `expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pending => "pending",
            SessionState::Active => "active",
            SessionState::Revoked => "revoked",
            SessionState::Expired => "expired",
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential as stored: its spec in clear, its value sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCredential {
    /// Name, hosts and flags.
    pub spec: CredentialSpec,
    /// The value, sealed with AAD `session id + "\0" + name`.
    pub sealed: Sealed,
}

/// A session as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// `ses_` + 26 base32 characters.
    pub id: String,
    /// SHA-256 of the token.
    pub token_sha256: TokenDigest,
    /// The state as last written (see [`Session::effective_state`] for the one to act on).
    pub state: SessionState,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// Credentials, values sealed.
    #[serde(default)]
    pub credentials: Vec<StoredCredential>,
    /// The session's policy.
    #[serde(default)]
    pub policy: PolicySpec,
    /// Upstream proxy URL with its password removed (the user name is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// The upstream proxy password as written in the URL (percent-encoding kept), sealed with
    /// AAD [`upstream_proxy_aad`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy_password: Option<Sealed>,
    /// Free-form labels (owner, job id, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Session {
    /// The state to act on at unix time `now`: a revoked session stays revoked; any other
    /// session past `expires_at` is expired.
    pub fn effective_state(&self, now: u64) -> SessionState {
        match self.state {
            SessionState::Revoked => SessionState::Revoked,
            _ if now >= self.expires_at => SessionState::Expired,
            state => state,
        }
    }

    /// Whether requests under this session may proceed at `now`: pending or active, and not
    /// past expiry.
    pub fn is_usable(&self, now: u64) -> bool {
        matches!(
            self.effective_state(now),
            SessionState::Pending | SessionState::Active
        )
    }

    /// The value of credential `name`, if the session has one.
    ///
    /// # Security
    /// Decrypts; call only on the request path, for a request toward the credential's hosts.
    pub fn open_credential(
        &self,
        name: &str,
        key: &MasterKey,
    ) -> Result<Option<Secret>, CryptoError> {
        self.credentials
            .iter()
            .find(|c| c.spec.name == name)
            .map(|c| key.open(&c.sealed, &credential_aad(&self.id, name)))
            .transpose()
    }

    /// The upstream proxy password, if the URL had one.
    pub fn upstream_proxy_password(&self, key: &MasterKey) -> Result<Option<Secret>, CryptoError> {
        self.upstream_proxy_password
            .as_ref()
            .map(|sealed| key.open(sealed, &upstream_proxy_aad(&self.id)))
            .transpose()
    }

    /// What the API shows: no token digest, no sealed values, password masked.
    pub fn view(&self, now: u64) -> SessionView {
        SessionView {
            id: self.id.clone(),
            state: self.effective_state(now),
            created_at: self.created_at,
            expires_at: self.expires_at,
            credentials: self.credentials.iter().map(|c| c.spec.clone()).collect(),
            policy: self.policy.clone(),
            upstream_proxy: self.upstream_proxy.as_ref().map(|url| {
                if self.upstream_proxy_password.is_some() {
                    mask_password(url)
                } else {
                    url.clone()
                }
            }),
            labels: self.labels.clone(),
        }
    }
}

/// The AAD binding the sealed upstream proxy password to its session. `@` cannot appear in a
/// credential name, so this never equals a credential's AAD.
pub fn upstream_proxy_aad(session_id: &str) -> Vec<u8> {
    credential_aad(session_id, "@upstream_proxy")
}

/// A session as the control API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Session id.
    pub id: String,
    /// Effective state.
    pub state: SessionState,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// Credentials: name, hosts and flags only.
    pub credentials: Vec<CredentialSpec>,
    /// The session's policy.
    pub policy: PolicySpec,
    /// Upstream proxy URL, password shown as `***`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A request to create a session (validated with [`NewSession::validate`]).
///
/// # Security
/// Carries credential values and maybe a proxy password; `Debug` shows neither.
pub struct NewSession {
    /// Lifetime, between 1 minute and 30 days.
    pub ttl: Duration,
    /// Credentials and their values.
    pub credentials: Vec<(CredentialSpec, Secret)>,
    /// Policy.
    pub policy: PolicySpec,
    /// Upstream proxy URL (`http://` or `https://`, optional `user:password@`).
    pub upstream_proxy: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("ttl", &self.ttl)
            .field("credentials", &self.credentials)
            .field("policy", &self.policy)
            .field(
                "upstream_proxy",
                &self.upstream_proxy.as_deref().map(mask_password),
            )
            .field("labels", &self.labels)
            .finish()
    }
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Splits `scheme://user:password@host` into the URL without the password and the password.
/// URLs without a password come back unchanged.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(password.to_owned()),
    )
}

/// The URL with its password (if any) shown as `***`: in the userinfo (a URL whose password
/// was already split off, `user@host`, gets the mask in the password's place) and in a
/// `pass=` or `password=` query parameter (how `redis+unix://` URLs carry one).
///
/// # Security
/// Every URL that may hold a password goes through this before a log line, an error or an
/// API answer.
pub fn mask_password(url: &str) -> String {
    let (bare, _) = split_password(url);
    let Some((scheme, rest)) = bare.split_once("://") else {
        return mask_query(&bare);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => format!("{scheme}://{user}:***@{host}{}", mask_query(tail)),
        None => format!("{scheme}://{authority}{}", mask_query(tail)),
    }
}

/// `tail` (path and query) with the values of password parameters masked.
fn mask_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") =>
            {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(state: SessionState, expires_at: u64) -> Session {
        Session {
            id: "ses_x".into(),
            token_sha256: TokenDigest([0; 32]),
            state,
            created_at: 100,
            expires_at,
            credentials: Vec::new(),
            policy: PolicySpec::default(),
            upstream_proxy: None,
            upstream_proxy_password: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn usability_table() {
        use SessionState::*;
        let cases = [
            (Pending, 200, 100, Pending, true),
            (Active, 200, 199, Active, true),
            (Active, 200, 200, Expired, false),
            (Pending, 200, 300, Expired, false),
            (Revoked, 200, 100, Revoked, false),
            (Revoked, 200, 300, Revoked, false),
            (Expired, 200, 100, Expired, false),
        ];
        for (stored, expires, now, effective, usable) in cases {
            let s = session(stored, expires);
            assert_eq!(s.effective_state(now), effective, "{stored:?} at {now}");
            assert_eq!(s.is_usable(now), usable, "{stored:?} at {now}");
        }
    }

    #[test]
    fn state_serializes_snake_case() {
        let json = serde_json::to_string(&SessionState::Revoked).unwrap();
        assert_eq!(json, "\"revoked\"");
        assert_eq!(SessionState::Pending.to_string(), "pending");
    }

    #[test]
    fn password_split_and_mask_table() {
        let cases = [
            (
                "http://proxy:3128",
                "http://proxy:3128",
                None,
                "http://proxy:3128",
            ),
            (
                "http://u:p%40ss@proxy:3128",
                "http://u@proxy:3128",
                Some("p%40ss"),
                "http://u:***@proxy:3128",
            ),
            (
                "https://u@proxy/",
                "https://u@proxy/",
                None,
                "https://u:***@proxy/",
            ),
            (
                "https://:pw@proxy",
                "https://@proxy",
                Some("pw"),
                "https://:***@proxy",
            ),
        ];
        for (url, masked) in [
            (
                "redis+unix:///run/redis.sock?db=2&pass=s3cret&user=b",
                "redis+unix:///run/redis.sock?db=2&pass=***&user=b",
            ),
            (
                "redis://u:pw@h:6379/0?password=s3cret",
                "redis://u:***@h:6379/0?password=***",
            ),
            ("redis://h:6379?PASSWORD=x", "redis://h:6379?PASSWORD=***"),
        ] {
            assert_eq!(mask_password(url), masked, "{url}");
        }
        for (url, bare, password, masked) in cases {
            let (got_bare, got_password) = split_password(url);
            assert_eq!(got_bare, bare, "{url}");
            assert_eq!(got_password.as_deref(), password, "{url}");
            assert_eq!(mask_password(url), masked, "{url}");
        }
    }

    #[test]
    fn view_hides_digest_and_sealed_values() {
        let key = MasterKey::generate().unwrap();
        let mut s = session(SessionState::Active, 1000);
        s.credentials.push(StoredCredential {
            spec: CredentialSpec {
                name: "gh".into(),
                hosts: vec!["api.github.com".into()],
                headers: Vec::new(),
                query: false,
                body: false,
            },
            sealed: key
                .seal(b"ghp_value", &credential_aad("ses_x", "gh"))
                .unwrap(),
        });
        s.upstream_proxy = Some("http://u@proxy:3128".into());
        s.upstream_proxy_password = Some(key.seal(b"pw", &upstream_proxy_aad("ses_x")).unwrap());
        let view = serde_json::to_string(&s.view(500)).unwrap();
        assert!(view.contains("\"gh\"") && view.contains("http://u:***@proxy:3128"));
        assert!(!view.contains("sealed") && !view.contains("token") && !view.contains("nonce"));
        assert_eq!(s.view(1000).state, SessionState::Expired);
        assert_eq!(
            s.open_credential("gh", &key).unwrap().unwrap().expose(),
            b"ghp_value"
        );
        assert!(s.open_credential("other", &key).unwrap().is_none());
        assert_eq!(
            s.upstream_proxy_password(&key).unwrap().unwrap().expose(),
            b"pw"
        );
    }
}
