//! Sandboxes: the cgroups (and optional network namespaces) whose sockets Sluice captures.
//!
//! The [`Registry`] is the daemon's view, keyed by cgroup id like the kernel's
//! `SLUICE_SANDBOXES` map, and persisted in the state directory so a restarted daemon
//! re-adopts every sandbox (and re-creates its in-namespace listeners).

pub mod cgroup;
pub mod confine;
pub mod environment;
pub mod identity;
pub mod launch;
pub mod locate;
pub mod mounts;
pub mod netns;
mod registry;
pub mod seccomp;
pub mod sockets;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use registry::{Registry, RegistryError};

/// One enrolled sandbox.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Sandbox {
    /// The daemon's id, also the `sandbox_id` in the kernel map.
    pub id: u64,
    /// The cgroup directory.
    pub cgroup: PathBuf,
    /// The cgroup id (the directory's inode number).
    pub cgroup_id: u64,
    /// The sandbox's own network namespace (a bind-mounted nsfs file), if it has one.
    pub netns: Option<PathBuf>,
    /// The session the sandbox runs under.
    pub session: Option<String>,
    /// Whether Sluice created the cgroup (and so removes it, killing what is left inside).
    pub owned: bool,
    /// Whether the cgroup lies outside the sandbox parent, so programs were attached to it.
    pub extra_attach: bool,
    /// The sandbox's upstream proxy: `none` (direct) or a proxy id of the node's
    /// configuration, overriding its session's. Default is none set (the session decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_proxy: Option<String>,
    /// The container it was enrolled for (by the OCI runtime wrapper), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}
