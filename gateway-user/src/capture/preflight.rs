//! Checks before anything is loaded: privileges, the cgroup2 and bpf filesystems, and the
//! cgroups the programs will be attached to. Each failure names its fix.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use super::CaptureError;

/// Where bpffs is conventionally mounted, and mounted by [`ensure_bpffs`] when missing.
const BPFFS: &str = "/sys/fs/bpf";

/// Capabilities needed to load, attach and pin: (bit, name).
const NEEDED_CAPS: [(u32, &str); 3] = [
    (39, "CAP_BPF"),
    (12, "CAP_NET_ADMIN"),
    (21, "CAP_SYS_ADMIN"),
];

/// Fail unless the process has every capability in [`NEEDED_CAPS`] in its effective set.
pub(crate) fn check_capabilities() -> Result<(), CaptureError> {
    let status = fs::read_to_string("/proc/self/status").map_err(CaptureError::ReadCapabilities)?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| {
            CaptureError::ReadCapabilities(std::io::Error::other("no parsable CapEff line"))
        })?;
    let missing = missing_capabilities(cap_eff);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaptureError::MissingCapabilities {
            missing: missing.join(", "),
        })
    }
}

/// The names of the needed capabilities absent from the effective set `cap_eff`.
pub(crate) fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    NEEDED_CAPS
        .iter()
        .filter(|(bit, _)| cap_eff & (1u64 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// Where cgroup2 is mounted, read from `/proc/self/mounts` (the first cgroup2 mount).
pub fn cgroup2_mount() -> Result<PathBuf, CaptureError> {
    let mounts = fs::read_to_string("/proc/self/mounts").map_err(CaptureError::ReadMounts)?;
    mount_points(&mounts, "cgroup2")
        .into_iter()
        .next()
        .ok_or(CaptureError::NoCgroup2)
}

/// Make sure `pin_dir` is on a bpffs, mounting bpffs at `/sys/fs/bpf` if it is missing there.
pub(crate) fn ensure_bpffs(pin_dir: &Path) -> Result<(), CaptureError> {
    let mounts = fs::read_to_string("/proc/self/mounts").map_err(CaptureError::ReadMounts)?;
    let bpf_mounts = mount_points(&mounts, "bpf");
    if bpf_mounts.iter().any(|m| pin_dir.starts_with(m)) {
        return Ok(());
    }
    let default = Path::new(BPFFS);
    if !pin_dir.starts_with(default) || bpf_mounts.iter().any(|m| m == default) {
        return Err(CaptureError::PinDirNotOnBpffs(pin_dir.to_path_buf()));
    }
    if !in_node_mount_namespace() {
        return Err(CaptureError::BpffsNotShared);
    }
    nix::mount::mount(
        Some("bpf"),
        default,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(CaptureError::MountBpffs)?;
    tracing::info!(path = BPFFS, "gateway: mounted bpffs");
    Ok(())
}

/// Whether this process shares the mount namespace of the node's init (pid 1 of the root
/// PID namespace): never when it is pid 1 itself (a container's entrypoint) or cannot tell.
fn in_node_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    /// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
    const INIT_PID_NS: u64 = 0xEFFF_FFFC;
    let id = |path: &str| fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    // Without the node's PID namespace, /proc/1 is the container's own init.
    let node_pids = fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INIT_PID_NS);
    node_pids
        && std::process::id() != 1
        && id("/proc/1/ns/mnt").is_some_and(|init| Some(init) == id("/proc/self/ns/mnt"))
}

/// Fail unless `cgroup` lies strictly below the cgroup2 mount `mount` (never its root) and
/// has no `..` components.
pub(crate) fn check_below_mount(cgroup: &Path, mount: &Path) -> Result<(), CaptureError> {
    let clean = cgroup
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean && cgroup.starts_with(mount) && cgroup != mount {
        Ok(())
    } else {
        Err(CaptureError::CgroupOutsideHierarchy {
            path: cgroup.to_path_buf(),
            mount: mount.to_path_buf(),
        })
    }
}

/// Create the parent cgroup (and missing ancestors) if needed.
pub(crate) fn ensure_cgroup(path: &Path) -> Result<(), CaptureError> {
    fs::create_dir_all(path).map_err(|source| CaptureError::CreateCgroup {
        path: path.to_path_buf(),
        source,
    })
}

/// Mount points of filesystems of type `fstype` in a `/proc/self/mounts` text, in order.
fn mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (_src, dir, ty) = (fields.next()?, fields.next()?, fields.next()?);
            (ty == fstype).then(|| PathBuf::from(unescape(dir)))
        })
        .collect()
}

/// Undo the octal escapes (`\040` for a space...) the kernel uses in mount paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid 0 0
tmpfs /sys/fs/cgroup tmpfs ro 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0
bpf /sys/fs/bpf bpf rw 0 0
none /mnt/my\\040cg cgroup2 rw 0 0
";

    #[test]
    fn finds_mounts_by_type_in_order() {
        assert_eq!(
            mount_points(MOUNTS, "cgroup2"),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/mnt/my cg")
            ]
        );
        assert_eq!(
            mount_points(MOUNTS, "bpf"),
            vec![PathBuf::from("/sys/fs/bpf")]
        );
        assert!(mount_points(MOUNTS, "nfs").is_empty());
    }

    #[test]
    fn unescapes_octal() {
        for (raw, want) in [
            ("/a\\040b", "/a b"),
            ("/plain", "/plain"),
            ("/x\\", "/x\\"),
            ("/\\011t", "/\tt"),
        ] {
            assert_eq!(unescape(raw), want, "{raw}");
        }
    }

    #[test]
    fn names_missing_capabilities() {
        let all = (1u64 << 39) | (1 << 12) | (1 << 21);
        for (eff, want) in [
            (u64::MAX, vec![]),
            (all, vec![]),
            (0, vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]),
            (all & !(1 << 39), vec!["CAP_BPF"]),
            (all & !(1 << 21), vec!["CAP_SYS_ADMIN"]),
        ] {
            assert_eq!(missing_capabilities(eff), want, "{eff:x}");
        }
    }

    #[test]
    fn cgroups_must_be_strictly_below_the_mount() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        for (path, ok) in [
            ("/sys/fs/cgroup/unified/sluice.sandboxes", true),
            ("/sys/fs/cgroup/unified/a/b", true),
            ("/sys/fs/cgroup/unified", false),
            ("/sys/fs/cgroup/unified/", false),
            ("/sys/fs/cgroup/unified/../x", false),
            ("/sys/fs/cgroup/other", false),
            ("/tmp/x", false),
        ] {
            assert_eq!(
                check_below_mount(Path::new(path), mount).is_ok(),
                ok,
                "{path}"
            );
        }
    }
}
