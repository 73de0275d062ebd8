//! The real `sluice` daemon on this kernel: its feature probe passes and it attaches; killed
//! with SIGKILL, its sandboxes' connects are refused (never direct); started again, it
//! re-adopts the pinned programs instead of attaching them twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sluice::capture::program_names;
use vm_tests::{TestEnv, attached_programs, finish, wait_timeout};

/// Connects to a test address no route leads to: only a redirect to the daemon can answer.
const CONNECT: &str = r#"
import errno, socket
try:
    socket.create_connection(("198.51.100.7", 80), timeout=10)
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

/// A daemon started from `$SLUICE_BIN` in the test's network namespace.
struct Daemon {
    bin: PathBuf,
    netns: String,
    config: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    fn new(env: &TestEnv) -> Self {
        let bin = std::env::var_os("SLUICE_BIN")
            .map(PathBuf::from)
            .expect("SLUICE_BIN names the sluice binary (cargo xtask test sets it)");
        let dir = PathBuf::from("/tmp").join(format!("{}-daemon", env.name));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("sluice.toml");
        fs::write(
            &config,
            format!(
                "state_dir = {:?}\n[capture]\nparent_cgroup = {:?}\npin_dir = {:?}\n",
                dir.join("state"),
                env.parent,
                env.pin_dir
            ),
        )
        .unwrap();
        Self {
            bin,
            netns: format!("/run/netns/{}", env.name),
            config,
            dir,
            child: None,
            starts: 0,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns))
            .arg("--")
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    /// Starts `sluice run` and returns its log once it is ready (the deadline is generous:
    /// under emulation the start takes many seconds).
    fn start(&mut self) -> String {
        self.starts += 1;
        let log_path = self.dir.join(format!("run-{}.log", self.starts));
        let log = fs::File::create(&log_path).unwrap();
        let mut run = self.command();
        run.arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = run.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("sluice: ready") {
                self.child = Some(child);
                return text;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sluice run exited ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "sluice run not ready:\n{text}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `sluice run`, expecting it to refuse: returns its log once it has exited.
    fn start_refused(&mut self) -> String {
        let mut run = self.command();
        run.arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = wait_timeout(run.spawn().unwrap(), Duration::from_secs(300));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "sluice run started:
{log}"
        );
        log
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn cli(&self, args: &[&str], path: &Path) {
        let out = self.command().args(args).arg(path).output().unwrap();
        assert!(out.status.success(), "sluice {args:?}: {out:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let _ = self.command().args(["uninstall", "--force"]).output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn assert_attached_once(env: &TestEnv) {
    let attached = attached_programs(&env.parent);
    for name in program_names() {
        assert_eq!(attached.get(name), Some(&1), "{name} in {attached:?}");
    }
}

#[test]
fn the_daemon_starts_fails_closed_when_killed_and_readopts_its_pins() {
    let env = TestEnv::new();
    let mut daemon = Daemon::new(&env);
    let first = daemon.start();
    assert!(first.contains("capture attached"), "{first}");
    assert_attached_once(&env);
    assert!(
        !env.parent.join("sluice-probe").exists(),
        "the probe's cgroup is gone"
    );

    let sandbox = env.cgroup("enrolled");
    daemon.cli(&["enroll", "--cgroup"], &sandbox);
    let connect = || {
        finish(env.spawn_python(Some(&sandbox), CONNECT))
            .trim()
            .to_owned()
    };
    assert_eq!(connect(), "connected", "redirected to the daemon");

    daemon.kill9();
    assert_eq!(connect(), "ECONNREFUSED", "refused, never direct");

    let second = daemon.start();
    assert!(second.contains("re-adopted pinned capture"), "{second}");
    assert_attached_once(&env);
    assert_eq!(connect(), "connected");
}

/// `5.10.0-46-amd64` → (5, 10).
fn version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

#[test]
fn the_probe_refuses_a_kernel_older_than_the_minimum_and_attaches_nothing() {
    let env = TestEnv::new();
    let mut daemon = Daemon::new(&env);
    let release = sluice::capture::kernel_release();
    if version(&release) >= version(sluice::capture::MINIMUM_KERNEL) {
        let log = daemon.start();
        assert!(log.contains("capture attached"), "{log}");
        return;
    }
    let log = daemon.start_refused();
    for needle in [
        format!("this kernel ({release}) lacks the SO_NETNS_COOKIE socket option (Linux 5.14)"),
        format!(
            "Sluice needs Linux {} or newer",
            sluice::capture::MINIMUM_KERNEL
        ),
        "Nothing was attached".to_owned(),
    ] {
        assert!(log.contains(&needle), "{needle:?} not in:\n{log}");
    }
    // Nothing attached: a process in a cgroup below the parent is not redirected (the test
    // namespace has no route), and no link is pinned.
    let below = env.cgroup("below");
    assert_eq!(
        finish(env.spawn_python(Some(&below), CONNECT)).trim(),
        "ENETUNREACH"
    );
    let links = fs::read_dir(env.pin_dir.join("links")).map_or(0, Iterator::count);
    assert_eq!(links, 0, "links pinned by a refused start");
    // For the record of the run (`cargo xtask vm-test` shows a refused leg's output).
    println!("sluice run on {release}:\n{log}");
}
