//! Installs the benchmark's servers, peers and load clients when they are missing.
//!
//! Like `setup`, each check is cheap and each install runs only when its check fails: on a
//! machine that has everything this prints one line per group and changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::cmd;

/// Debian packages: the upstream (nginx), two peers (Squid with ssl-bump, HAProxy), load
/// clients, and python3-venv for mitmproxy.
const PACKAGES: &[&str] = &[
    "nginx-light",
    "squid-openssl",
    "haproxy",
    "wrk",
    "nghttp2-client",
    "iperf3",
    "hey",
    "curl",
    "python3-venv",
    "openssl",
];

/// mitmproxy 11.0.2 (12.x needs Python 3.12), installed from PyPI into [`venv`].
pub const MITMPROXY: &str = "mitmproxy==11.0.2";

/// Where the mitmproxy virtualenv lives (outside the work tree, kept between runs).
pub fn venv() -> PathBuf {
    PathBuf::from("/var/cache/sluice-bench/venv")
}

/// `mitmdump` inside [`venv`].
pub fn mitmdump() -> PathBuf {
    venv().join("bin/mitmdump")
}

/// Installs what is missing: Debian packages, then mitmproxy into its venv.
pub fn run() -> anyhow::Result<()> {
    apt(PACKAGES)?;
    mitmproxy()
}

/// Installs the Debian packages the bench needs (through `xtask setup`'s installer).
fn apt(wanted: &[&str]) -> anyhow::Result<()> {
    if crate::setup::apt_packages(wanted)? {
        // The packages start their services (where policy-rc.d allows it); the bench starts
        // its own instances with its own configurations and needs none of them.
        for service in ["nginx", "squid", "haproxy"] {
            let _ = Command::new("systemctl").args(["stop", service]).output();
        }
    }
    Ok(())
}

fn mitmproxy() -> anyhow::Result<()> {
    let venv = venv();
    if version_ok(&mitmdump()) {
        eprintln!("bench: {MITMPROXY} present in {}", venv.display());
        return Ok(());
    }
    eprintln!(
        "bench: installing {MITMPROXY} from PyPI into {}",
        venv.display()
    );
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent).context("bench: create /var/cache/sluice-bench")?;
    }
    // Debian's python3 (3.11), not a pyenv shim: mitmproxy 11 supports 3.10–3.12.
    let mut make = Command::new("/usr/bin/python3");
    make.args(["-m", "venv"]).arg(&venv);
    cmd::status(make).context("bench: create the mitmproxy venv (is python3-venv installed?)")?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check", MITMPROXY]);
    cmd::status(pip).context("bench: pip install mitmproxy")
}

fn version_ok(mitmdump: &Path) -> bool {
    Command::new(mitmdump)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Mitmproxy: 11.0.2"))
}
