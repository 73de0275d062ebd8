//! Request and response bodies of the control API.

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

/// Every error body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong and how to fix it.
    pub error: String,
}
