//! Installs what building and testing Sluice needs, when it is missing.
//!
//! Each check is cheap and each install runs only when its check fails, so on a machine
//! that has everything this prints one line per item and changes nothing.

use std::process::Command;

use anyhow::{Context, bail};

use crate::cmd;

/// Which groups of prerequisites a task needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    build: bool,
    test: bool,
}

impl Needs {
    /// What building the daemon (with its eBPF programs) needs.
    pub const BUILD: Needs = Needs {
        build: true,
        test: false,
    };
    /// Everything: the build plus the servers and clients the tests start.
    pub const ALL: Needs = Needs {
        build: true,
        test: true,
    };
}

/// Debian packages the eBPF build needs (bpf-linker links against LLVM 22, the nightly's LLVM).
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Debian packages the tests run: real servers and real clients, no mocks.
const TEST_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "curl",
    "python3",
    "redis-server",
    "nghttp2-client",
    "openssl",
    "dnsutils",
    // `/usr/sbin/squid` with `https_port`, for upstream-proxy chaining tests.
    "squid-openssl",
    // Clients of the trust matrix (tests/tests/trust.rs); node and npm come with the image.
    "wget",
    "git",
    "python3-requests",
    "python3-httpx",
    "python3-pip",
    "openjdk-17-jdk-headless",
    "golang-go",
    "ruby",
    // Containers captured from birth (tests/tests/containers.rs): podman in front of runc
    // (crun refuses this machine's hybrid cgroup layout).
    "podman",
    "runc",
    // The dashboard's browser test (tests/tests/dashboard.rs): Playwright drives this build.
    "chromium",
    // The kernel matrix (`cargo xtask vm-test`): other kernels boot under qemu (TCG) with a
    // busybox initramfs that mounts this machine's root read-only over 9p.
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    // depmod (a kernel package's modules.dep) and, inside the VM, modprobe.
    "kmod",
    // The feature probe's test plays an old kernel with a seccomp filter on bpf(2).
    "python3-seccomp",
];

/// The uv release the trust matrix runs (from PyPI: uv has no Debian package).
const UV_VERSION: &str = "0.13.9";
/// Where the trust matrix finds uv.
const UV_PATH: &str = "/usr/local/bin/uv";

/// The kubernetes-validate release (with the API schemas offline) the manifest test runs.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// Where it is installed (`PYTHONPATH` for `/usr/bin/python3 -m kubernetes_validate`).
const KUBERNETES_VALIDATE_DIR: &str = "/usr/local/lib/sluice-test/kubernetes-validate";

/// The Playwright release the dashboard test drives Chromium with (from PyPI, for
/// `/usr/bin/python3`). Its own browser downloads are never used: the driver launches the
/// Debian `chromium`, so `playwright install` is not run.
const PLAYWRIGHT_VERSION: &str = "1.65.3";

/// The bpf-linker release known to work with LLVM 22 here.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Checks every prerequisite in `needs` and installs the missing ones.
pub fn run(needs: Needs) -> anyhow::Result<()> {
    let mut packages: Vec<&str> = Vec::new();
    if needs.build {
        packages.extend(BUILD_PACKAGES);
    }
    if needs.test {
        packages.extend(TEST_PACKAGES);
    }
    apt_packages(&packages)?;
    if needs.test {
        uv()?;
        kubernetes_validate()?;
        playwright()?;
    }
    if needs.build {
        nightly_rust_src()?;
        bpf_linker()?;
    }
    Ok(())
}

/// Mounts bpffs at `/sys/fs/bpf` when it is missing (a fresh machine has none, see
/// KERNEL.md): the daemon pins its programs there. The daemon mounts it itself only when it
/// can tell it shares the node's mount namespace, which it cannot on a machine whose pid 1
/// hides its namespaces; here, run by the operator on the node, there is no doubt.
pub fn node_bpffs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some("/sys/fs/bpf") && kind == Some("bpf")
    });
    if mounted {
        println!("setup: bpffs at /sys/fs/bpf: ok");
        return Ok(());
    }
    println!("setup: mounting bpffs at /sys/fs/bpf");
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .context("run mount")?;
    if !status.success() {
        bail!("mount -t bpf bpf /sys/fs/bpf failed ({status}); mount it by hand and retry");
    }
    Ok(())
}

/// Installs the Debian packages of `wanted` that are missing; `true` if it installed any.
pub fn apt_packages(wanted: &[&str]) -> anyhow::Result<bool> {
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: debian packages present ({})", wanted.join(", "));
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "setup: missing debian packages: {list}; install them with `sudo apt-get install -y {list}` \
             or run this command as root",
            list = missing.join(" ")
        );
    }
    eprintln!("setup: installing debian packages: {}", missing.join(", "));
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    cmd::status(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd::status(install).context("setup: apt-get install")?;
    Ok(true)
}

fn deb_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("setup: run rustup (is rustup installed?)")?;
    if !installed.status.success() {
        bail!(
            "setup: the nightly toolchain is missing; the eBPF programs need it: `rustup toolchain install nightly`"
        );
    }
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        eprintln!("setup: nightly rust-src present");
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain (the eBPF build uses -Z build-std)");
    let mut add = Command::new("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    cmd::status(add)
}

/// uv, from its PyPI wheel (pip downloads it; the wheel is a zip holding the binary).
fn uv() -> anyhow::Result<()> {
    if cmd::succeeds(Command::new(UV_PATH).arg("--version")) {
        eprintln!("setup: uv present ({UV_PATH})");
        return Ok(());
    }
    if !is_root() {
        bail!("setup: uv is missing at {UV_PATH}; run this command as root to install it");
    }
    eprintln!("setup: installing uv {UV_VERSION} from PyPI to {UV_PATH}");
    let dir = tempfile::tempdir().context("setup: a temporary directory for uv")?;
    let mut download = Command::new("/usr/bin/python3");
    download
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
        ])
        .arg("--dest")
        .arg(dir.path())
        .arg(format!("uv=={UV_VERSION}"));
    cmd::status(download).context("setup: download uv")?;
    let extract = format!(
        "import glob, os, sys, zipfile\n\
         wheel, = glob.glob(os.path.join(sys.argv[1], 'uv-*.whl'))\n\
         data = zipfile.ZipFile(wheel).read('uv-{UV_VERSION}.data/scripts/uv')\n\
         tmp = sys.argv[2] + '.tmp'\n\
         open(tmp, 'wb').write(data)\n\
         os.chmod(tmp, 0o755)\n\
         os.replace(tmp, sys.argv[2])\n"
    );
    let mut unpack = Command::new("/usr/bin/python3");
    unpack.args(["-c", &extract]).arg(dir.path()).arg(UV_PATH);
    cmd::status(unpack).context("setup: unpack uv")
}

/// kubernetes-validate and its dependencies, from PyPI, in a directory of their own.
fn kubernetes_validate() -> anyhow::Result<()> {
    let dir = std::path::Path::new(KUBERNETES_VALIDATE_DIR);
    if dir.join("kubernetes_validate").is_dir() {
        eprintln!("setup: kubernetes-validate present ({KUBERNETES_VALIDATE_DIR})");
        return Ok(());
    }
    if !is_root() {
        bail!("setup: kubernetes-validate is missing; run this command as root to install it");
    }
    eprintln!("setup: installing {KUBERNETES_VALIDATE} from PyPI to {KUBERNETES_VALIDATE_DIR}");
    let mut install = pip_install();
    install.arg("--target").arg(dir).arg(KUBERNETES_VALIDATE);
    cmd::status(install).context("setup: install kubernetes-validate")
}

/// `pip install` of the system Python, quiet; the caller adds where and what.
fn pip_install() -> Command {
    let mut pip = Command::new("/usr/bin/python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-warn-script-location",
    ]);
    pip
}

/// Playwright for the system Python, pinned, from PyPI.
fn playwright() -> anyhow::Result<()> {
    let mut probe = Command::new("/usr/bin/python3");
    probe.args([
        "-c",
        "import importlib.metadata as m, sys; \
         sys.exit(m.version('playwright') != sys.argv[1])",
        PLAYWRIGHT_VERSION,
    ]);
    if cmd::succeeds(&mut probe) {
        eprintln!("setup: playwright {PLAYWRIGHT_VERSION} present (/usr/bin/python3)");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup: playwright {PLAYWRIGHT_VERSION} is missing for /usr/bin/python3; \
             run this command as root to install it"
        );
    }
    eprintln!("setup: installing playwright {PLAYWRIGHT_VERSION} from PyPI for /usr/bin/python3");
    let mut install = pip_install();
    install
        .args(["--break-system-packages", "--root-user-action=ignore"])
        .arg(format!("playwright=={PLAYWRIGHT_VERSION}"));
    cmd::status(install).context("setup: install playwright")
}

fn bpf_linker() -> anyhow::Result<()> {
    if cmd::succeeds(Command::new("bpf-linker").arg("--version")) {
        eprintln!("setup: bpf-linker present");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    let mut install = Command::new(cmd::cargo());
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22");
    cmd::status(install).context("setup: cargo install bpf-linker")
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}
