//! Sessions as the configuration file declares them: the identity behind a proxy token.
//!
//! These static sessions carry no credentials or policy; they predate the session store
//! ([`super::store`]) and stay for configurations that declare their tokens up front.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One session in the configuration.
///
/// # Security
/// Only the SHA-256 of the token is configured; the token itself never is.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The session id (appears in audit records).
    pub id: String,
    /// Lowercase hex SHA-256 of the session token.
    pub token_sha256: String,
}

/// A configured session whose `token_sha256` is not 64 hex characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sessions: {0:?}: token_sha256 must be 64 hex characters")]
pub struct BadDigest(pub String);

/// Sessions by token digest.
#[derive(Debug, Default)]
pub struct Sessions {
    by_digest: HashMap<[u8; 32], Arc<SessionConfig>>,
    ids: HashSet<String>,
}

impl Sessions {
    /// Indexes the configured sessions; the error names a malformed digest.
    pub fn from_config(sessions: &[SessionConfig]) -> Result<Sessions, BadDigest> {
        let mut by_digest = HashMap::new();
        let mut ids = HashSet::new();
        for session in sessions {
            let digest =
                parse_hex32(&session.token_sha256).ok_or_else(|| BadDigest(session.id.clone()))?;
            by_digest.insert(digest, Arc::new(session.clone()));
            ids.insert(session.id.clone());
        }
        Ok(Sessions { by_digest, ids })
    }

    /// Whether `id` is a session of the configuration file (no policy, no credentials).
    pub fn contains_id(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// The session whose token is `token`.
    pub fn authenticate(&self, token: &str) -> Option<Arc<SessionConfig>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_by_digest_only() {
        let token = "sluice_stk_example";
        let digest: String = Sha256::digest(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sessions = Sessions::from_config(&[SessionConfig {
            id: "s1".into(),
            token_sha256: digest,
        }])
        .unwrap();
        assert_eq!(sessions.authenticate(token).unwrap().id, "s1");
        assert!(sessions.authenticate("sluice_stk_other").is_none());
        assert!(sessions.authenticate("").is_none());
        assert!(sessions.contains_id("s1") && !sessions.contains_id("s2"));
        let bad = Sessions::from_config(&[SessionConfig {
            id: "s2".into(),
            token_sha256: "zz".into(),
        }]);
        assert!(bad.unwrap_err().to_string().contains("s2"));
    }
}
