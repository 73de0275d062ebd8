//! Confinement of a sandbox's first process, applied just before it runs the workload.
//!
//! The cgroup programs see only IPv4/IPv6 sockets (`cgroup/sock_create` does not run for
//! other families), and a root workload could otherwise write its pid into a cgroup outside
//! the sandbox (cgroup namespaces do not stop that unless the hierarchy is mounted with
//! `nsdelegate`, which it is not here). So the process also gets:
//! - its own mount namespace in which the cgroup and bpf filesystems are read-only, and its
//!   own cgroup namespace (it sees its sandbox as `/`);
//! - no `CAP_SYS_ADMIN` (so it cannot remount them), `CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_BPF`,
//!   `CAP_PERFMON`, `CAP_SYS_MODULE`, `CAP_SYS_PTRACE` or `CAP_SYS_RAWIO`, in any set
//!   including the bounding set;
//! - a seccomp filter allowing `socket()` only for `AF_UNIX`, `AF_INET`, `AF_INET6` and
//!   route netlink (no `AF_PACKET`, `AF_VSOCK`, …), and refusing `bpf()` and io_uring (which
//!   can create sockets without `socket()`).
//!
//! # Security
//! All of it is inherited by every descendant and cannot be undone from inside (seccomp also
//! sets `no_new_privs`, so setuid programs regain nothing).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why confinement failed (the workload is then not started).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The cgroup namespace could not be created.
    #[error("sandbox: unshare the cgroup namespace: {0}")]
    CgroupNamespace(nix::Error),
    /// The private read-only mounts could not be set up.
    #[error("sandbox: make {path} read-only: {source}")]
    Mount {
        /// The mount point.
        path: String,
        /// The error.
        source: nix::Error,
    },
    /// A capability could not be dropped.
    #[error("sandbox: drop capabilities: {0}")]
    Capabilities(String),
    /// The seccomp filter could not be built or applied.
    #[error("sandbox: seccomp filter: {0}")]
    Seccomp(String),
}

/// Address families a sandbox may create sockets in.
const ALLOWED_FAMILIES: [u64; 4] = [
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// Capabilities no sandbox keeps.
const DROPPED: [caps::Capability; 8] = [
    caps::Capability::CAP_SYS_ADMIN,
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_PERFMON,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_SYS_PTRACE,
    caps::Capability::CAP_SYS_RAWIO,
];

/// Confines the calling (single-threaded) process; call after joining the sandbox cgroup.
pub fn confine() -> Result<(), ConfineError> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP | CloneFlags::CLONE_NEWNS)
        .map_err(ConfineError::CgroupNamespace)?;
    read_only_control_filesystems()?;
    drop_capabilities()?;
    let program = filter().map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| ConfineError::Seccomp(e.to_string()))
}

/// In the new mount namespace: stop propagation to the host, then remount every cgroup and
/// bpf filesystem read-only.
fn read_only_control_filesystems() -> Result<(), ConfineError> {
    use nix::mount::{MsFlags, mount};
    let fail = |path: &str| {
        let path = path.to_owned();
        move |source| ConfineError::Mount { path, source }
    };
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(fail("/"))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(target), Some(fstype)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if matches!(fstype, "cgroup" | "cgroup2" | "bpf") {
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(fail(target))?;
        }
    }
    Ok(())
}

fn drop_capabilities() -> Result<(), ConfineError> {
    use caps::CapSet;
    let fail = |e: caps::errors::CapsError| ConfineError::Capabilities(e.to_string());
    for cap in DROPPED {
        caps::drop(None, CapSet::Bounding, cap).map_err(fail)?;
        for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
            caps::drop(None, set, cap).map_err(fail)?;
        }
    }
    Ok(())
}

fn filter() -> Result<BpfProgram, seccompiler::Error> {
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let mut other_family = Vec::new();
    for family in ALLOWED_FAMILIES {
        other_family.push(arg(0, SeccompCmpOp::Ne, family)?);
    }
    let netlink_not_route = vec![
        arg(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?,
        arg(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u64)?,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(
        libc::SYS_socket,
        vec![
            SeccompRule::new(other_family)?,
            SeccompRule::new(netlink_not_route)?,
        ],
    );
    for always in [
        libc::SYS_bpf,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(always, Vec::new());
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccompiler::Error::Backend)?;
    let errno = SeccompAction::Errno(libc::EPERM as u32);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, errno, arch)?;
    filter.try_into().map_err(seccompiler::Error::Backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_compiles_for_this_machine() {
        assert!(!filter().unwrap().is_empty());
    }
}
