//! `sluice exec`: a new sandbox, the command born inside it, its exit code passed through.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::config::Config;
use crate::control::types::CreateSandbox;

/// Arguments of `sluice exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The session the sandbox runs under.
    #[arg(long)]
    session: Option<String>,
    /// Give the sandbox its own network namespace (only loopback, with Sluice's listeners).
    #[arg(long)]
    netns: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Creates the sandbox, runs the command in it, removes the sandbox, returns the command's code.
pub async fn run(config: &Config, args: ExecArgs) -> ExitCode {
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let create = CreateSandbox {
        netns: args.netns,
        session: args.session,
        cgroup: None,
    };
    let sandbox = match client.create_sandbox(&create).await {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let code = run_inside(&sandbox, &args.command).await;
    if let Err(e) = client.remove_sandbox(sandbox.id).await {
        eprintln!("sluice: sandbox {} was not removed: {e}", sandbox.id);
    }
    code
}

async fn run_inside(
    sandbox: &crate::control::types::SandboxView,
    command: &[OsString],
) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return super::fail(&format!("find the sluice binary: {e}")),
    };
    let mut enter = tokio::process::Command::new(exe);
    enter
        .arg("internal-enter")
        .arg("--cgroup")
        .arg(&sandbox.cgroup);
    if let Some(ns) = &sandbox.netns {
        enter.arg("--netns").arg(ns);
    }
    enter.arg("--").args(command);
    let mut child = match enter.spawn() {
        Ok(child) => child,
        Err(e) => return super::fail(&format!("start the sandboxed command: {e}")),
    };
    let status = match forward_signals_until_exit(&mut child).await {
        Ok(status) => status,
        Err(e) => return super::fail(&format!("wait for the sandboxed command: {e}")),
    };
    exit_code(status)
}

/// Waits for `child`, passing SIGINT and SIGTERM on to it instead of dying first (so the
/// sandbox is always removed).
async fn forward_signals_until_exit(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        let forward = tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), forward);
        }
    }
}

/// The shell convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
