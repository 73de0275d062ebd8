//! A credential as a session declares it, without its value: plain serde data.

use serde::{Deserialize, Serialize};

/// The prefix a sandbox sees instead of a secret: `sluice_cred:NAME`.
pub const PLACEHOLDER_PREFIX: &str = "sluice_cred:";

/// Where a credential's real value may be swapped in.
///
/// # Security
/// Carries no secret: the value is stored sealed beside it and only opened on the request
/// path, toward `hosts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// Name in the placeholder (`[A-Za-z0-9_.-]{1,64}`).
    pub name: String,
    /// Exact host names the value may be sent to (lowercase, no port); at least one.
    pub hosts: Vec<String>,
    /// Header names (lowercase) the value may appear in; empty allows any header.
    /// Default is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Whether the placeholder is also swapped in the query string. Default is false.
    #[serde(default)]
    pub query: bool,
    /// Whether the placeholder is also swapped in JSON and form bodies. Default is false.
    #[serde(default)]
    pub body: bool,
}

impl CredentialSpec {
    /// The text the sandbox sees for this credential.
    pub fn placeholder(&self) -> String {
        format!("{PLACEHOLDER_PREFIX}{}", self.name)
    }
}
