//! Finding a workload's cgroup by container id or pod UID, for `sluice enroll`.
//!
//! Runtimes name their cgroups after the container (and kubelet after the pod), with the
//! systemd or the cgroupfs driver:
//! - containers: `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
//!   `libpod-ID.scope` (systemd), or `ID`, `libpod-ID`, `crio-ID` (cgroupfs);
//! - pods: `kubepods-QOS-podUID.slice` with the UID's `-` as `_` (systemd), or `podUID`
//!   (cgroupfs).
//!
//! A container id may be abbreviated (at least 12 characters, as `docker ps` shows it);
//! an id or UID that names more than one cgroup is refused, never guessed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Runtime prefixes of container cgroup names.
const RUNTIMES: &[&str] = &["docker", "cri-containerd", "crio", "libpod", "containerd"];
/// The shortest container id prefix accepted.
pub const MIN_ID_LEN: usize = 12;
/// How deep below the cgroup2 mount to look.
const MAX_DEPTH: usize = 10;
/// The most directories one search visits.
const MAX_VISITED: usize = 200_000;

/// What to look for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A container id (or a prefix of at least [`MIN_ID_LEN`] characters).
    Container(String),
    /// A Kubernetes pod UID.
    Pod(String),
}

/// Why no single cgroup was found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The id or UID is not of the expected form.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matched.
    #[error("no cgroup under {root} belongs to {what}; is it running on this node?")]
    NotFound {
        /// The cgroup2 mount.
        root: PathBuf,
        /// What was looked for.
        what: String,
    },
    /// More than one cgroup matched.
    #[error("{what} matches {} cgroups ({}); give the full id", .found.len(), show(.found))]
    Ambiguous {
        /// What was looked for.
        what: String,
        /// The matches.
        found: Vec<PathBuf>,
    },
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Workload {
    /// Checks the id's form.
    pub fn check(&self) -> Result<(), LocateError> {
        match self {
            Workload::Container(id) => {
                if id.len() < MIN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(LocateError::Invalid(format!(
                        "container id {id:?}: give at least {MIN_ID_LEN} hex digits \
                         (`podman ps --no-trunc`, `crictl ps`)"
                    )));
                }
            }
            Workload::Pod(uid) => {
                let ok = uid.len() == 36
                    && uid.bytes().enumerate().all(|(i, b)| {
                        matches!(i, 8 | 13 | 18 | 23) == (b == b'-')
                            && (b == b'-' || b.is_ascii_hexdigit())
                    });
                if !ok {
                    return Err(LocateError::Invalid(format!(
                        "pod UID {uid:?}: give the pod's metadata.uid \
                         (`kubectl get pod NAME -o jsonpath='{{.metadata.uid}}'`)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            Workload::Container(id) => format!("container {id}"),
            Workload::Pod(uid) => format!("pod {uid}"),
        }
    }

    /// Whether the cgroup directory called `name` is this workload's.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Workload::Container(id) => {
                let id = id.to_ascii_lowercase();
                let bare = name.strip_suffix(".scope").unwrap_or(name);
                let bare = RUNTIMES
                    .iter()
                    .find_map(|r| bare.strip_prefix(r).and_then(|b| b.strip_prefix('-')))
                    .unwrap_or(bare);
                bare.len() >= id.len()
                    && bare.bytes().all(|b| b.is_ascii_hexdigit())
                    && bare.starts_with(&id)
            }
            Workload::Pod(uid) => {
                let uid = uid.to_ascii_lowercase();
                let systemd = format!("pod{}.slice", uid.replace('-', "_"));
                name == format!("pod{uid}")
                    || name.ends_with(&format!("-{systemd}"))
                    || name == systemd
            }
        }
    }
}

/// The one cgroup of `workload` under `root` (the cgroup2 mount). A match's own
/// descendants are not searched (a container's cgroup may hold one named like it).
pub fn locate(root: &Path, workload: &Workload) -> Result<PathBuf, LocateError> {
    workload.check()?;
    let mut found = Vec::new();
    let mut queue = VecDeque::from([(root.to_path_buf(), 0usize)]);
    let mut visited = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            visited += 1;
            if visited > MAX_VISITED {
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if workload.matches(&name) {
                found.push(entry.path());
            } else if depth + 1 < MAX_DEPTH {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Err(LocateError::NotFound {
            root: root.to_path_buf(),
            what: workload.describe(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(LocateError::Ambiguous {
            what: workload.describe(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2694d3b20bed49eb93414eb2c1cd1e506205c1b5bd88747b9b2b3183918252e0";
    const UID: &str = "5f3c9a1e-2b7d-4c8e-9a0f-1b2c3d4e5f60";

    #[test]
    fn container_cgroups_are_recognised_under_every_runtime_and_driver() {
        let c = Workload::Container(ID.into());
        for name in [
            format!("docker-{ID}.scope"),
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            format!("libpod-{ID}"),
            ID.to_owned(),
        ] {
            assert!(c.matches(&name), "{name}");
        }
        let short = Workload::Container(ID[..12].into());
        assert!(short.matches(&format!("docker-{ID}.scope")));
        assert!(!c.matches("docker-1234.scope"));
        assert!(
            Workload::Container("abc".into()).check().is_err(),
            "too short"
        );
        assert!(
            Workload::Container("../../etc/passwd0".into())
                .check()
                .is_err()
        );
    }

    #[test]
    fn pod_cgroups_are_recognised_with_both_drivers() {
        let p = Workload::Pod(UID.into());
        let underscored = UID.replace('-', "_");
        assert!(p.matches(&format!("kubepods-burstable-pod{underscored}.slice")));
        assert!(p.matches(&format!("kubepods-pod{underscored}.slice")));
        assert!(p.matches(&format!("pod{UID}")));
        assert!(!p.matches("pod5f3c9a1e"));
        assert!(Workload::Pod("5f3c9a1e".into()).check().is_err());
        assert!(p.check().is_ok());
    }

    #[test]
    fn a_search_finds_one_cgroup_or_says_why_not() {
        let root = tempfile::tempdir().unwrap();
        let underscored = UID.replace('-', "_");
        let pod = root
            .path()
            .join("kubepods.slice/kubepods-besteffort.slice")
            .join(format!("kubepods-besteffort-pod{underscored}.slice"));
        let container = pod.join(format!("cri-containerd-{ID}.scope"));
        std::fs::create_dir_all(&container).unwrap();
        assert_eq!(
            locate(root.path(), &Workload::Pod(UID.into())),
            Ok(pod.clone())
        );
        assert_eq!(
            locate(root.path(), &Workload::Container(ID[..16].into())),
            Ok(container)
        );
        let other = format!("{}ffff", &ID[..12]);
        std::fs::create_dir_all(root.path().join(format!("docker-{other}.scope"))).unwrap();
        assert!(matches!(
            locate(root.path(), &Workload::Container(ID[..12].into())),
            Err(LocateError::Ambiguous { .. })
        ));
        assert!(matches!(
            locate(root.path(), &Workload::Container("deadbeefdeadbeef".into())),
            Err(LocateError::NotFound { .. })
        ));
    }
}
