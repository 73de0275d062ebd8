//! `GET /v1/node`: what the dashboard shows about this node — version, name, the CA, and the
//! configuration with every value that could be a secret redacted.

use serde::Serialize;
use serde_json::Value;

use crate::daemon::Node;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Key fragments whose string values are never shown: URLs (a Redis or proxy URL may hold a
/// password), passwords, tokens and their digests, keys and key files.
const SECRET_KEYS: &[&str] = &[
    "url",
    "password",
    "token",
    "secret",
    "key",
    "sha256",
    "digest",
    "credential",
];

/// The answer of `GET /v1/node`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// The daemon's version.
    pub version: &'static str,
    /// The node's name in audit records (the host name unless configured).
    pub node: String,
    /// The CA the node mints leaves from.
    pub ca: CaInfo,
    /// The running configuration, redacted.
    pub config: Value,
}

/// Public facts about the CA.
#[derive(Clone, Debug, Serialize)]
pub struct CaInfo {
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint_sha256: String,
    /// The certificate's common name.
    pub subject: String,
    /// When it stops being valid (RFC 3339).
    pub not_after: String,
}

/// What the node says about itself.
pub fn describe(node: &Node) -> NodeInfo {
    let ca = node.proxy.intercept.tls.minter().ca();
    let not_after = ca
        .not_after()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    NodeInfo {
        version: env!("CARGO_PKG_VERSION"),
        node: node.config.node_name(),
        ca: CaInfo {
            fingerprint_sha256: ca.fingerprint_sha256().to_owned(),
            subject: ca.common_name().to_owned(),
            not_after,
        },
        config: redacted(serde_json::to_value(&node.config).unwrap_or(Value::Null)),
    }
}

/// `value` with every string under a secret-looking key (at any depth, in arrays too)
/// replaced by [`REDACTED`]. Fails closed: a field added later whose name says it holds a
/// secret is redacted without touching this file.
pub fn redacted(value: Value) -> Value {
    redact(value, false)
}

fn redact(value: Value, secret: bool) -> Value {
    match value {
        Value::String(_) if secret => Value::String(REDACTED.to_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact(v, secret)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let hides = secret || SECRET_KEYS.iter().any(|s| lower.contains(s));
                    (k, redact(v, hides))
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_the_rest_kept() {
        let config = serde_json::json!({
            "store": {"redis_url": "redis://:hunter2@10.0.0.1:6379", "key_prefix": "sluice:"},
            "sessions": [{"id": "ci", "token_sha256": "ab12"}],
            "upstream": {"proxies": [{"id": "corp", "url": "http://u:pw@proxy:3128"}]},
            "policy": {"passthrough": ["pinned.test"]},
            "listen": {"proxy": "127.0.0.1:3128"},
        });
        let shown = redacted(config).to_string();
        for secret in ["hunter2", "ab12", "u:pw", "redis://"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in ["pinned.test", "\"ci\"", "127.0.0.1:3128", "corp"] {
            assert!(shown.contains(kept), "{kept} missing from {shown}");
        }
    }
}
