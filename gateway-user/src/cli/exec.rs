//! `sluice exec`: a new sandbox, the command born inside it, its exit code passed through.
//!
//! The sandbox is not root on the node: see [`crate::sandbox::launch`] for its walls and
//! [`crate::sandbox::identity`] for who the workload is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::{CreateSandbox, SandboxView};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::sandbox::environment;
use crate::sandbox::identity::Identity;
use crate::sandbox::mounts::{MountPlan, TrustOverlay};
use crate::tls::trust::{
    CA_BUNDLE_FILE, CERTS_DIR, JAVA_STORE, OVERLAY_VARS, TrustError, WGETRC_FILE,
};

/// Arguments of `sluice exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The session the sandbox runs under.
    #[arg(long)]
    session: Option<String>,
    /// The sandbox's upstream proxy, overriding its session's: a proxy id of the node
    /// (`sluice proxy list`) or `none` for direct.
    #[arg(long, value_name = "ID|none")]
    upstream_proxy: Option<String>,
    /// Give the sandbox its own network namespace, holding only loopback and Sluice's
    /// listeners. This is the default; the flag is kept for scripts that say so.
    #[arg(long, conflicts_with = "share_netns")]
    netns: bool,
    /// Run the sandbox in the node's network namespace instead of its own. Weaker: the kernel
    /// programs still steer and filter every socket, but the sandbox shares the node's
    /// loopback and abstract Unix sockets are the seccomp filter's to refuse.
    #[arg(long)]
    share_netns: bool,
    /// Run the command as this node user (`NAME|UID[:GROUP|GID]`, never root) instead of as
    /// root inside the sandbox's own user namespace. Default: the user who ran `sudo`, if
    /// any; else root inside, mapped to an unprivileged id range of the sandbox's own.
    #[arg(long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Leave the sandbox's system trust store as the node's. By default the node's roots
    /// plus Sluice's CA are laid over the distributions' bundle files and `/etc/ssl/certs`
    /// (in the sandbox only), so clients trust interception with no variables.
    #[arg(long)]
    no_trust_overlay: bool,
    /// Pass an environment variable to the command: `NAME` (its value here) or `NAME=VALUE`.
    /// Repeatable. Without it, the command gets only `PATH`, locale and terminal variables,
    /// the CA-bundle variables `sluice env` prints, `SLUICE_SESSION`, and variables holding a
    /// credential placeholder: never the rest of this shell's environment (it may hold real
    /// secrets).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Creates the sandbox, runs the command in it, removes the sandbox, returns the command's code.
pub async fn run(config: &Config, config_file: Option<&Path>, args: ExecArgs) -> ExitCode {
    let sudo = sudo_ids();
    let sudo_ref = sudo.as_ref().map(|(u, g)| (u.as_str(), g.as_str()));
    // Refuse a bad --user before anything is created.
    if let Err(e) = Identity::for_exec(args.user.as_deref(), sudo_ref, 0) {
        return super::fail(&e);
    }
    if let Some(e) = args
        .env
        .iter()
        .find_map(|e| environment::parse_entry(e).err())
    {
        return super::fail(&e);
    }
    let overlay = match args.no_trust_overlay {
        true => Vec::new(),
        false => match overlay_vars(&config.state_dir, &args.env) {
            Ok(vars) => vars,
            Err(e) => return super::fail(&e),
        },
    };
    let client = match super::client(config) {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let create = CreateSandbox {
        netns: !args.share_netns,
        session: args.session,
        cgroup: None,
        upstream_proxy: args.upstream_proxy,
        ..CreateSandbox::default()
    };
    let sandbox = match client.create_sandbox(&create).await {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let code = match Identity::for_exec(args.user.as_deref(), sudo_ref, sandbox.id) {
        Ok(identity) => {
            let mut hidden = hidden_paths(config, config_file);
            let mut env = args.env.clone();
            if !args.no_trust_overlay {
                let state = &config.state_dir;
                hidden.trust = Some(TrustOverlay {
                    bundle: state.join(CA_BUNDLE_FILE),
                    certs: state.join(CERTS_DIR),
                });
                env.extend(overlay.iter().cloned());
            }
            run_inside(&sandbox, &identity, &hidden, &env, &args.command).await
        }
        Err(e) => super::fail(&e),
    };
    if let Err(e) = client.remove_sandbox(sandbox.id).await {
        eprintln!("sluice: sandbox {} was not removed: {e}", sandbox.id);
    }
    code
}

/// `NAME=value` for each of [`OVERLAY_VARS`] that neither `--env` (`given`) nor the caller's
/// environment (for the path-valued ones the sandbox inherits) sets: the runtimes that
/// ignore the overlaid trust store.
fn overlay_vars(state: &Path, given: &[String]) -> Result<Vec<String>, TrustError> {
    let files = crate::tls::trust::files_in(state)?;
    Ok(OVERLAY_VARS
        .iter()
        .filter(|(name, points)| {
            // The sandbox gets path-valued trust variables of the caller's environment.
            let inherited = points.is_path() && std::env::var_os(name).is_some();
            let passed = given.iter().any(|e| e.split('=').next() == Some(*name));
            !inherited && !passed
        })
        .map(|(name, points)| format!("{name}={}", files.value(*points)))
        .collect())
}

/// What a sandbox must not see of the node's Sluice: the state directory (but the public CA
/// files `sluice env` points at), the configuration file, and secret paths configured
/// outside the state directory.
pub fn hidden_paths(config: &Config, config_file: Option<&Path>) -> MountPlan {
    let state = &config.state_dir;
    let mut plan = MountPlan {
        hide_dirs: vec![state.clone()],
        hide_files: Vec::new(),
        keep: vec![
            crate::tls::ca::cert_path(state),
            state.join(CA_BUNDLE_FILE),
            state.join(WGETRC_FILE),
            state.join(CERTS_DIR).join(JAVA_STORE),
        ],
        trust: None,
    };
    // The hashed directory `SSL_CERT_DIR` names.
    let certs = state.join(CERTS_DIR);
    if let Ok(entries) = std::fs::read_dir(&certs) {
        plan.keep
            .extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    let config_file = config_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    plan.hide_files.push(config_file);
    let outside = |p: &PathBuf| !p.starts_with(state);
    plan.hide_files.extend(
        [&config.store.master_key_file, &config.audit.path]
            .into_iter()
            .flatten()
            .filter(|p| outside(p))
            .cloned(),
    );
    plan.hide_dirs.extend(
        config
            .audit
            .spool_dir
            .iter()
            .filter(|p| outside(p))
            .cloned(),
    );
    plan
}

/// `SUDO_UID` and `SUDO_GID` when `sluice exec` runs through sudo.
fn sudo_ids() -> Option<(String, String)> {
    Some((
        std::env::var("SUDO_UID").ok()?,
        std::env::var("SUDO_GID").ok()?,
    ))
}

async fn run_inside(
    sandbox: &SandboxView,
    identity: &Identity,
    hidden: &MountPlan,
    env: &[String],
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
        .arg(&sandbox.cgroup)
        .arg("--identity")
        .arg(identity.to_arg());
    if let Some(ns) = &sandbox.netns {
        enter.arg("--netns").arg(ns);
    }
    if let Some(home) = &identity.home {
        enter.arg("--home").arg(home);
    }
    for dir in &hidden.hide_dirs {
        enter.arg("--hide-dir").arg(dir);
    }
    for file in &hidden.hide_files {
        enter.arg("--hide-file").arg(file);
    }
    if let Some(trust) = &hidden.trust {
        enter.arg("--trust-bundle").arg(&trust.bundle);
        enter.arg("--trust-certs").arg(&trust.certs);
    }
    for file in &hidden.keep {
        enter.arg("--keep").arg(file);
    }
    for entry in env {
        enter.arg("--env").arg(entry);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_is_hidden_but_the_public_ca_files_stay() {
        let mut config = Config::default();
        config.store.master_key_file = Some(PathBuf::from("/etc/keys/master.key"));
        config.audit.path = Some(PathBuf::from("/var/lib/sluice/audit.jsonl"));
        let plan = hidden_paths(&config, Some(Path::new("/etc/sluice/custom.toml")));
        assert_eq!(plan.hide_dirs, vec![PathBuf::from("/var/lib/sluice")]);
        assert_eq!(
            plan.hide_files,
            vec![
                PathBuf::from("/etc/sluice/custom.toml"),
                PathBuf::from("/etc/keys/master.key")
            ]
        );
        assert!(plan.keep.iter().all(|k| k.starts_with("/var/lib/sluice")));
        assert!(plan.keep.iter().any(|k| k.ends_with("ca.pem")));
        assert!(plan.keep.iter().any(|k| k.ends_with("ca-bundle.pem")));
    }
}
