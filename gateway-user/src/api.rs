//! Request and response bodies of the control API: plain data, below both the server
//! ([`crate::control`]) that speaks them and the daemon ([`crate::daemon`]) that fills them,
//! and used by the CLI as a client.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sandbox::Sandbox;

/// `POST /v1/sandboxes`: create a sandbox cgroup (no `cgroup`) or enroll an existing one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// Give the new sandbox its own network namespace. Only for created sandboxes.
    #[serde(default)]
    pub netns: bool,
    /// The session the sandbox runs under.
    #[serde(default)]
    pub session: Option<String>,
    /// Enroll this existing cgroup (made by another runtime) instead of creating one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// A sandbox as the API shows it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct SandboxView {
    /// Daemon id.
    pub id: u64,
    /// Cgroup directory.
    pub cgroup: PathBuf,
    /// Cgroup id.
    pub cgroup_id: u64,
    /// Network namespace file, if the sandbox has its own.
    pub netns: Option<PathBuf>,
    /// Session.
    pub session: Option<String>,
    /// Whether Sluice created (and will remove) the cgroup.
    pub owned: bool,
}

impl From<&Sandbox> for SandboxView {
    fn from(s: &Sandbox) -> Self {
        SandboxView {
            id: s.id,
            cgroup: s.cgroup.clone(),
            cgroup_id: s.cgroup_id,
            netns: s.netns.clone(),
            session: s.session.clone(),
            owned: s.owned,
        }
    }
}

/// `GET /v1/health`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Health {
    /// `ok` when the daemon serves.
    pub status: String,
    /// Enrolled sandboxes.
    pub sandboxes: usize,
    /// Live captured connections in the kernel map.
    pub connections: usize,
    /// Daemon version.
    pub version: String,
}

/// `POST /v1/reload`: what a configuration reload applied.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file the daemon read (its `--config`), or `built-in defaults`.
    pub source: String,
    /// Each live change applied, as `field: what` (`policy.passthrough: added api.test`);
    /// empty when the file changed nothing.
    pub changed: Vec<String>,
}

/// Every error body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong and how to fix it.
    pub error: String,
}

/// `POST /v1/sessions`: a new session.
///
/// # Security
/// Carries real credential values; it is read once, the values sealed, and never echoed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Lifetime in seconds. Default is 3600.
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    /// Credentials the session's requests may carry (as placeholders). Default is none.
    #[serde(default)]
    pub credentials: Vec<CredentialInput>,
    /// The session's policy. Default allows every host, no limits, PII off.
    #[serde(default)]
    pub policy: crate::policy::PolicySpec,
    /// Not supported yet (tracker issue 12): a request that sets it is refused with 400.
    #[serde(default)]
    pub upstream_proxy: Option<String>,
    /// Free-form labels (agent, run id…). Default is none.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn default_ttl() -> u64 {
    3600
}

/// One credential of a [`CreateSession`].
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    /// Name in the placeholder `sluice_cred:NAME`.
    pub name: String,
    /// The real value.
    pub value: String,
    /// Exact hosts the value may be sent to.
    pub hosts: Vec<String>,
    /// Header names the value may appear in (empty: any). Default is empty.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Also swap the placeholder in query strings. Default is false.
    #[serde(default)]
    pub query: bool,
    /// Also swap the placeholder in JSON and form bodies. Default is false.
    #[serde(default)]
    pub body: bool,
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl CredentialInput {
    /// The declaration without the value, and the value as a [`Secret`](crate::credentials::Secret).
    pub fn split(
        self,
    ) -> (
        crate::credentials::CredentialSpec,
        crate::credentials::Secret,
    ) {
        let spec = crate::credentials::CredentialSpec {
            name: self.name,
            hosts: self.hosts,
            headers: self.headers,
            query: self.query,
            body: self.body,
        };
        (
            spec,
            crate::credentials::Secret::new(self.value.into_bytes()),
        )
    }
}
