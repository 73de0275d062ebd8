//! Confinement steps of a sandbox's processes that are not namespaces or mounts: inherited
//! file descriptors and capabilities. See [`crate::sandbox::launch`] for the order.
//!
//! # Security
//! A descriptor the launcher held (a socket opened before the sandbox existed, a state file)
//! would reach the workload uncaptured, so every one above stderr is closed first. The
//! capabilities below are dropped from every set, the bounding set included, so nothing the
//! workload execs regains them (even inside its own user namespace, where it is root).

use std::os::fd::RawFd;

/// Why confinement failed (the workload is then not started).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The open descriptors could not be listed or closed.
    #[error("sandbox: close inherited file descriptors: {0}")]
    Descriptors(String),
    /// A capability could not be dropped.
    #[error("sandbox: drop capabilities: {0}")]
    Capabilities(String),
}

/// Capabilities no sandbox keeps, even inside its own user namespace.
const DROPPED: [caps::Capability; 10] = [
    caps::Capability::CAP_SYS_ADMIN,
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_PERFMON,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_SYS_PTRACE,
    caps::Capability::CAP_SYS_RAWIO,
    caps::Capability::CAP_SYS_BOOT,
    caps::Capability::CAP_MAC_ADMIN,
];

/// Closes every file descriptor above 2 (call first, while single-threaded).
pub fn close_inherited_fds() -> Result<(), ConfineError> {
    let fail = |e: &dyn std::fmt::Display| ConfineError::Descriptors(e.to_string());
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| fail(&e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        // The directory's own descriptor is in the list and already closed: EBADF is fine.
        match nix::unistd::close(fd) {
            Ok(()) | Err(nix::Error::EBADF) => {}
            Err(e) => return Err(fail(&e)),
        }
    }
    Ok(())
}

/// Drops [`DROPPED`] from the bounding, inheritable, effective, permitted and ambient sets.
pub fn drop_capabilities() -> Result<(), ConfineError> {
    use caps::CapSet;
    let fail = |e: caps::errors::CapsError| ConfineError::Capabilities(e.to_string());
    for cap in DROPPED {
        caps::drop(None, CapSet::Bounding, cap).map_err(fail)?;
        for set in [
            CapSet::Ambient,
            CapSet::Inheritable,
            CapSet::Effective,
            CapSet::Permitted,
        ] {
            caps::drop(None, set, cap).map_err(fail)?;
        }
    }
    Ok(())
}
