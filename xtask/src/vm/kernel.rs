//! The kernels of the matrix: fetched from Debian's package registry with `apt-get download`
//! (through a private apt configuration, so the machine's own sources stay untouched),
//! unpacked and cached under `target/vm/kernels/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// One kernel of the matrix.
#[derive(Debug)]
pub struct Spec {
    /// What `--kernel` names it.
    pub name: &'static str,
    /// The Debian suite that ships it.
    pub suite: &'static str,
    /// The metapackage whose dependency is the versioned kernel image.
    pub metapackage: &'static str,
    /// For a kernel Sluice refuses (older than `sluice::capture::MINIMUM_KERNEL`): the test
    /// that proves the refusal, the only one run there (the rest needs what it lacks).
    pub refused: Option<&'static str>,
}

/// Every kernel booted in a VM, oldest first: Debian 11's 5.10 (the oldest Debian's registry
/// still serves; it lacks SO_NETNS_COOKIE, so the daemon must refuse it by name) and Debian
/// 12's 6.1 (node hosts' stock kernel). The generic flavour, not
/// `cloud`: the same kernel and BPF configuration, but the cloud flavour has no 9p, which the
/// VM mounts the machine's root with.
pub const MATRIX: &[Spec] = &[
    Spec {
        name: "5.10",
        suite: "bullseye",
        metapackage: "linux-image-amd64",
        refused: Some("the_probe_refuses_a_kernel_older_than_the_minimum"),
    },
    Spec {
        name: "6.1",
        suite: "bookworm",
        metapackage: "linux-image-amd64",
        refused: None,
    },
];

/// A kernel unpacked on disk.
#[derive(Debug)]
pub struct Kernel {
    /// `uname -r` of the kernel (`6.1.0-41-amd64`).
    pub release: String,
    /// The bzImage.
    pub image: PathBuf,
    /// The package's root: `lib/modules/<release>/` lies below it.
    pub root: PathBuf,
}

impl Kernel {
    /// The kernel's module directory.
    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// Fetches (or finds in the cache) the kernel of `spec`.
pub fn fetch(spec: &Spec) -> anyhow::Result<Kernel> {
    let dir = cmd::target_dir().join("vm/kernels").join(spec.name);
    if let Some(kernel) = cached(&dir)? {
        return Ok(kernel);
    }
    let apt = Apt::new(&dir.join("apt"), spec.suite)?;
    apt.update()?;
    let package = apt.image_package(spec.metapackage)?;
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    apt.download(&package, &debs)?;
    let deb = fs::read_dir(&debs)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package} package"))?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&root);
    cmd::status(unpack)?;
    // modules.dep is made by the package's postinst, which an unpack does not run.
    let release =
        image_release(&root).with_context(|| format!("{} holds no kernel image", deb.display()))?;
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(&root).arg(&release);
    cmd::status(depmod)?;
    cached(&dir)?.with_context(|| format!("{} holds no kernel modules", deb.display()))
}

/// The release of the kernel image under `root/boot`, if there is one.
fn image_release(root: &Path) -> Option<String> {
    fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("vmlinuz-").map(str::to_owned)
        })
}

/// The unpacked kernel in `dir`, if a previous run left one.
fn cached(dir: &Path) -> anyhow::Result<Option<Kernel>> {
    let root = dir.join("root");
    let Some(release) = image_release(&root) else {
        return Ok(None);
    };
    let kernel = Kernel {
        image: root.join("boot").join(format!("vmlinuz-{release}")),
        release,
        root,
    };
    Ok(kernel
        .modules()
        .join("modules.dep")
        .exists()
        .then_some(kernel))
}

/// apt-get with its own sources, lists and cache for one Debian suite.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path, suite: &str) -> anyhow::Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::write(
            dir.join("sources.list"),
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {suite} main\n\
                 deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian-security {suite}-security main\n"
            ),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut apt = Command::new(program);
        let opt = |key: &str, value: &Path| format!("{key}={}", value.display());
        apt.args(["-q", "-o", "APT::Sandbox::User=root"])
            .arg("-o")
            .arg(opt("Dir::Etc::SourceList", &self.dir.join("sources.list")))
            .args(["-o", "Dir::Etc::SourceParts=/nonexistent"])
            .arg("-o")
            .arg(opt("Dir::State::Lists", &self.dir.join("lists")))
            .arg("-o")
            .arg(opt("Dir::Cache", &self.dir.join("cache")));
        apt
    }

    fn update(&self) -> anyhow::Result<()> {
        let mut update = self.command("apt-get");
        update.arg("update");
        cmd::status(update).context("apt-get update (the kernel's suite)")
    }

    /// The versioned image package the metapackage depends on (`linux-image-6.1.0-41-amd64`).
    fn image_package(&self, metapackage: &str) -> anyhow::Result<String> {
        let mut depends = self.command("apt-cache");
        depends.args(["depends", metapackage]);
        let out = depends.output().context("start apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            if let Some(dep) = line.trim().strip_prefix("Depends: ") {
                let dep = dep.trim();
                if dep.starts_with("linux-image-") && !dep.ends_with("-unsigned") {
                    return Ok(dep.to_owned());
                }
            }
        }
        bail!("{metapackage} names no kernel image package:\n{text}")
    }

    fn download(&self, package: &str, into: &Path) -> anyhow::Result<()> {
        let mut download = self.command("apt-get");
        download.args(["download", package]).current_dir(into);
        cmd::status(download).with_context(|| format!("apt-get download {package}"))
    }
}
