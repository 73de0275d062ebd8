//! `sluice internal-enter`: the launcher of a `sluice exec` sandbox (see
//! [`crate::sandbox::launch`] for what it does, in which order).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::sandbox::environment;
use crate::sandbox::identity::Identity;
use crate::sandbox::launch::{self, EXIT_SETUP_FAILED, Launch};
use crate::sandbox::mounts::{MountPlan, TrustOverlay};

/// Arguments of the hidden `internal-enter` command (written by `sluice exec`).
#[derive(Debug, clap::Args)]
pub struct EnterArgs {
    /// The sandbox cgroup to join.
    #[arg(long)]
    cgroup: PathBuf,
    /// The network namespace to join.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// The user namespace mapping, `inside:outside:gid_inside:gid_outside:count`.
    #[arg(long)]
    identity: String,
    /// The workload's home when it is a node user (else a private one is made).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Directories to hide.
    #[arg(long = "hide-dir")]
    hide_dirs: Vec<PathBuf>,
    /// Files to hide.
    #[arg(long = "hide-file")]
    hide_files: Vec<PathBuf>,
    /// Files inside a hidden directory that stay visible, read-only.
    #[arg(long)]
    keep: Vec<PathBuf>,
    /// The merged bundle laid over the distributions' bundle files (with --trust-certs).
    #[arg(long, requires = "trust_certs")]
    trust_bundle: Option<PathBuf>,
    /// The directory laid over `/etc/ssl/certs` (with --trust-bundle).
    #[arg(long, requires = "trust_bundle")]
    trust_certs: Option<PathBuf>,
    /// Extra environment for the workload: `NAME` (from this environment) or `NAME=VALUE`.
    #[arg(long = "env")]
    env: Vec<String>,
    /// The command.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Sets the sandbox up and runs the command; returns its exit code.
pub fn run(args: &EnterArgs) -> ExitCode {
    let Some(mut identity) = Identity::from_arg(&args.identity) else {
        eprintln!(
            "sluice: internal-enter: --identity {:?} is not a mapping that leaves the node's root out",
            args.identity
        );
        return ExitCode::from(EXIT_SETUP_FAILED);
    };
    identity.home.clone_from(&args.home);
    let env = match args
        .env
        .iter()
        .map(|e| environment::parse_entry(e))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(env) => env,
        Err(e) => {
            eprintln!("sluice: internal-enter: {e}");
            return ExitCode::from(EXIT_SETUP_FAILED);
        }
    };
    let launch = Launch {
        cgroup: args.cgroup.clone(),
        netns: args.netns.clone(),
        identity,
        mounts: MountPlan {
            hide_dirs: args.hide_dirs.clone(),
            hide_files: args.hide_files.clone(),
            keep: args.keep.clone(),
            trust: args
                .trust_bundle
                .clone()
                .zip(args.trust_certs.clone())
                .map(|(bundle, certs)| TrustOverlay { bundle, certs }),
        },
        env,
        command: args.command.clone(),
    };
    launch::run(&launch)
}
