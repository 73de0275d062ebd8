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
    /// The sandbox's upstream proxy, overriding its session's: a proxy id of the node's
    /// configuration, or `none` for direct. A URL is refused (give it to a session or to
    /// `[[upstream.proxies]]`, where its password is sealed or stays in the node's file).
    #[serde(default)]
    pub upstream_proxy: Option<String>,
    /// With `cgroup`: the container's first process (created, not yet started), which must
    /// be in that cgroup. Its network namespace gets Sluice's listeners (unless it is the
    /// daemon's own). How the runtime wrapper enrolls a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The container id, for the runtime wrapper to find the sandbox again on `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Enroll an existing cgroup even though its processes already hold network sockets
    /// (those stay uncaptured); recorded in the audit log. Without it, that is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
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
    /// Its upstream proxy override (`none` or a proxy id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// The container it was enrolled for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
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
            upstream_proxy: s.upstream_proxy.clone(),
            container: s.container.clone(),
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

/// One upstream proxy as `GET /v1/proxies` shows it (password masked).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ProxyView {
    /// Its id (`env` for the daemon's environment's proxy).
    pub id: String,
    /// Its label.
    pub label: String,
    /// Its URL, the password shown as `***`.
    pub url: String,
    /// Whether it carries connections nothing else decides.
    pub default: bool,
    /// Destinations that go direct.
    pub no_proxy: Vec<String>,
    /// What the CONNECT names: `name` or `address`.
    pub connect_to: String,
    /// Where it is defined: `config` (the node's file, read-only here), `api` (created
    /// through the API, kept in the session store) or `env` (the daemon's environment).
    pub source: String,
    /// Why this node cannot use it (its connections are refused), if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `POST /v1/proxies/{id}/test` body (optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxyTest {
    /// `host:port` to open a tunnel to. Default is `example.com:443`.
    #[serde(default)]
    pub target: Option<String>,
}

/// What `POST /v1/proxies/{id}/test` found.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ProxyTestResult {
    /// The proxy's id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// The tunnel's target.
    pub target: String,
    /// Whether the proxy opened the tunnel.
    pub ok: bool,
    /// What happened (the proxy's answer when it refused).
    pub message: String,
    /// How long the attempt took, in milliseconds.
    pub latency_ms: f64,
}

/// `GET /v1/sessions/{id}/trust/advice`: what to do about each client of the session that
/// refused Sluice's certificate (its variables, or passthrough when it pins).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TrustAdviceList {
    /// One entry per executable, sorted by executable.
    pub advice: Vec<crate::tls::clients::TrustAdvice>,
}
