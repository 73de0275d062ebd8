//! Real podman for container tests: a store of the test's own (removed on drop), containers
//! made from a local root filesystem (the node's `/usr`; no image pulls), and Sluice's OCI
//! runtime wrapper in front of runc.
//!
//! This machine's cgroup layout is hybrid (cgroup v2 at `/sys/fs/cgroup/unified`): crun
//! refuses it, runc works with podman's `cgroupfs` manager and `--ulimit host` (see
//! KERNEL.md). podman runs in the lab's node namespace, so `--network host` is the node's
//! network and the wrapper reaches the daemon's control API there.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::sluice::Sluice;

/// A podman of the test's own.
#[derive(Debug)]
pub struct Podman {
    dir: tempfile::TempDir,
    node_ns: PathBuf,
    /// The wrapper podman runs as its OCI runtime (`sluice-runtime-runc`, a link to the
    /// `sluice` binary) with its configuration beside it.
    pub runtime: PathBuf,
    /// The root filesystem containers run (see [`node_rootfs`]).
    pub rootfs: PathBuf,
}

impl Podman {
    /// A store under a new temporary directory; the wrapper names `sluice`'s control API.
    pub fn new(sluice: &Sluice, node_ns: &Path) -> std::io::Result<Podman> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-podman-")
            .tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let conf = dir.path().join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n")?;
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin)?;
        let runtime = bin.join("sluice-runtime-runc");
        std::os::unix::fs::symlink(crate::sluice::binary(), &runtime)?;
        // The wrapper's configuration: the daemon's own file, beside the wrapper.
        std::fs::copy(sluice.config_path(), bin.join("sluice-runtime-runc.toml"))?;
        let rootfs = dir.path().join("rootfs");
        node_rootfs(&rootfs)?;
        Ok(Podman {
            dir,
            node_ns: node_ns.to_path_buf(),
            runtime,
            rootfs,
        })
    }

    /// `podman GLOBAL… ARGS` in the node namespace with this store and the wrapper.
    pub fn command(&self, args: &[&str]) -> Command {
        let root = self.dir.path();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_ns.display()))
            .arg("podman")
            .arg("--root")
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(root.join("run"))
            .arg("--tmpdir")
            .arg(root.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .env("CONTAINERS_CONF", root.join("containers.conf"));
        cmd
    }

    /// `podman run` of the root filesystem: `flags` (before the root filesystem), then
    /// `sh -c script`.
    pub fn run(&self, flags: &[&str], script: &str) -> std::io::Result<Output> {
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let mut args = vec!["run", "--ulimit", "host", "--volume", USR_MOUNT];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &rootfs, "/bin/sh", "-c", script]);
        self.command(&args).output()
    }
}

impl Podman {
    /// `podman run -d --name NAME FLAGS… ROOTFS COMMAND…` (the node's `/usr` mounted).
    pub fn detached(
        &self,
        name: &str,
        flags: &[&str],
        command: &[&str],
    ) -> std::io::Result<Output> {
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let mut args = vec![
            "run", "-d", "--ulimit", "host", "--volume", USR_MOUNT, "--name", name,
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &rootfs]);
        args.extend_from_slice(command);
        self.command(&args).output()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers the test left behind, then the store.
        let _ = self
            .command(&["rm", "--all", "--force", "--time", "0"])
            .output();
        let _ = self.command(&["system", "reset", "--force"]).output();
        // Whatever podman could not unmount (a container's shm) must not outlive the test.
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if point.starts_with(&dir) {
                let _ = Command::new("umount").args(["-l", point]).output();
            }
        }
    }
}

/// A root filesystem of the node's programs: `/usr` is bind-mounted read-only by
/// [`USR_MOUNT`] (Debian's merged `/usr`: `/bin` and `/lib` are links into it), so a
/// container has the node's shell, curl and Python without an image.
pub fn node_rootfs(root: &Path) -> std::io::Result<()> {
    for dir in ["usr", "etc", "proc", "sys", "dev", "tmp", "run"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// The `--volume` that gives a [`node_rootfs`] container the node's `/usr`.
pub const USR_MOUNT: &str = "/usr:/usr:ro";
