//! The OCI runtime wrapper (`sluice-runtime-runc`, `sluice-runtime-crun`: the `sluice`
//! binary under another name) and `sluice runtime install`, which puts it on a node.
//!
//! The wrapper stands in front of the real runtime. For a container whose bundle carries a
//! `sluice.dev/*` annotation ([`crate::oci::annotations`]) it splits `create` in two: the
//! real runtime creates the container (its first process exists, in its cgroup and network
//! namespace, but has not run the workload), then the wrapper enrolls it with the daemon —
//! cgroup, session, listeners in its namespace — and only if that worked does `create`
//! succeed; otherwise the container is deleted and the runtime reports Sluice's message, so
//! it never starts uncaptured. `delete` unenrolls it after the real runtime deleted it.
//! Every other command, and every container without the annotation, goes to the real
//! runtime untouched (`exec`, same process).
//!
//! podman and CRI runtimes do not pass their environment to the OCI runtime, so the wrapper
//! reads its configuration from `SLUICE_CONFIG`, else `<its own path>.toml` (what `sluice
//! runtime install` writes), else `/etc/sluice/sluice.toml`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::api::CreateSandbox;
use crate::config::{Config, ConfigError};
use crate::control::client::ClientError;
use crate::oci::annotations::{self, Capture};
use crate::oci::args::RuntimeArgs;

/// The wrapper's name; `-runc`/`-crun` (any suffix) names the real runtime.
pub const WRAPPER_NAME: &str = "sluice-runtime";
/// Where, under the state directory, the wrapper remembers which containers it enrolled
/// (so `delete` asks the daemon only about those).
const ENROLLED_DIR: &str = "containers";
/// Where the real runtime is looked for.
const SEARCH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Whether `argv0` names the wrapper.
pub fn is_wrapper(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(WRAPPER_NAME))
}

/// The wrapper's `main`.
pub fn wrapper_main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<OsString> = argv.collect();
    let parsed = RuntimeArgs::parse(&args);
    let delegate = match delegate_for(&argv0) {
        Ok(path) => path,
        Err(e) => return refuse(&parsed, None, &e),
    };
    match parsed.command.as_deref() {
        Some("create") => create(&argv0, &delegate, &args, &parsed),
        // Both create and start a container in one step: no moment to enroll it.
        Some(command @ ("run" | "restore")) => match wanted(&parsed) {
            Ok(Capture::No) => exec(&delegate, &args),
            Ok(Capture::Yes { .. }) => refuse(
                &parsed,
                parsed.create_target().map(|t| t.1),
                &format!(
                    "`{command}` cannot enroll a container between its creation and its \
                     start; use `create` then `start` (podman and containerd do)"
                ),
            ),
            Err(e) => refuse(&parsed, parsed.create_target().map(|t| t.1), &e),
        },
        Some("start") => start(&argv0, &delegate, &args, &parsed),
        Some("delete") => delete(&argv0, &delegate, &args, &parsed),
        _ => exec(&delegate, &args),
    }
}

/// The real runtime: the wrapper name's suffix (`sluice-runtime-runc` → `runc`), else crun,
/// else runc; never the wrapper itself.
fn delegate_for(argv0: &OsStr) -> Result<PathBuf, WrapperError> {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let wanted: Vec<String> = match name.strip_prefix(WRAPPER_NAME) {
        Some(suffix) if suffix.starts_with('-') && suffix.len() > 1 => {
            vec![suffix[1..].to_owned()]
        }
        _ => vec!["crun".to_owned(), "runc".to_owned()],
    };
    let me = std::fs::canonicalize("/proc/self/exe").ok();
    for program in &wanted {
        for dir in SEARCH {
            let path = Path::new(dir).join(program);
            let real = std::fs::canonicalize(&path).ok();
            if path.is_file() && real.is_some() && real != me {
                return Ok(path);
            }
        }
    }
    Err(WrapperError::NoRuntime {
        wanted: wanted.join(" or "),
        searched: SEARCH.join(", "),
    })
}

/// Why the wrapper refuses a container (its message goes to stderr and the runtime's log).
#[derive(Debug, thiserror::Error)]
enum WrapperError {
    /// No real runtime to delegate to.
    #[error(
        "no OCI runtime {wanted} in {searched}: install it, or name the wrapper \
         sluice-runtime-<runtime>"
    )]
    NoRuntime {
        /// The runtimes looked for.
        wanted: String,
        /// Where.
        searched: String,
    },
    /// The runtime spec could not be read.
    #[error("cannot read {path}: {source}")]
    ReadSpec {
        /// The spec file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The runtime spec is not JSON of an OCI spec.
    #[error("{path} is not an OCI runtime spec: {source}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A `sluice.dev/` annotation is unknown or malformed.
    #[error(transparent)]
    Annotation(#[from] annotations::AnnotationError),
    /// The real runtime could not be run.
    #[error("cannot run {path}: {source}")]
    Run {
        /// The runtime.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The real runtime's `state` did not answer with JSON.
    #[error("{path} state {id}: {source}: {stderr}")]
    State {
        /// The runtime.
        path: PathBuf,
        /// The container.
        id: String,
        /// The parser's error.
        source: serde_json::Error,
        /// What the runtime printed on stderr.
        stderr: String,
    },
    /// The created container has no process.
    #[error("container {0} has no process")]
    NoProcess(String),
    /// The process's cgroup could not be read.
    #[error("/proc/{pid}/cgroup: {source}")]
    ReadCgroup {
        /// The process.
        pid: u32,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The process is in no cgroup v2 directory.
    #[error("pid {0} is in no cgroup v2 directory")]
    NoCgroup(u32),
    /// The cgroup2 mount or a cgroup's id could not be read.
    #[error("{0}")]
    Capture(String),
    /// The wrapper's configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin token (the daemon writes it on first start).
    #[error(transparent)]
    Token(#[from] super::NoToken),
    /// The async runtime could not start.
    #[error("async runtime: {0}")]
    Async(std::io::Error),
    /// The daemon did not answer.
    #[error("the Sluice daemon does not answer ({0}); start it (`sluice run`)")]
    Daemon(ClientError),
    /// The daemon refused the enrollment.
    #[error("{0}")]
    Enroll(ClientError),
    /// The started container's cgroup is not enrolled for it.
    #[error("it is not enrolled with Sluice (was it created through the wrapper?)")]
    NotEnrolled,
}

/// What the bundle of a `create`/`run`/`restore` asks for (crun's `--config` names the
/// spec file the runtime reads; else the bundle's `config.json`).
fn wanted(parsed: &RuntimeArgs) -> Result<Capture, WrapperError> {
    let Some((bundle, _)) = parsed.create_target() else {
        return Ok(Capture::No);
    };
    let spec = parsed
        .option("--config")
        .or_else(|| parsed.option("-f"))
        .map_or_else(|| bundle.join("config.json"), PathBuf::from);
    capture_of(&spec)
}

/// What the runtime spec at `path` asks for.
fn capture_of(path: &Path) -> Result<Capture, WrapperError> {
    let text = std::fs::read(path).map_err(|source| WrapperError::ReadSpec {
        path: path.to_owned(),
        source,
    })?;
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let spec: Spec = serde_json::from_slice(&text).map_err(|source| WrapperError::Spec {
        path: path.to_owned(),
        source,
    })?;
    Ok(annotations::capture(&spec.annotations)?)
}

fn create(argv0: &OsStr, delegate: &Path, args: &[OsString], parsed: &RuntimeArgs) -> ExitCode {
    let id = parsed.create_target().map(|(_, id)| id);
    let (session, upstream_proxy) = match wanted(parsed) {
        Ok(Capture::No) => return exec(delegate, args),
        Ok(Capture::Yes {
            session,
            upstream_proxy,
        }) => (session, upstream_proxy),
        Err(e) => return refuse(parsed, id, &e),
    };
    let Some(id) = id else {
        return exec(delegate, args);
    };
    let (config, client) = match wrapper_client(argv0) {
        Ok(c) => c,
        Err(e) => return refuse(parsed, Some(id), &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return refuse(parsed, Some(id), &WrapperError::Async(e)),
    };
    // Fail before creating anything when the daemon is not there.
    if let Err(e) = runtime.block_on(client.health()) {
        return refuse(parsed, Some(id), &WrapperError::Daemon(e));
    }
    let status = Command::new(delegate).args(args).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(source) => {
            let e = WrapperError::Run {
                path: delegate.to_owned(),
                source,
            };
            return refuse(parsed, Some(id), &e);
        }
    }
    let enrolled = container_pid(delegate, parsed, &id).and_then(|pid| {
        let cgroup = cgroup_of(pid)?;
        let request = CreateSandbox {
            session,
            cgroup: Some(cgroup),
            upstream_proxy,
            pid: Some(pid),
            container: Some(id.clone()),
            ..CreateSandbox::default()
        };
        runtime
            .block_on(client.create_sandbox(&request))
            .map_err(WrapperError::Enroll)
    });
    match enrolled {
        Ok(sandbox) => {
            remember(&config, &id, sandbox.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = Command::new(delegate)
                .args(&parsed.globals)
                .args(["delete", "--force", &id])
                .status();
            refuse(parsed, Some(id), &e)
        }
    }
}

fn delete(argv0: &OsStr, delegate: &Path, args: &[OsString], parsed: &RuntimeArgs) -> ExitCode {
    let status = match Command::new(delegate).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{WRAPPER_NAME}: cannot run {}: {e}", delegate.display());
            return ExitCode::from(1);
        }
    };
    let code = ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8);
    let Some(id) = parsed.container_id().filter(|id| safe_id(id)) else {
        return code;
    };
    // A node without the wrapper's configuration enrolled nothing.
    let Ok((config, client)) = wrapper_client(argv0) else {
        return code;
    };
    let marker = config.state_dir.join(ENROLLED_DIR).join(&id);
    if !status.success() || !marker.exists() {
        return code;
    }
    // The sandbox this wrapper enrolled for it: never another container's of the same id.
    let enrolled: Option<u64> = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let removed = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let list = client.sandboxes().await.map_err(|e| e.to_string())?;
            let ours = |s: &&crate::api::SandboxView| {
                s.container.as_deref() == Some(&id) && enrolled.is_none_or(|n| n == s.id)
            };
            for sandbox in list.iter().filter(ours) {
                client
                    .remove_sandbox(sandbox.id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
    })();
    match removed {
        Ok(()) => {
            let _ = std::fs::remove_file(&marker);
        }
        // The container is gone; the daemon's sweep drops its sandbox (its cgroup is gone).
        Err(e) => eprintln!("{WRAPPER_NAME}: container {id}: not unenrolled: {e}"),
    }
    code
}

/// What `RUNTIME state ID` says of a container.
#[derive(Debug, serde::Deserialize)]
struct State {
    pid: u32,
    #[serde(default)]
    bundle: Option<PathBuf>,
}

fn container_state(delegate: &Path, parsed: &RuntimeArgs, id: &str) -> Result<State, WrapperError> {
    let out = Command::new(delegate)
        .args(&parsed.globals)
        .args(["state", id])
        .output()
        .map_err(|source| WrapperError::Run {
            path: delegate.to_owned(),
            source,
        })?;
    serde_json::from_slice(&out.stdout).map_err(|source| WrapperError::State {
        path: delegate.to_owned(),
        id: id.to_owned(),
        source,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The pid of the created container's first process.
fn container_pid(delegate: &Path, parsed: &RuntimeArgs, id: &str) -> Result<u32, WrapperError> {
    match container_state(delegate, parsed, id)?.pid {
        0 => Err(WrapperError::NoProcess(id.to_owned())),
        pid => Ok(pid),
    }
}

/// `start`: a container whose bundle asks for capture starts only if the daemon has it
/// enrolled, in the cgroup its first process is in now (a wrapper killed between `create`
/// and enrollment, a runtime that bypassed the wrapper's `create`, a stale enrollment of
/// an earlier container of the same id: all refused).
fn start(argv0: &OsStr, delegate: &Path, args: &[OsString], parsed: &RuntimeArgs) -> ExitCode {
    let Some(id) = parsed.container_id() else {
        return exec(delegate, args);
    };
    // A container the runtime does not know: its own error says so.
    let Ok(state) = container_state(delegate, parsed, &id) else {
        return exec(delegate, args);
    };
    let capture = match &state.bundle {
        Some(bundle) => capture_of(&bundle.join("config.json")),
        None => Ok(Capture::No),
    };
    match capture {
        Ok(Capture::No) => return exec(delegate, args),
        Ok(Capture::Yes { .. }) => {}
        Err(e) => return refuse(parsed, Some(id), &e),
    }
    let enrolled = (|| {
        let cgroup = cgroup_of(state.pid)?;
        let cgroup_id = crate::capture::cgroup_id(&cgroup).map_err(|e| {
            WrapperError::Capture(format!("cgroup id of {}: {e}", cgroup.display()))
        })?;
        let (_, client) = wrapper_client(argv0)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WrapperError::Async)?;
        let list = runtime
            .block_on(client.sandboxes())
            .map_err(WrapperError::Daemon)?;
        list.iter()
            .any(|s| s.container.as_deref() == Some(&id) && s.cgroup_id == cgroup_id)
            .then_some(())
            .ok_or(WrapperError::NotEnrolled)
    })();
    match enrolled {
        Ok(()) => exec(delegate, args),
        Err(e) => refuse(parsed, Some(id), &e),
    }
}

/// The cgroup v2 directory of `pid`, as this (the node's) mount namespace names it.
fn cgroup_of(pid: u32) -> Result<PathBuf, WrapperError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|source| WrapperError::ReadCgroup { pid, source })?;
    let relative = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or(WrapperError::NoCgroup(pid))?;
    let mount =
        crate::capture::cgroup2_mount().map_err(|e| WrapperError::Capture(e.to_string()))?;
    Ok(mount.join(relative.trim_start_matches('/')))
}

/// The control API client, from the wrapper's configuration (see the module docs).
fn wrapper_client(
    argv0: &OsStr,
) -> Result<(Config, crate::control::client::ControlClient), WrapperError> {
    let beside = {
        let mut path = argv0.to_owned();
        path.push(".toml");
        PathBuf::from(path)
    };
    let path = match std::env::var_os("SLUICE_CONFIG") {
        Some(path) => Some(PathBuf::from(path)),
        None if beside.is_file() => Some(beside),
        None => None,
    };
    let config = Config::load(path.as_deref())?;
    let client = super::client(&config)?;
    Ok((config, client))
}

/// Notes that the wrapper enrolled container `id` (as sandbox `sandbox`).
fn remember(config: &Config, id: &str, sandbox: u64) {
    if !safe_id(id) {
        return;
    }
    let dir = config.state_dir.join(ENROLLED_DIR);
    let dir = dir.as_path();
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| std::fs::write(dir.join(id), sandbox.to_string()));
    if let Err(e) = written {
        eprintln!(
            "{WRAPPER_NAME}: container {id}: cannot note its enrollment in {}: {e}",
            dir.display()
        );
    }
}

/// A container id usable as a file name.
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Replaces this process with the real runtime.
fn exec(delegate: &Path, args: &[OsString]) -> ExitCode {
    let error = Command::new(delegate).args(args).exec();
    eprintln!("{WRAPPER_NAME}: cannot run {}: {error}", delegate.display());
    ExitCode::from(1)
}

/// Reports why container `id` does not start: on stderr (podman shows it) and in the
/// runtime's JSON log if one is given (containerd reads it).
fn refuse(parsed: &RuntimeArgs, id: Option<String>, reason: &dyn std::fmt::Display) -> ExitCode {
    let message = match id {
        Some(id) => format!("sluice: container {id} not started: {reason}"),
        None => format!("sluice: {reason}"),
    };
    eprintln!("{message}");
    if let Some(log) = parsed.global("--log") {
        let json = parsed
            .global("--log-format")
            .is_some_and(|f| f == OsStr::new("json"));
        let line = if json {
            serde_json::json!({
                "level": "error",
                "msg": message,
                "time": crate::audit::now_rfc3339(),
            })
            .to_string()
        } else {
            message.clone()
        };
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{line}");
        }
    }
    ExitCode::from(1)
}

/// `sluice runtime install --dir DIR [--delegate RUNTIME]`: copies this binary to
/// `DIR/sluice-runtime-RUNTIME` and writes beside it the configuration the wrapper reads
/// (`state_dir` and the control address of `config`: no secrets). Each file is replaced
/// whole (written aside, then renamed), so a runtime never runs half a binary.
pub fn install(config: &Config, dir: &Path, delegate: &str) -> ExitCode {
    if delegate.is_empty()
        || !delegate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return super::fail(&format!(
            "--delegate {delegate:?}: name the real runtime's program (runc, crun)"
        ));
    }
    let name = format!("{WRAPPER_NAME}-{delegate}");
    let wrapper = dir.join(&name);
    let settings = dir.join(format!("{name}.toml"));
    let text = format!(
        "# Written by `sluice runtime install`: where {name} finds the daemon.\n\
         state_dir = {:?}\n[listen]\ncontrol = \"{}\"\n",
        config.state_dir, config.listen.control
    );
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::read("/proc/self/exe"))
        .and_then(|binary| replace(&wrapper, &binary, 0o755))
        .and_then(|()| replace(&settings, text.as_bytes(), 0o644));
    match result {
        Ok(()) => {
            println!(
                "installed {} (in front of {delegate}) and {}",
                wrapper.display(),
                settings.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&format!("runtime install into {}: {e}", dir.display())),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, bytes)?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&temp, path)
}
