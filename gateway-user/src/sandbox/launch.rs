//! Starting a `sluice exec` workload: the order of the walls, and the processes that hold them.
//!
//! Three processes, all born inside the sandbox cgroup:
//! 1. the **launcher** (`sluice internal-enter`, the node's root): closes inherited file
//!    descriptors, joins the sandbox cgroup and network namespace, builds the mount namespace
//!    ([`mounts::prepare`]), and makes the new PID, IPC and UTS namespaces its children will
//!    live in; it then writes the user-namespace id maps of its child, forwards signals to it
//!    and passes its exit code on. It lives outside the sandbox's PID namespace.
//! 2. **init** (PID 1 of the sandbox): mounts a fresh `/proc`, gives a root workload a private
//!    home, enters a new user namespace (mapped by the launcher), takes the workload's ids,
//!    drops capabilities, applies the seccomp filters, and then reaps orphans and forwards
//!    signals to the workload until it ends (when PID 1 ends, the kernel ends every process
//!    left in the namespace).
//! 3. the **workload** (PID 2): execs the command.
//!
//! Every socket the workload creates is born in the sandbox cgroup, so it is captured.
//!
//! # Security
//! The mount, PID, IPC, UTS and network namespaces belong to the node's user namespace, so the
//! workload — root at most inside its own user namespace — can change none of them; the
//! seccomp filter refuses new namespaces and mounts anyway.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::identity::Identity;
use super::mounts::{self, MountPlan};
use super::{cgroup, confine, environment, netns, seccomp};

/// Exit code when the sandbox could not be set up (the command never ran).
pub const EXIT_SETUP_FAILED: u8 = 125;

/// Everything the launcher needs.
#[derive(Debug)]
pub struct Launch {
    /// The sandbox cgroup to join.
    pub cgroup: PathBuf,
    /// The sandbox's own network namespace, if it has one.
    pub netns: Option<PathBuf>,
    /// Who the workload is.
    pub identity: Identity,
    /// What it does not see.
    pub mounts: MountPlan,
    /// `--env` entries: `(NAME, None)` takes the caller's value, `(NAME, Some(v))` sets it.
    pub env: Vec<(String, Option<String>)>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Signals the launcher and init pass on to the workload.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the launcher; returns the workload's exit code (125 when setup failed, 127 when the
/// command does not exist, 126 when it cannot run, 128 + N when signal N ended it).
///
/// Call from a single-threaded process (it forks).
pub fn run(launch: &Launch) -> ExitCode {
    match launcher(launch) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("sluice: {message}");
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

/// Why the sandbox could not be set up (the workload never ran).
#[derive(Debug, thiserror::Error)]
enum LaunchError {
    /// A system call failed at `step`.
    #[error("sandbox: {step}: {errno}")]
    Sys {
        /// What was being done.
        step: &'static str,
        /// The error the kernel returned.
        errno: nix::Error,
    },
    /// The launcher gave up before mapping the user namespace.
    #[error("sandbox: the launcher did not map the user namespace")]
    NotMapped,
    /// Closing descriptors or dropping capabilities.
    #[error(transparent)]
    Confine(#[from] confine::ConfineError),
    /// Entering the cgroup.
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    /// Entering the network namespace.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// Laying out the mounts.
    #[error(transparent)]
    Mounts(#[from] mounts::MountError),
    /// Installing the seccomp filter.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
}

/// `map_err` for a failed system call at `step`.
fn at(step: &'static str) -> impl FnOnce(nix::Error) -> LaunchError {
    move |errno| LaunchError::Sys { step, errno }
}

fn launcher(launch: &Launch) -> Result<u8, LaunchError> {
    use nix::sched::{CloneFlags, unshare};
    confine::close_inherited_fds()?;
    // The working directory is held by reference: after the masks it is re-entered by path
    // (see `reenter`), so a caller's directory under a hidden place is not a way around them.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    cgroup::enter(&launch.cgroup)?;
    if let Some(ns) = &launch.netns {
        netns::enter(ns)?;
    }
    mounts::prepare(&launch.mounts)?;
    unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(at("unshare the PID namespace"))?;
    // The sandbox's PID 1 mounts its own /proc over this one: keep a handle on the node's.
    let node_proc = open_proc()?;
    let signals = block_signals()?;
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    match fork()? {
        ForkResult::Child => {
            drop((ready_read, go_write, node_proc));
            let code = match init(launch, &cwd, &signals, ready_write, go_read) {
                Ok(code) => code,
                Err(message) => {
                    eprintln!("sluice: {message}");
                    EXIT_SETUP_FAILED
                }
            };
            std::process::exit(i32::from(code))
        }
        ForkResult::Parent { child } => {
            drop((ready_write, go_read));
            if wait_byte(&ready_read) {
                map_ids(&node_proc, child, &launch.identity)?;
                nix::unistd::write(&go_write, b"g").map_err(at("start the workload"))?;
            }
            drop(go_write);
            Ok(supervise(child, &signals, false))
        }
    }
}

/// PID 1 of the sandbox.
fn init(
    launch: &Launch,
    cwd: &std::path::Path,
    signals: &SigSet,
    ready: OwnedFd,
    go: OwnedFd,
) -> Result<u8, LaunchError> {
    use nix::sched::{CloneFlags, unshare};
    let identity = &launch.identity;
    mounts::fresh_proc()?;
    let home = mounts::private_home(
        identity.home.as_deref(),
        identity.outside,
        identity.outside_gid,
    )?;
    reenter(cwd, &home);
    unshare(CloneFlags::CLONE_NEWUSER).map_err(at("unshare the user namespace"))?;
    nix::unistd::write(&ready, b"r").map_err(at("signal the launcher"))?;
    drop(ready);
    if !wait_byte(&go) {
        return Err(LaunchError::NotMapped);
    }
    drop(go);
    become_workload_user(identity)?;
    confine::drop_capabilities()?;
    seccomp::apply()?;
    match fork()? {
        ForkResult::Child => {
            let error = exec(launch, &home, signals);
            std::process::exit(i32::from(error))
        }
        ForkResult::Parent { child } => Ok(supervise(child, signals, true)),
    }
}

/// Replaces the workload process with the command; returns only on failure.
fn exec(launch: &Launch, home: &std::path::Path, signals: &SigSet) -> u8 {
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(signals), None);
    let Some((program, rest)) = launch.command.split_first() else {
        eprintln!("sluice: no command given");
        return EXIT_SETUP_FAILED;
    };
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .env_clear()
        .envs(environment::for_workload(std::env::vars_os(), &launch.env))
        .env("HOME", home);
    let err = command.exec();
    let name = program.to_string_lossy();
    if err.kind() == std::io::ErrorKind::NotFound {
        eprintln!("sluice: command not found: {name}");
        127
    } else {
        eprintln!("sluice: cannot run {name}: {err}");
        126
    }
}

/// Re-enters the working directory `cwd` by path through the sandbox's mounts, so it shows
/// what the sandbox sees there; a directory that is hidden or private now (under `/tmp`, the
/// state directory) starts the command in `home` instead.
fn reenter(cwd: &std::path::Path, home: &std::path::Path) {
    if std::env::set_current_dir(cwd).is_err() {
        let _ = std::env::set_current_dir(home).or_else(|_| std::env::set_current_dir("/"));
    }
}

/// Takes the workload's ids inside the (now mapped) user namespace.
fn become_workload_user(identity: &Identity) -> Result<(), LaunchError> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let gid = Gid::from_raw(identity.inside_gid);
    let uid = Uid::from_raw(identity.inside);
    setgroups(&[gid]).map_err(at("set groups"))?;
    setresgid(gid, gid, gid).map_err(at("set the group id"))?;
    setresuid(uid, uid, uid).map_err(at("set the user id"))
}

/// Writes `child`'s user-namespace id maps (only the node's root may map other ids) through
/// `proc`, the node's `/proc`.
fn map_ids(proc: &OwnedFd, child: Pid, identity: &Identity) -> Result<(), LaunchError> {
    use nix::fcntl::{OFlag, openat};
    let write = |file: &str, step: &'static str, line: String| {
        let path = format!("{child}/{file}");
        let fd = openat(
            proc,
            path.as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(at(step))?;
        nix::unistd::write(&fd, line.as_bytes()).map_err(at(step))?;
        Ok::<(), LaunchError>(())
    };
    write(
        "uid_map",
        "write uid_map of the user namespace",
        identity.uid_map(),
    )?;
    write(
        "gid_map",
        "write gid_map of the user namespace",
        identity.gid_map(),
    )
}

/// Waits for `child`, passing forwarded signals on; `reaper` also reaps every other child
/// (PID 1 inherits orphans). Returns the shell-style exit code.
fn supervise(child: Pid, signals: &SigSet, reaper: bool) -> u8 {
    loop {
        let Ok(signal) = signals.wait() else {
            continue;
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        let target = if reaper { Pid::from_raw(-1) } else { child };
        loop {
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    return u8::try_from(code).unwrap_or(1);
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                    return u8::try_from(128 + signal as i32).unwrap_or(1);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Blocks the forwarded signals and SIGCHLD (they are taken with `sigwait`).
fn block_signals() -> Result<SigSet, LaunchError> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(at("block signals"))?;
    Ok(set)
}

/// The node's `/proc`, held open.
fn open_proc() -> Result<OwnedFd, LaunchError> {
    use nix::fcntl::{OFlag, open};
    open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(at("open /proc"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(at("pipe"))
}

/// Whether one byte arrived (false on EOF: the other side gave up).
fn wait_byte(fd: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut byte) {
            Ok(1) => return true,
            Err(nix::Error::EINTR) => {}
            _ => return false,
        }
    }
}

#[expect(
    unsafe_code,
    reason = "fork(2) in a single-threaded process: the launcher and init never start threads"
)]
fn fork() -> Result<ForkResult, LaunchError> {
    // SAFETY: `sluice internal-enter` runs before any runtime or thread is started (see
    // `cli::Cli::run`), so the child inherits no locks held by other threads.
    unsafe { nix::unistd::fork() }.map_err(at("fork"))
}
