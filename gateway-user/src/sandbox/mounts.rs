//! The mount namespace of a `sluice exec` sandbox: what it sees of the node's filesystem.
//!
//! Set up by the node's root before the workload gets its own user namespace, so the
//! namespace belongs to the node's root and the workload (root only inside its own user
//! namespace) can neither mount nor unmount anything in it: every mask below holds.
//! - The cgroup and bpf filesystems are read-only, and the workload gets its own cgroup
//!   namespace (it sees its sandbox as `/`).
//! - The daemon's state directory is hidden under an empty read-only tmpfs, with only the
//!   public CA files (`ca.pem`, `ca-bundle.pem`) bound back, read-only, where `sluice env`
//!   points; the configuration file and other secret paths are hidden too.
//! - A fresh `/proc` for the sandbox's own PID namespace, with `/proc/sys` read-only.
//! - Private, empty `/tmp`, `/var/tmp`, `/dev/shm` and `/run/lock` (not shared with the node
//!   or other sandboxes), and a private, empty home.
//! - The trust store, overlaid: the node's roots plus Sluice's CA wherever the common
//!   distributions keep their bundle, and the CA in `/etc/ssl/certs` ([`TrustOverlay`]), so
//!   the sandbox is born trusting it.
//!
//! # Security
//! The masks are defence in depth: the workload's node id owns none of these files anyway.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::tls::trust::{JAVA_STORE, JAVA_STORES, JVM_DIR, SYSTEM_BUNDLES, SYSTEM_CERTS_DIR};

/// What to hide from a sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// Directories covered by an empty read-only tmpfs.
    pub hide_dirs: Vec<PathBuf>,
    /// Files covered by an empty read-only file.
    pub hide_files: Vec<PathBuf>,
    /// Files inside a hidden directory that stay visible, read-only.
    pub keep: Vec<PathBuf>,
    /// The trust-store overlay (off: the sandbox sees the node's trust store as it is).
    pub trust: Option<TrustOverlay>,
}

/// Why the sandbox's mounts could not be set up (the workload is then not started).
#[derive(Debug, thiserror::Error)]
#[error("sandbox: {action} {path}: {source}")]
pub struct MountError {
    action: &'static str,
    path: String,
    source: nix::Error,
}

impl MountError {
    fn at(action: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> MountError {
        let path = path.display().to_string();
        move |source| MountError {
            action,
            path,
            source,
        }
    }
}

/// Enters a new mount and cgroup namespace and applies `plan` (call as the node's root, after
/// joining the sandbox cgroup).
pub fn prepare(plan: &MountPlan) -> Result<(), MountError> {
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP).map_err(MountError::at(
        "unshare the mount namespace",
        Path::new("/"),
    ))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(MountError::at("stop mount propagation at", Path::new("/")))?;
    // Open the files to keep before any mount hides them.
    let kept: Vec<(OwnedFd, &PathBuf)> = plan
        .keep
        .iter()
        .filter_map(|path| Some((open_path(path)?, path)))
        .collect();
    read_only_control_filesystems()?;
    // Before the private temporary directories: a state directory under /tmp is still the
    // node's here.
    if let Some(trust) = &plan.trust {
        overlay_trust(trust)?;
    }
    private_temp_dirs()?;
    for dir in &plan.hide_dirs {
        let inside: Vec<&(OwnedFd, &PathBuf)> =
            kept.iter().filter(|(_, k)| k.starts_with(dir)).collect();
        // A state directory under a now-private place (/tmp) is made again there, so the
        // CA files `sluice env` points at stay where they were.
        if !dir.is_dir() && !inside.is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| MountError::at("make a mount point at", dir)(errno(&e)))?;
        }
        if dir.is_dir() {
            hide_dir(dir, &inside)?;
        }
    }
    for file in plan.hide_files.iter().filter(|f| f.is_file()) {
        bind_read_only(Path::new("/dev/null"), file)?;
    }
    Ok(())
}

/// The trust-store overlay of a sandbox: the merged bundle laid over the distributions'
/// bundle files, and a directory laid over `/etc/ssl/certs` (an overlay, so the node's
/// hashed links stay) holding the bundle as `ca-certificates.crt` and the CA as
/// `<subject-hash>.0`. Only files that exist on the node are covered; nothing on the node
/// changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustOverlay {
    /// The node's roots and the Sluice CA.
    pub bundle: PathBuf,
    /// The directory laid over `/etc/ssl/certs`.
    pub certs: PathBuf,
}

/// Lays `trust` over the sandbox's trust store (in its own mount namespace).
fn overlay_trust(trust: &TrustOverlay) -> Result<(), MountError> {
    let certs = Path::new(SYSTEM_CERTS_DIR);
    if certs.is_dir() {
        let lower = trust.certs.display().to_string();
        if lower.contains([',', ':', '\\']) {
            return Err(MountError::at(
                "lay the trust store over /etc/ssl/certs from",
                &trust.certs,
            )(nix::Error::EINVAL));
        }
        let options = format!("lowerdir={lower}:{SYSTEM_CERTS_DIR}");
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(
            Some("overlay"),
            certs,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )
        .map_err(MountError::at("lay the trust store over", certs))?;
    }
    for file in SYSTEM_BUNDLES.iter().map(Path::new) {
        if !file.starts_with(certs) && file.is_file() {
            bind_read_only(&trust.bundle, file)?;
        }
    }
    // Java: Debian's store is under /etc/ssl/certs (overlaid above); others, and JDKs that
    // ship their own file rather than a link to it, get the store bound over theirs.
    let java = trust.certs.join(JAVA_STORE);
    let jdks = std::fs::read_dir(JVM_DIR)
        .map(|dir| {
            dir.flatten()
                .map(|jdk| jdk.path().join("lib/security/cacerts"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let stores = JAVA_STORES.iter().map(PathBuf::from).chain(jdks);
    for store in stores {
        let own_file = std::fs::symlink_metadata(&store).is_ok_and(|m| m.file_type().is_file());
        if own_file && java.is_file() {
            bind_read_only(&java, &store)?;
        }
    }
    Ok(())
}

/// Mounts a fresh `/proc` for the calling process's PID namespace (call as its first
/// process, before it leaves the node's user namespace) and makes `/proc/sys` read-only.
pub fn fresh_proc() -> Result<(), MountError> {
    let proc = Path::new("/proc");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), proc, Some("proc"), flags, None::<&str>)
        .map_err(MountError::at("mount a fresh proc on", proc))?;
    let sys = Path::new("/proc/sys");
    bind_read_only(sys, sys)
}

/// Covers the workload's home (`home`, or `/root` for a root workload) with an empty tmpfs
/// owned by node id `uid`/`gid`, so the workload has a writable home that is not the node's
/// (a user's real home, with its `.ssh` and cloud credentials, stays out of reach). A home
/// that does not exist on the node is `/tmp` instead (nothing is created on the node).
pub fn private_home(home: Option<&Path>, uid: u32, gid: u32) -> Result<PathBuf, MountError> {
    let home = home.unwrap_or(Path::new("/root")).to_path_buf();
    if !home.is_dir() || home == Path::new("/") {
        return Ok(PathBuf::from("/tmp"));
    }
    let options = format!("mode=0700,uid={uid},gid={gid},size=1g");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        Some("tmpfs"),
        &home,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    )
    .map_err(MountError::at("mount a private home on", &home))?;
    Ok(home)
}

/// Directories every user may write to, which would otherwise be shared with the node and
/// with other sandboxes (a channel around the gate): each sandbox gets empty ones.
const SHARED_WRITABLE: [&str; 4] = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];

/// Covers each of [`SHARED_WRITABLE`] that exists with a fresh sticky, world-writable tmpfs.
fn private_temp_dirs() -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for dir in SHARED_WRITABLE.iter().map(Path::new).filter(|d| d.is_dir()) {
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            flags,
            Some("mode=1777,size=1g"),
        )
        .map_err(MountError::at(
            "mount a private temporary directory on",
            dir,
        ))?;
    }
    Ok(())
}

/// Every cgroup and bpf filesystem, remounted read-only.
fn read_only_control_filesystems() -> Result<(), MountError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(target), Some(fstype)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if matches!(fstype, "cgroup" | "cgroup2" | "bpf") {
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            let target = Path::new(target);
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
                .map_err(MountError::at("make read-only", target))?;
        }
    }
    Ok(())
}

/// Covers `dir` with an empty read-only tmpfs, binding each of `kept` (opened before) back
/// read-only at its path.
fn hide_dir(dir: &Path, kept: &[&(OwnedFd, &PathBuf)]) -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some("mode=0755,size=64k"),
    )
    .map_err(MountError::at("hide", dir))?;
    for (fd, path) in kept {
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::File::create(path).map(drop))
            .map_err(|e| MountError::at("make a mount point at", path)(errno(&e)))?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        bind_read_only(&source, path)?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
        None::<&str>,
    )
    .map_err(MountError::at("make read-only", dir))
}

/// An `O_PATH` handle on `path`, if it exists.
fn open_path(path: &Path) -> Option<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    open(
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

/// Binds `source` on `target`, then makes that mount read-only.
fn bind_read_only(source: &Path, target: &Path) -> Result<(), MountError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(MountError::at("bind over", target))?;
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(MountError::at("make read-only", target))
}

fn errno(e: &std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map_or(nix::Error::EIO, nix::Error::from_raw)
}
