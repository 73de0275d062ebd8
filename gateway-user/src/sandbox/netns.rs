//! Network namespaces for sandboxes that get their own (`sluice exec --netns`).
//!
//! A namespace is created and named with iproute2 (`ip netns add`), which bind-mounts it under
//! `/run/netns/`, so it outlives any process and a restarted daemon can re-enter it. Sockets
//! the daemon binds inside it (on a helper thread that `setns`es) stay in it while being
//! served by the daemon's runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `ip` could not be run or failed.
    #[error("netns: `{command}` failed: {detail}; is iproute2 installed?")]
    Ip {
        /// The command line.
        command: String,
        /// Its stderr or the spawn error.
        detail: String,
    },
    /// Entering the namespace or binding inside it failed.
    #[error("netns: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Creates a named namespace with loopback up and returns its path.
pub fn create(name: &str) -> Result<PathBuf, NetnsError> {
    ip(&["netns", "add", name])?;
    if let Err(e) = ip(&["-n", name, "link", "set", "lo", "up"]) {
        let _ = ip(&["netns", "delete", name]);
        return Err(e);
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// Names the network namespace of process `pid` (a container's) `name`, with loopback up,
/// and returns its path: the name keeps the namespace reachable after a daemon restart, and
/// [`delete`] removes only the name.
pub fn attach(name: &str, pid: u32) -> Result<PathBuf, NetnsError> {
    ip(&["netns", "attach", name, &pid.to_string()])?;
    if let Err(e) = ip(&["-n", name, "link", "set", "lo", "up"]) {
        let _ = ip(&["netns", "delete", name]);
        return Err(e);
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// The identity (device, inode) of a network namespace file (`/proc/PID/ns/net`, a name
/// under [`NETNS_DIR`]): equal identities are the same namespace.
pub fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Deletes a named namespace created by [`create`] or named by [`attach`] (a missing one
/// is fine); an attached namespace lives on while its container holds it.
pub fn delete(path: &Path) -> Result<(), NetnsError> {
    if !path.exists() {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ip(&["netns", "delete", &name])
}

/// Runs `f` on a new thread that has entered the namespace at `path`, and returns its result.
/// Sockets created by `f` belong to that namespace for their whole life.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, NetnsError> {
    let ns_path = path.to_path_buf();
    let fail = |action, source| NetnsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| fail("open", e))?;
    let handle = std::thread::spawn(move || -> Result<T, NetnsError> {
        let fail = |action, source| NetnsError::Io {
            action,
            path: ns_path.clone(),
            source,
        };
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| fail("enter", e.into()))?;
        f().map_err(|e| fail("bind in", e))
    });
    handle
        .join()
        .map_err(|_| fail("thread for", std::io::Error::other("panicked")))?
}

/// Moves the calling thread into the namespace at `path` (`sluice exec`, single-threaded,
/// just before it runs the command).
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let fail = |action, source| NetnsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| fail("open", e))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| fail("enter", e.into()))
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(NetnsError::Ip { command, detail })
    }
}
