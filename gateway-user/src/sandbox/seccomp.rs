//! The seccomp filters of a `sluice exec` workload.
//!
//! The cgroup programs see only IPv4/IPv6 sockets (`cgroup/sock_create` does not run for
//! other families), and namespaces are the walls of the sandbox, so the filter closes what
//! the kernel hooks cannot:
//! - `socket()` only for `AF_INET`, `AF_INET6` and route netlink: no `AF_PACKET`, `AF_VSOCK`,
//!   and no `AF_UNIX` (the node's Unix-socket services — D-Bus, container runtimes, databases
//!   — are not the sandbox's to call; `socketpair()` still works for a program's own pipes);
//! - no new namespaces and no mounts: `unshare`, `setns`, `clone` with a namespace flag,
//!   `mount` and the new mount API, `pivot_root`;
//! - no `bpf()` and no io_uring (which can open sockets and files without the syscalls
//!   above), no `perf_event_open`;
//! - `clone3` answers `ENOSYS` (its flags sit behind a pointer a filter cannot read), so the C
//!   library falls back to `clone`, whose flags are checked.
//!
//! # Security
//! Filters are inherited by every descendant and cannot be removed; `no_new_privs` is set
//! before they are applied, so setuid programs regain nothing.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Address families a sandbox may create sockets in (netlink: route only).
const ALLOWED_FAMILIES: [u64; 3] = [
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// `clone` flags that would make a new namespace.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// System calls refused outright.
const REFUSED: [i64; 17] = [
    libc::SYS_bpf,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_perf_event_open,
];

/// Why a filter could not be built or applied.
#[derive(Debug, thiserror::Error)]
#[error("sandbox: seccomp filter: {0}")]
pub struct SeccompError(String);

/// Sets `no_new_privs` and applies both filters to the calling thread (and so to everything
/// it execs and forks).
pub fn apply() -> Result<(), SeccompError> {
    let fail = |e: &dyn std::fmt::Display| SeccompError(e.to_string());
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail(&e))?;
    let (refuse, clone3) = filters().map_err(|e| fail(&e))?;
    seccompiler::apply_filter(&refuse).map_err(|e| fail(&e))?;
    seccompiler::apply_filter(&clone3).map_err(|e| fail(&e))
}

/// The refusing filter (`EPERM`) and the `clone3` filter (`ENOSYS`).
fn filters() -> Result<(BpfProgram, BpfProgram), seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(seccompiler::Error::Backend)?;
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let qword = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value);

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
    let mut new_namespace = Vec::new();
    for flag in NAMESPACE_FLAGS {
        new_namespace.push(SeccompRule::new(vec![qword(
            0,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    rules.insert(libc::SYS_clone, new_namespace);
    for always in REFUSED {
        rules.insert(always, Vec::new());
    }
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let refuse = SeccompFilter::new(rules, SeccompAction::Allow, eperm, arch)?;

    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
    let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, enosys, arch)?;
    Ok((
        refuse.try_into().map_err(seccompiler::Error::Backend)?,
        clone3.try_into().map_err(seccompiler::Error::Backend)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_for_this_machine() {
        let (refuse, clone3) = filters().unwrap();
        assert!(!refuse.is_empty() && !clone3.is_empty());
    }
}
