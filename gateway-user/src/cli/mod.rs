//! The `sluice` command line: the daemon and the clients of its control API.

mod audit;
mod ca;
mod enter;
mod exec;
mod proxy;
mod reload;
mod run;
pub mod runtime;
mod sandboxes;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Exit code when Sluice itself (not the command it runs) fails, as container runtimes do.
pub const EXIT_SLUICE_FAILED: u8 = 125;

/// Sluice: an egress gateway for sandboxed AI agents.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// Configuration file. Default is /etc/sluice/sluice.toml if it exists, else built-in defaults.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node daemon.
    Run,
    /// Run a command in a new sandbox: its sockets are captured from birth.
    Exec(exec::ExecArgs),
    /// Enroll a running workload's cgroup as a sandbox: give its cgroup, its container id
    /// or its pod UID. Refused when it already holds network sockets (they would escape
    /// capture) unless --force.
    #[command(group(clap::ArgGroup::new("workload").required(true).args(["cgroup", "container_id", "pod_uid"])))]
    Enroll {
        /// The cgroup v2 directory.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// A container id (docker, podman, containerd, CRI-O; at least 12 hex digits): its
        /// cgroup is found under the cgroup2 mount (systemd or cgroupfs driver).
        #[arg(long, value_name = "ID")]
        container_id: Option<String>,
        /// A Kubernetes pod UID (`metadata.uid`): the pod's cgroup, every container in it.
        #[arg(long, value_name = "UID")]
        pod_uid: Option<String>,
        /// Enroll even if the workload already holds network sockets (they stay
        /// uncaptured); recorded in the audit log.
        #[arg(long)]
        force: bool,
        /// The session the sandbox runs under.
        #[arg(long)]
        session: Option<String>,
        /// The sandbox's upstream proxy, overriding its session's: a proxy id of the node
        /// (`sluice proxy list`) or `none` for direct.
        #[arg(long, value_name = "ID|none")]
        upstream_proxy: Option<String>,
    },
    /// Remove a cgroup from capture (its processes keep running, uncaptured sockets stay refused).
    Unenroll {
        /// The cgroup v2 directory.
        #[arg(long)]
        cgroup: PathBuf,
    },
    /// List enrolled sandboxes.
    Sandboxes {
        /// Print them as JSON (the API's view).
        #[arg(long)]
        json: bool,
    },
    /// The OCI runtime wrapper that captures containers from birth.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
    /// Sessions: what a sandbox runs under (credentials, policy).
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// The node's upstream (corporate) proxies: list them, test one.
    #[command(subcommand)]
    Proxy(proxy::ProxyCommand),
    /// Print the variables every runtime in a sandbox reads to trust Sluice's CA, and the
    /// session's (`eval "$(sluice env --session ID)"`).
    Env {
        /// The session (its id and credential placeholders are added); without it, what a
        /// node-level sandbox needs.
        #[arg(long)]
        session: Option<String>,
        /// Also the proxy variables (`HTTPS_PROXY` …, token from `$SLUICE_SESSION_TOKEN`,
        /// `NODE_USE_ENV_PROXY=1`); needs --session.
        #[arg(long)]
        proxy: bool,
        /// How to print them: `sh` (for `eval`), `json`, `dotenv`, `docker` (for `docker run
        /// --env-file`) or `k8s` (an `env:` list).
        #[arg(long, value_enum, default_value = "sh")]
        format: crate::control::env::EnvFormat,
    },
    /// Read the audit log.
    Audit(audit::AuditArgs),
    /// Policy tools.
    #[command(subcommand)]
    Policy(audit::PolicyCommand),
    /// Print the daemon's health as JSON.
    Status,
    /// Make the running daemon re-read its configuration file (as SIGHUP does) and print what
    /// changed. Fields only a restart can change refuse the whole reload.
    Reload,
    /// The CA that signs intercepted connections.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Detach and unpin the kernel programs (the daemon must be stopped).
    Uninstall {
        /// Also when sandboxes are still enrolled (their sockets stop being captured).
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration file and print it with every default filled in.
    CheckConfig,
    /// Internal: join a sandbox cgroup (and namespace) and run a command. Used by `exec`.
    #[command(hide = true)]
    InternalEnter(enter::EnterArgs),
}

impl Cli {
    /// Runs the command and returns the process exit code.
    pub fn run(self) -> ExitCode {
        if let Command::InternalEnter(args) = &self.command {
            return enter::run(args);
        }
        let config = match Config::load(self.config.as_deref()) {
            Ok(config) => config,
            // The daemon would refuse this file too; say so rather than leave it in doubt.
            Err(e) if matches!(self.command, Command::Reload) => {
                let e = e.to_string();
                return fail(&format!(
                    "{}\n(not reloaded: the daemon keeps its running configuration)",
                    e.trim_end()
                ));
            }
            Err(e) => return fail(&e),
        };
        match &self.command {
            Command::CheckConfig => {
                print!("{}", config.dump());
                return ExitCode::SUCCESS;
            }
            Command::Ca(ca) => return ca::run(&config, ca),
            Command::Runtime(RuntimeCommand::Install { dir, delegate }) => {
                return runtime::install(&config, dir, delegate);
            }
            Command::Uninstall { force } => {
                return match crate::daemon::uninstall(&config, *force) {
                    Ok(()) => {
                        println!(
                            "capture pinned at {} removed",
                            config.capture.pin_dir.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&format!("{e:#}")),
                };
            }
            Command::Run => crate::daemon::memory::reexec_with_allocator_tunables(),
            _ => {}
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail(&format!("start the async runtime: {e}")),
        };
        runtime.block_on(async move {
            match self.command {
                Command::Run => match run::run(config, self.config).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&format!("{e:#}")),
                },
                Command::Exec(args) => exec::run(&config, self.config.as_deref(), args).await,
                Command::Enroll {
                    cgroup,
                    container_id,
                    pod_uid,
                    force,
                    session,
                    upstream_proxy,
                } => {
                    let target = match (cgroup, container_id, pod_uid) {
                        (Some(path), _, _) => sandboxes::Target::Cgroup(path),
                        (_, Some(id), _) => sandboxes::Target::Workload(
                            crate::sandbox::locate::Workload::Container(id),
                        ),
                        (_, _, Some(uid)) => {
                            sandboxes::Target::Workload(crate::sandbox::locate::Workload::Pod(uid))
                        }
                        (None, None, None) => {
                            return fail(&"give --cgroup, --container-id or --pod-uid");
                        }
                    };
                    sandboxes::enroll(&config, target, force, session, upstream_proxy).await
                }
                Command::Unenroll { cgroup } => sandboxes::unenroll(&config, &cgroup).await,
                Command::Sandboxes { json } => sandboxes::list(&config, json).await,
                Command::Session(command) => session::run(&config, command).await,
                Command::Proxy(command) => proxy::run(&config, &command).await,
                Command::Env {
                    session,
                    proxy,
                    format,
                } => audit::env(&config, session.as_deref(), proxy, format).await,
                Command::Audit(args) => audit::run(&config, args).await,
                Command::Policy(command) => audit::policy(&config, command).await,
                Command::Status => sandboxes::status(&config).await,
                Command::Reload => reload::run(&config).await,
                Command::CheckConfig
                | Command::Ca(_)
                | Command::Runtime(_)
                | Command::Uninstall { .. }
                | Command::InternalEnter(_) => ExitCode::SUCCESS,
            }
        })
    }
}

/// `sluice runtime …`.
#[derive(Debug, clap::Subcommand)]
pub enum RuntimeCommand {
    /// Put the wrapper on this node (or, from the DaemonSet's init container, on the host):
    /// `DIR/sluice-runtime-RUNTIME` and its configuration beside it. Point podman
    /// (`--runtime`) or containerd (a runtime's `BinaryName`) at it.
    Install {
        /// Where to install (e.g. /opt/sluice/bin, or its host mount).
        #[arg(long)]
        dir: PathBuf,
        /// The real runtime the wrapper runs: its program name.
        #[arg(long, default_value = "runc")]
        delegate: String,
    },
}

/// Prints `sluice: <message>` and returns the failure exit code.
pub fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sluice: {message}");
    ExitCode::from(EXIT_SLUICE_FAILED)
}

/// Prints `value` as pretty JSON; the success exit code.
fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("render JSON: {e}")),
    }
}

/// The admin token could not be read (the daemon writes it on first start).
#[derive(Debug, thiserror::Error)]
#[error("{0}; the daemon creates it on first start: is `sluice run` running, and are you root?")]
pub struct NoToken(#[from] crate::control::auth::AuthError);

/// A control API client for the daemon named by `config`.
fn client(config: &Config) -> Result<crate::control::client::ControlClient, NoToken> {
    let path = config.admin_token_path();
    let token = crate::control::auth::AdminToken::read(&path)?;
    Ok(crate::control::client::ControlClient::new(
        config.listen.control,
        token,
    ))
}
