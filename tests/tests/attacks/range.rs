//! The firing range: a lab, the real daemon, a sniffer on the test hosts' side, and the
//! hostile script, runnable in each kind of sandbox.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use tests::sluice::{Options, Sluice};
use tests::sniffer::Sniffer;
use tests::{NetLab, TestCgroup};

const ATTACKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/attacks/attacker.py");

static MARKS: AtomicU32 = AtomicU32::new(0);

/// Where the attack runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `sluice exec` (its own network namespace, the default).
    Exec,
    /// `sluice exec --share-netns` (the node's network namespace).
    Shared,
    /// A cgroup another runtime made, enrolled with `sluice enroll` (root in the node's
    /// namespaces: only the kernel guards apply).
    Enrolled,
}

/// The sandbox kinds `sluice exec` makes.
pub const EXEC_MODES: [Mode; 2] = [Mode::Exec, Mode::Shared];
/// Every kind of sandbox.
pub const ALL_MODES: [Mode; 3] = [Mode::Exec, Mode::Shared, Mode::Enrolled];

/// A lab with a daemon and a sniffer.
pub struct Range {
    pub lab: NetLab,
    pub sluice: Sluice,
    pub sniffer: Sniffer,
    enrolled: TestCgroup,
    _share: tempfile::TempDir,
    script: PathBuf,
}

/// What one attack printed, with the marker its payloads carried.
pub struct Shot {
    pub got: Value,
    pub marker: String,
    pub mode: Mode,
}

impl Range {
    pub fn new(options: &Options) -> Range {
        let lab = NetLab::new("atk").unwrap();
        let sluice = Sluice::start(&lab, options).unwrap();
        let sniffer = Sniffer::start(&lab).unwrap();
        let enrolled = TestCgroup::new(&sluice.parent_cgroup, "runtime-made").unwrap();
        let out = sluice
            .command()
            .args(["enroll", "--cgroup"])
            .arg(enrolled.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "enroll: {out:?}");
        // The script must be readable by the sandbox's unprivileged id wherever the checkout is.
        let share = tempfile::tempdir().unwrap();
        set_mode(share.path(), 0o755);
        let script = share.path().join("attacker.py");
        std::fs::copy(ATTACKER, &script).unwrap();
        set_mode(&script, 0o644);
        Range {
            lab,
            sluice,
            sniffer,
            enrolled,
            _share: share,
            script,
        }
    }

    pub fn plain() -> Range {
        Range::new(&Options::default())
    }

    /// Runs attack `step` with `args` in a sandbox of kind `mode` (extra `sluice exec` flags
    /// in `flags`).
    pub fn fire(&self, mode: Mode, flags: &[&str], step: &str, args: &[&str]) -> Shot {
        let marker = format!(
            "slatk{}x{}",
            std::process::id(),
            MARKS.fetch_add(1, Ordering::Relaxed)
        );
        let script = self.script.to_string_lossy().into_owned();
        let mut argv = vec!["python3", script.as_str(), step, marker.as_str()];
        argv.extend_from_slice(args);
        let out = self.output(mode, flags, &argv);
        Shot {
            got: parse(&out, step, mode),
            marker,
            mode,
        }
    }

    /// Runs `argv` in a sandbox of kind `mode`.
    pub fn output(&self, mode: Mode, flags: &[&str], argv: &[&str]) -> Output {
        match mode {
            Mode::Exec | Mode::Shared => {
                let mut all: Vec<&str> = flags.to_vec();
                if mode == Mode::Shared {
                    all.push("--share-netns");
                }
                self.sluice.exec(&all, argv).output().unwrap()
            }
            Mode::Enrolled => {
                let mut cmd = self.lab.exec_in_node(argv[0]);
                cmd.args(&argv[1..]);
                self.enrolled.wrap(&cmd).output().unwrap()
            }
        }
    }

    /// Asserts that no frame on the test hosts' side carried `shot`'s marker.
    pub fn nothing_left(&self, shot: &Shot) {
        // Give anything in flight the time to arrive before looking.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let leaked = self.sniffer.carrying(shot.marker.as_bytes());
        assert!(
            leaked.is_empty(),
            "{:?}: {} frame(s) carrying the marker reached the network: {:?}",
            shot.mode,
            leaked.len(),
            shot.got
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.sluice.state_dir()
    }
}

impl Shot {
    /// The attack step was refused (by the kernel, the sandbox's walls or Sluice).
    pub fn refused(&self) -> bool {
        self.got["ok"] == false
    }

    pub fn errno(&self) -> Option<u64> {
        self.got["errno"].as_u64()
    }

    pub fn assert_refused(&self, what: &str) {
        assert!(
            self.refused(),
            "{what} ({:?}) succeeded: {}",
            self.mode,
            self.got
        );
    }
}

fn parse(out: &Output, step: &str, mode: Mode) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "{step} ({mode:?}): no JSON from the attacker: status {}, stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
