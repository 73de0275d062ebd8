//! cgroup v2 directory operations for sandboxes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A filesystem operation on the cgroup failed.
    #[error("cgroup: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The cgroup path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Processes were still alive after the kill.
    #[error("cgroup: {path} still has processes after kill; remove them and retry")]
    Busy {
        /// The cgroup path.
        path: PathBuf,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Creates the cgroup directory `path` (its parent must exist).
pub fn create(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir(path).map_err(io("create", path))
}

/// The pids in the cgroup (not in its children).
pub fn procs(path: &Path) -> Result<Vec<u32>, CgroupError> {
    let text =
        std::fs::read_to_string(path.join("cgroup.procs")).map_err(io("read procs of", path))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Whether any process lives in the cgroup or below it (`cgroup.events`: `populated 1`).
pub fn populated(path: &Path) -> Result<bool, CgroupError> {
    let text =
        std::fs::read_to_string(path.join("cgroup.events")).map_err(io("read events of", path))?;
    Ok(text.lines().any(|l| l.trim() == "populated 1"))
}

/// Kills every process in the cgroup and below it and waits (up to 5 s) until it is empty.
pub fn kill_all(path: &Path) -> Result<(), CgroupError> {
    if !populated(path)? {
        return Ok(());
    }
    std::fs::write(path.join("cgroup.kill"), b"1").map_err(io("kill", path))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while populated(path)? {
        if Instant::now() > deadline {
            return Err(CgroupError::Busy {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Removes the cgroup and any child cgroups the workload made (deepest first).
pub fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("list", path)(e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Moves the calling process into the cgroup (used by `sluice exec` before it runs the command).
pub fn enter(path: &Path) -> Result<(), CgroupError> {
    std::fs::write(path.join("cgroup.procs"), b"0").map_err(io("join", path))
}
