//! `sluice internal-enter`: the first process of a sandbox.
//!
//! It moves itself into the sandbox cgroup (and network namespace) before it has opened a
//! single socket, confines itself (see [`crate::sandbox::confine`]), then replaces itself
//! with the command, so every socket the workload ever
//! creates is born captured.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::sandbox::{cgroup, confine, netns};

/// Arguments of the hidden `internal-enter` command.
#[derive(Debug, clap::Args)]
pub struct EnterArgs {
    /// The sandbox cgroup to join.
    #[arg(long)]
    cgroup: PathBuf,
    /// The network namespace to join.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// The command.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Joins, then execs; returns only on failure (127: not found, 126: cannot run, 125: join failed).
pub fn run(args: &EnterArgs) -> ExitCode {
    if let Err(e) = cgroup::enter(&args.cgroup) {
        return super::fail(&e);
    }
    if let Some(Err(e)) = args.netns.as_deref().map(netns::enter) {
        return super::fail(&e);
    }
    if let Err(e) = confine::confine() {
        return super::fail(&e);
    }
    let Some((program, rest)) = args.command.split_first() else {
        return super::fail(&"no command given");
    };
    let err = std::process::Command::new(program).args(rest).exec();
    let name = program.to_string_lossy();
    if err.kind() == std::io::ErrorKind::NotFound {
        eprintln!("sluice: command not found: {name}");
        ExitCode::from(127)
    } else {
        eprintln!("sluice: cannot run {name}: {err}");
        ExitCode::from(126)
    }
}
