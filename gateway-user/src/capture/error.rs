//! The error of the capture module: every variant says what failed and how to fix it.

use std::{io, path::PathBuf};

/// Why installing, opening or using the kernel capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The process lacks capabilities needed to load and attach eBPF programs.
    #[error(
        "gateway: missing capabilities {missing}; run sluice as root or grant it \
         CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"
    )]
    MissingCapabilities {
        /// Comma-separated names of the missing capabilities.
        missing: String,
    },
    /// The capabilities of the process could not be read.
    #[error("gateway: cannot read capabilities from /proc/self/status: {0}")]
    ReadCapabilities(#[source] io::Error),
    /// No cgroup2 filesystem is mounted.
    #[error(
        "gateway: no cgroup2 filesystem found in /proc/self/mounts; mount one, \
         e.g. `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoCgroup2,
    /// `/proc/self/mounts` could not be read.
    #[error("gateway: cannot read /proc/self/mounts: {0}")]
    ReadMounts(#[source] io::Error),
    /// bpffs was missing at `/sys/fs/bpf` and mounting it failed.
    #[error(
        "gateway: bpffs is not mounted at /sys/fs/bpf and mounting it failed ({0}); \
         run `mount -t bpf bpf /sys/fs/bpf` as root"
    )]
    MountBpffs(#[source] nix::Error),
    /// bpffs is missing and this is not the node's own mount namespace (a container, or a
    /// service with a private one): a bpffs mounted here would vanish, with the pins and so
    /// the capture, when the daemon stops.
    #[error(
        "gateway: no bpffs at /sys/fs/bpf, and this may not be the node's mount namespace \
         (a container?): on the node itself, `mount -t bpf bpf /sys/fs/bpf` (`cargo xtask run` \
         does); in a container, mount the node's /sys/fs/bpf here (podman: \
         `-v /sys/fs/bpf:/sys/fs/bpf`, Kubernetes: a hostPath volume); pins in a bpffs of its \
         own would vanish with it"
    )]
    BpffsNotShared,
    /// The pin directory is not on a bpf filesystem.
    #[error(
        "gateway: pin directory {0} is not on a bpf filesystem; use a directory under /sys/fs/bpf"
    )]
    PinDirNotOnBpffs(PathBuf),
    /// A cgroup path is outside the cgroup2 hierarchy or is its root.
    #[error(
        "gateway: cgroup {path} must be a directory strictly below the cgroup2 mount {mount} \
         (the root is never attached to)"
    )]
    CgroupOutsideHierarchy {
        /// The offending cgroup path.
        path: PathBuf,
        /// The cgroup2 mount point.
        mount: PathBuf,
    },
    /// The parent cgroup could not be created.
    #[error(
        "gateway: cannot create parent cgroup {path} ({source}); check that the cgroup2 mount \
         is writable by this user"
    )]
    CreateCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The binary was built with `AYA_BUILD_SKIP=1`: no kernel programs are embedded.
    #[error(
        "gateway: this sluice binary was built without its kernel programs (AYA_BUILD_SKIP); \
         rebuild it without AYA_BUILD_SKIP"
    )]
    NotBuilt,
    /// Parsing the embedded object or creating its maps failed.
    #[error("gateway: loading the kernel programs failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// The kernel lacks a hook, helper or link kind the capture needs (found by the probe
    /// before anything was attached).
    #[error(
        "gateway: this kernel ({kernel}) lacks {feature} (Linux {since}), which the capture \
         needs; Sluice needs Linux {minimum} or newer. Nothing was attached: run the node on a \
         newer kernel ({detail})"
    )]
    KernelLacks {
        /// The running kernel's release.
        kernel: String,
        /// What is missing.
        feature: String,
        /// The release that brought it.
        since: &'static str,
        /// The oldest release with everything the capture needs.
        minimum: &'static str,
        /// What the kernel answered.
        detail: String,
    },
    /// The embedded object lacks a program (a build mismatch).
    #[error("gateway: kernel program {0} is missing from the embedded object; rebuild sluice")]
    MissingProgram(&'static str),
    /// Loading (verifying) or attaching one program failed.
    #[error("gateway: kernel program {program}: {action} failed: {source}")]
    Program {
        /// The program's name.
        program: &'static str,
        /// `load`, `attach` or `pin`.
        action: &'static str,
        /// The underlying error (for a load, it includes the verifier log).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Nothing is installed under the pin directory.
    #[error(
        "gateway: no capture installed under {0} (pinned maps missing); start the daemon \
         (which installs it) first"
    )]
    NotInstalled(PathBuf),
    /// A pinned map was made by another version of sluice with a different layout; the new
    /// programs cannot use it, and replacing it would leave sandboxes unguarded meanwhile.
    #[error(
        "gateway: pinned map {path} holds {found}-byte values but this sluice needs {want} \
         (pins left by another sluice version); stop the sandboxes, run `sluice uninstall`, \
         then start sluice again"
    )]
    IncompatiblePin {
        /// The pinned map.
        path: PathBuf,
        /// Its value size.
        found: u32,
        /// The value size this build needs.
        want: u32,
    },
    /// A map operation failed.
    #[error("gateway: map {map}: {action} failed: {source}")]
    Map {
        /// The map name.
        map: &'static str,
        /// What was attempted.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A filesystem operation on pins or cgroups failed.
    #[error("gateway: {action} {path} failed: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// An [`CaptureError::Io`] for `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// A [`CaptureError::Map`] for `action` on `map`.
    pub(crate) fn map(
        map: &'static str,
        action: &'static str,
    ) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map {
            map,
            action,
            source: Box::new(source),
        }
    }

    /// A [`CaptureError::Program`] for `action` on `program`.
    pub(crate) fn program<E>(program: &'static str, action: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| Self::Program {
            program,
            action,
            source: Box::new(source),
        }
    }
}
