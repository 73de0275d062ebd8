//! Small helpers for running commands with clear errors.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Runs `cmd`, echoing it first, and fails with its exit status when it does not succeed.
pub fn status(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", show(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("xtask: start `{}`", show(&cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(&cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and reports whether it succeeded (a missing program counts as failure).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Replaces the current process with `cmd` (so signals and the exit code pass straight through).
pub fn exec(mut cmd: Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    eprintln!("xtask: $ {}", show(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("exec `{}`", show(&cmd)))
}

/// Builds the `sluice` binary and returns its path.
pub fn build_sluice(release: bool) -> anyhow::Result<PathBuf> {
    let mut cargo = Command::new(cargo());
    cargo.args(["build", "--package", "gateway-user", "--bin", "sluice"]);
    if release {
        cargo.arg("--release");
    }
    status(cargo)?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("sluice"))
}

/// The cargo that invoked xtask.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn show(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}
