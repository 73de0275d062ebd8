//! `cargo xtask image`: the node image, built from scratch without pulling anything.
//!
//! The root filesystem holds the release `sluice`, `ip` (iproute2: the daemon names network
//! namespaces with it), the shared libraries both link (found with `ldd`), the node's CA
//! roots and a minimal `/etc`; no shell. `podman import` turns it into an image in the local
//! store, with `sluice` as its entrypoint and `run` as its command. `deploy/Containerfile`
//! builds the same image from a Debian base for users with a registry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cmd, setup};

/// What `cargo xtask image` was asked for.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The image name. Default is `localhost/sluice:dev`.
    #[arg(long, default_value = "localhost/sluice:dev")]
    tag: String,
    /// Use this `sluice` binary instead of building the release one.
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// Programs of the node the image carries, besides `sluice`.
const PROGRAMS: &[&str] = &["/usr/bin/ip"];
/// Files of the node the image carries as they are.
const FILES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt"];

/// Builds the image and loads it into podman's store.
pub fn run(args: &ImageArgs) -> anyhow::Result<()> {
    setup::apt_packages(&["podman", "iproute2", "ca-certificates"])?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => {
            setup::run(setup::Needs::BUILD)?;
            cmd::build_sluice(true)?
        }
    };
    let work = tempfile::Builder::new()
        .prefix("sluice-image-")
        .tempdir()
        .context("image: a temporary directory")?;
    let root = work.path().join("rootfs");
    stage(&root, &binary)?;
    let tar = work.path().join("rootfs.tar");
    let mut pack = Command::new("tar");
    pack.arg("--create")
        .arg("--file")
        .arg(&tar)
        .args(["--owner=0", "--group=0", "--numeric-owner", "--directory"])
        .arg(&root)
        .arg(".");
    cmd::status(pack).context("image: pack the root filesystem")?;
    let version = env!("CARGO_PKG_VERSION");
    let mut import = Command::new("podman");
    import
        .arg("import")
        .args(["--change", "ENTRYPOINT [\"/usr/bin/sluice\"]"])
        .args(["--change", "CMD [\"run\"]"])
        .args(["--change", "ENV PATH=/usr/bin"])
        .args(["--change", "WORKDIR /"])
        .args(["--change", &format!("LABEL org.opencontainers.image.title=sluice org.opencontainers.image.version={version}")])
        .args(["--message", "sluice node image (cargo xtask image)"])
        .arg(&tar)
        .arg(&args.tag);
    cmd::status(import).context("image: podman import")?;
    eprintln!(
        "image: {} loaded into podman's store; run it privileged with the host's \
         /sys/fs/cgroup, /sys/fs/bpf and /var/lib/sluice (deploy/kubernetes/daemonset.yaml)",
        args.tag
    );
    Ok(())
}

/// Lays out the root filesystem under `root`.
fn stage(root: &Path, binary: &Path) -> anyhow::Result<()> {
    for dir in [
        "usr/bin",
        "etc/sluice",
        "etc/ssl/certs",
        "tmp",
        "run/netns",
        "var/lib/sluice",
        "sys/fs/cgroup",
        "sys/fs/bpf",
        "proc",
        "dev",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let sluice = root.join("usr/bin/sluice");
    copy(binary, &sluice)?;
    // Debug information is most of the release binary's size.
    let mut strip = Command::new("strip");
    strip.arg("--strip-debug").arg(&sluice);
    if let Err(e) = cmd::status(strip) {
        eprintln!("image: the binary keeps its debug information ({e:#})");
    }
    let mut libraries = BTreeSet::new();
    libraries.extend(shared_libraries(binary)?);
    for program in PROGRAMS {
        let path = Path::new(program);
        if !path.is_file() {
            bail!("image: {program} is missing on this machine (install iproute2)");
        }
        copy(path, &root.join(program.trim_start_matches('/')))?;
        libraries.extend(shared_libraries(path)?);
    }
    for library in &libraries {
        copy(
            library,
            &root.join(library.strip_prefix("/").unwrap_or(library)),
        )?;
    }
    for file in FILES {
        copy(Path::new(file), &root.join(file.trim_start_matches('/')))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/:/usr/sbin/nologin\n",
    )?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    Ok(())
}

/// The shared libraries (and the loader) `program` links, as `ldd` names them.
fn shared_libraries(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("image: run ldd")?;
    if !out.status.success() {
        bail!(
            "image: ldd {}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies `from` (following links) to `to`, making its directory, keeping its mode.
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("image: copy {} to {}", from.display(), to.display()))?;
    Ok(())
}
