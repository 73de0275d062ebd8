//! What a crashed daemon or a killed `sluice exec` leaves behind, found and removed at start,
//! and the names that keep one daemon's sandboxes apart from another's.
//!
//! A sandbox cgroup `sb-N` under the parent that the registry does not know, and a network
//! namespace carrying this daemon's prefix that no registered sandbox uses, belong to
//! nobody: their processes are killed and they are removed, so a leftover never blocks the
//! next `sluice exec` (which also skips a name still taken).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::sandbox::{Sandbox, cgroup, netns};

/// Prefix of the cgroup directories of sandboxes Sluice creates.
pub const CGROUP_PREFIX: &str = "sb-";

/// The network namespace name prefix of the daemon whose sandbox parent is `parent`: stable
/// across restarts, different for daemons with different parents (tests run several).
pub fn netns_prefix(parent: &Path) -> String {
    let digest = Sha256::digest(parent.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("sluice-{tag}-sb-")
}

/// What [`reap`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Cgroup directories removed.
    pub cgroups: Vec<PathBuf>,
    /// Network namespaces deleted.
    pub namespaces: Vec<PathBuf>,
}

/// Removes sandbox cgroups under `parent` and this daemon's network namespaces that none of
/// `known` uses. Failures are logged and skipped (start-up goes on).
pub fn reap(parent: &Path, known: &[std::sync::Arc<Sandbox>]) -> Reaped {
    let mut reaped = Reaped::default();
    let cgroups: HashSet<&Path> = known.iter().map(|s| s.cgroup.as_path()).collect();
    let namespaces: HashSet<&Path> = known.iter().filter_map(|s| s.netns.as_deref()).collect();
    for dir in children(parent, CGROUP_PREFIX, true) {
        if cgroups.contains(dir.as_path()) {
            continue;
        }
        let removed = cgroup::kill_all(&dir).and_then(|()| cgroup::remove_tree(&dir));
        match removed {
            Ok(()) => reaped.cgroups.push(dir),
            Err(e) => tracing::warn!(error = %e, "sandbox: leftover cgroup not removed"),
        }
    }
    let prefix = netns_prefix(parent);
    for ns in children(Path::new(netns::NETNS_DIR), &prefix, false) {
        if namespaces.contains(ns.as_path()) {
            continue;
        }
        match netns::delete(&ns) {
            Ok(()) => reaped.namespaces.push(ns),
            Err(e) => tracing::warn!(error = %e, "sandbox: leftover network namespace not removed"),
        }
    }
    reaped
}

/// Entries of `dir` whose names start with `prefix` (directories only when `dirs`).
fn children(dir: &Path, prefix: &str, dirs: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| !dirs || e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_differ_per_parent_and_are_stable() {
        let a = netns_prefix(Path::new("/sys/fs/cgroup/unified/sluice.sandboxes"));
        let b = netns_prefix(Path::new("/sys/fs/cgroup/unified/other.sandboxes"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            netns_prefix(Path::new("/sys/fs/cgroup/unified/sluice.sandboxes"))
        );
        assert!(
            a.starts_with("sluice-") && a.ends_with("-sb-") && a.len() < 30,
            "{a}"
        );
    }

    #[test]
    fn only_sandbox_directories_are_candidates() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sb-1", "sb-2", "other"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        // Plain directories stand in for cgroups: `cgroup.events` is missing, so kill_all
        // fails and the leftover is reported, not removed; what matters is which are tried.
        let found = children(dir.path(), CGROUP_PREFIX, true);
        let mut names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sb-1", "sb-2"]);
    }
}
