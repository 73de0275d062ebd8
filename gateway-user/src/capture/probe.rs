//! The kernel feature probe: before anything is attached, make sure this kernel has every
//! hook, helper and link kind the capture needs, and name what is missing with the release
//! that brought it. A kernel that lacks one gets no partial capture: the daemon refuses to
//! start.
//!
//! The probe is the real thing, not a version check: every program is loaded (the kernel
//! rejects an unknown program or attach type, the verifier an unknown helper) and a cgroup
//! link is created on a throwaway cgroup of our own. The tables below only turn a rejection
//! into a name and a release.

use std::{fs, io, os::fd::AsFd as _, path::Path};

use super::{CaptureError, rawlink};

/// The oldest Linux release with everything the capture needs: the newest of [`HOOKS`],
/// [`HELPERS`], cgroup links (5.7) and [`SOCKET_COOKIES`] (5.14, the last to arrive).
pub const MINIMUM_KERNEL: &str = "5.14";

/// The socket option the daemon reads of every accepted connection to find the kernel's
/// record of it, and the release that brought it.
const SOCKET_COOKIES: (&str, &str) = ("the SO_NETNS_COOKIE socket option", "5.14");

/// What each program hooks, and the release that brought the hook.
const HOOKS: [(&str, &str, &str); 15] = [
    ("sl_sock_create", "cgroup/sock_create programs", "4.10"),
    ("sl_connect4", "the cgroup/connect4 hook", "4.17"),
    ("sl_connect6", "the cgroup/connect6 hook", "4.17"),
    ("sl_sendmsg4", "the cgroup/sendmsg4 hook", "4.18"),
    ("sl_sendmsg6", "the cgroup/sendmsg6 hook", "4.18"),
    ("sl_recvmsg4", "the cgroup/recvmsg4 hook", "5.2"),
    ("sl_recvmsg6", "the cgroup/recvmsg6 hook", "5.2"),
    ("sl_getpeer4", "the cgroup/getpeername4 hook", "5.8"),
    ("sl_getpeer6", "the cgroup/getpeername6 hook", "5.8"),
    ("sl_sockops", "sock_ops programs", "4.13"),
    ("sl_bind4", "the cgroup/bind4 hook", "4.17"),
    ("sl_bind6", "the cgroup/bind6 hook", "4.17"),
    ("sl_setsockopt", "the cgroup/setsockopt hook", "5.3"),
    ("sl_egress", "cgroup_skb egress programs", "4.10"),
    ("sl_ingress", "cgroup_skb ingress programs", "4.10"),
];

/// The helpers the programs call, and the release from which every program type that calls
/// them may.
const HELPERS: [(&str, &str); 8] = [
    ("bpf_skb_load_bytes", "4.5"),
    ("bpf_get_current_pid_tgid", "4.10"),
    ("bpf_get_current_uid_gid", "4.10"),
    ("bpf_get_current_cgroup_id", "4.18"),
    ("bpf_sk_fullsock", "5.1"),
    ("bpf_sk_storage_get", "5.2"),
    ("bpf_get_current_ancestor_cgroup_id", "5.6"),
    ("bpf_get_netns_cookie", "5.7"),
];

/// What the probe says when cgroup links are missing.
const CGROUP_LINKS: &str = "bpf links for cgroup programs (BPF_LINK_CREATE)";

/// `enum bpf_attach_type`: `BPF_CGROUP_INET_SOCK_CREATE`.
const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;

/// Read `SO_NETNS_COOKIE` of a fresh socket: kernels before 5.14 answer `ENOPROTOOPT`, and
/// without it no accepted connection could be matched to the kernel's record of it.
pub(crate) fn socket_cookies() -> Result<(), CaptureError> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| CaptureError::io("create a probe socket", "SO_NETNS_COOKIE")(e.into()))?;
    match super::key::netns_cookie(&sock) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            let (what, since) = SOCKET_COOKIES;
            Err(lacks(what.to_owned(), since, format!("getsockopt: {e}")))
        }
        Err(e) => Err(CaptureError::io(
            "read SO_NETNS_COOKIE of",
            "a probe socket",
        )(e)),
    }
}

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |r| r.trim().to_owned())
}

/// Turn a program's load failure into the feature the kernel lacks, when it names one: an
/// unknown helper in the verifier log, or a rejection before verification (an empty log with
/// `EINVAL`: the kernel does not know the program or attach type). Anything else is a real
/// verifier rejection and stays a [`CaptureError::Program`].
pub(crate) fn load_failure(
    program: &'static str,
    err: aya::programs::ProgramError,
) -> CaptureError {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &err
        && let Some(lacking) = classify(program, io_error, &verifier_log.to_string())
    {
        return lacking;
    }
    CaptureError::program(program, "load (verifier)")(err)
}

/// The feature a load failure of `program` shows missing, if it shows one.
fn classify(program: &'static str, io_error: &io::Error, log: &str) -> Option<CaptureError> {
    if let Some(helper) = unknown_helper(log) {
        let since = HELPERS
            .iter()
            .find(|(name, _)| *name == helper)
            .map_or(MINIMUM_KERNEL, |(_, since)| since);
        return Some(lacks(
            format!("the helper {helper} in {}", hook(program).0),
            since,
            format!("{program}: {}", last_line(log)),
        ));
    }
    (log.trim().is_empty() && io_error.raw_os_error() == Some(libc::EINVAL)).then(|| {
        let (what, since) = hook(program);
        lacks(what.to_owned(), since, format!("{program}: {io_error}"))
    })
}

/// Create a cgroup link on a throwaway child of `parent` and drop it again: kernels before
/// 5.7 have none, and the capture pins links so that it survives the daemon.
pub(crate) fn cgroup_links(
    parent: &Path,
    prog: std::os::fd::BorrowedFd<'_>,
) -> Result<(), CaptureError> {
    let probe = parent.join("sluice-probe");
    match fs::create_dir(&probe) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(CaptureError::io("create probe cgroup", &probe)(e)),
    }
    let linked = fs::File::open(&probe)
        .map_err(CaptureError::io("open probe cgroup", &probe))
        .and_then(|cgroup| {
            rawlink::link(prog, cgroup.as_fd(), BPF_CGROUP_INET_SOCK_CREATE).map_err(|e| {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    lacks(CGROUP_LINKS.to_owned(), "5.7", e.to_string())
                } else {
                    CaptureError::io("create a probe link on", &probe)(e)
                }
            })
        });
    // The link (if any) is closed, and so detached, before the cgroup goes.
    let linked = linked.map(drop);
    let removed = fs::remove_dir(&probe).map_err(CaptureError::io("remove probe cgroup", &probe));
    linked.and(removed)
}

/// The hook a program needs and its release.
fn hook(program: &str) -> (&'static str, &'static str) {
    known_hook(program).unwrap_or(("its program type", MINIMUM_KERNEL))
}

/// The hook of a program the probe's table knows.
pub(crate) fn known_hook(program: &str) -> Option<(&'static str, &'static str)> {
    HOOKS
        .iter()
        .find(|(name, _, _)| *name == program)
        .map(|(_, what, since)| (*what, *since))
}

fn lacks(feature: String, since: &'static str, detail: String) -> CaptureError {
    CaptureError::KernelLacks {
        kernel: kernel_release(),
        feature,
        since,
        minimum: MINIMUM_KERNEL,
        detail,
    }
}

/// The helper a verifier log says is unknown: `unknown func bpf_x#N` (or, on newer kernels,
/// `program of this type cannot use helper bpf_x#N`).
fn unknown_helper(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = line
            .split_once("unknown func ")
            .or_else(|| line.split_once("cannot use helper "))?
            .1;
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        name.starts_with("bpf_").then_some(name)
    })
}

fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_is_the_newest_need() {
        let newest = HOOKS
            .iter()
            .map(|(_, _, since)| *since)
            .chain(HELPERS.iter().map(|(_, since)| *since))
            .chain([SOCKET_COOKIES.1, "5.7"])
            .max_by_key(|v| version(v))
            .unwrap_or_default();
        assert_eq!(newest, MINIMUM_KERNEL);
    }

    fn version(v: &str) -> (u32, u32) {
        let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
        (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
    }

    #[test]
    fn this_kernel_has_socket_cookies() {
        // The unit tests run on the development machine's kernel (6.18).
        socket_cookies().expect("SO_NETNS_COOKIE");
    }

    #[test]
    fn finds_the_unknown_helper_in_a_verifier_log() {
        for (log, want) in [
            (
                "0: (bf) r6 = r1\n1: (85) call bpf_get_netns_cookie#122\nunknown func bpf_get_netns_cookie#122\n",
                Some("bpf_get_netns_cookie"),
            ),
            (
                "5: (85) call bpf_sk_storage_get#107\nprogram of this type cannot use helper bpf_sk_storage_get#107\n",
                Some("bpf_sk_storage_get"),
            ),
            ("R1 invalid mem access 'scalar'\n", None),
            ("", None),
        ] {
            assert_eq!(unknown_helper(log).as_deref(), want, "{log}");
        }
    }

    #[test]
    fn a_rejection_before_verification_names_the_hook() {
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        let err = classify("sl_getpeer4", &einval, "").expect("a missing hook");
        let text = err.to_string();
        assert!(text.contains("the cgroup/getpeername4 hook"), "{text}");
        assert!(
            text.contains("lacks the cgroup/getpeername4 hook (Linux 5.8)"),
            "{text}"
        );
        assert!(text.contains("Sluice needs Linux 5.14 or newer"), "{text}");
        assert!(text.contains("Nothing was attached"), "{text}");
        // A verifier rejection of a known hook is not a missing feature.
        assert!(classify("sl_getpeer4", &einval, "R1 invalid mem access").is_none());
        let helper = classify(
            "sl_connect4",
            &einval,
            "unknown func bpf_get_netns_cookie#122",
        )
        .expect("a missing helper")
        .to_string();
        assert!(
            helper.contains("the helper bpf_get_netns_cookie in the cgroup/connect4 hook"),
            "{helper}"
        );
        assert!(helper.contains("(Linux 5.7)"), "{helper}");
    }
}
