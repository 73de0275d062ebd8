//! A session's policy as it is written (API, CLI, config, store): plain serde data.
//!
//! Evaluation lives beside this module; this is only the shape shared by the session store,
//! the control API and the request path.

use serde::{Deserialize, Serialize};

/// What a session may reach and how its traffic is checked.
///
/// Host patterns are exact names (`api.example.com`) or suffixes (`*.example.com`, which
/// matches sub-domains only); `*` alone matches every host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Hosts the session may reach. `None` allows every host not denied. Default is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Hosts refused even when allowed. Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Per-host method and path restrictions; a host with no rule is unrestricted.
    /// Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HostRule>,
    /// Request-rate limits per host. Default is empty (no limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// `HOST_OR_CIDR:PORT` targets that non-HTTP TCP may reach. Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_allow: Vec<String>,
    /// SNI patterns passed through untouched (pinned clients). Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<String>,
    /// PII scanning of request bodies. Default is `off`.
    #[serde(default)]
    pub pii: PiiMode,
    /// Whether refusals are enforced or only recorded. Default is `enforce`.
    #[serde(default)]
    pub enforcement: Enforcement,
}

/// Methods and path prefixes allowed toward the hosts matching `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRule {
    /// Host pattern the rule applies to.
    pub host: String,
    /// Allowed methods (uppercase). Empty allows every method. Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Allowed path prefixes (each starts with `/`). Empty allows every path. Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// At most `per_minute` requests per minute toward the hosts matching `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Host pattern the limit applies to (each matching host has its own budget).
    pub host: String,
    /// Requests allowed per rolling minute; must be at least 1.
    pub per_minute: u32,
}

/// PII scanning of request bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    /// No scanning.
    #[default]
    Off,
    /// Findings are recorded in the audit record; the body is sent unchanged.
    Detect,
    /// Findings are replaced before the upstream sees the body.
    Redact,
    /// A body with a finding is refused with 403.
    Block,
}

/// Whether policy refusals take effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Refusals are answered (403 / 429) and recorded.
    #[default]
    Enforce,
    /// Would-be refusals are recorded and the request goes on (for drafting a policy).
    Audit,
}
