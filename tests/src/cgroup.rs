//! Test cgroups (v2): created by the test, emptied and removed on drop.
//!
//! Sluice identifies sandboxes by cgroup; e2e tests put each sandbox process in its own
//! child cgroup. Never attach anything to the cgroup2 root or to cgroups you did not create.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long drop waits for killed processes to leave the cgroup.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors from test cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 line in /proc/self/mounts.
    #[error(
        "cgroup: no cgroup2 mount in /proc/self/mounts (mount one, e.g. at /sys/fs/cgroup/unified)"
    )]
    NoCgroup2,
    /// Reading /proc/self/mounts failed.
    #[error("cgroup: read /proc/self/mounts: {0}")]
    Mounts(std::io::Error),
    /// The name is not a single safe path component.
    #[error("cgroup: name {0:?} must be 1-64 chars of [A-Za-z0-9_.-] and not start with '.'")]
    BadName(String),
    /// A cgroup file operation failed.
    #[error("cgroup: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where cgroup2 is mounted, from /proc/self/mounts (here `/sys/fs/cgroup/unified`; never
/// hard-code it).
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(CgroupError::Mounts)?;
    parse_cgroup2_mount(&mounts).ok_or(CgroupError::NoCgroup2)
}

/// The mount point of the first `cgroup2` line of a mounts table (octal escapes decoded).
pub fn parse_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(point)))
    })
}

/// A cgroup this test created; drop kills its processes, waits (bounded) and removes it.
#[must_use = "the cgroup is emptied and removed when this is dropped"]
#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
    id: u64,
}

impl TestCgroup {
    /// Creates `parent/name`. Fails if it already exists (it would not be ours).
    pub fn new(parent: &Path, name: &str) -> Result<TestCgroup, CgroupError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(ok) {
            return Err(CgroupError::BadName(name.to_owned()));
        }
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|source| io("create", &path, source))?;
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(TestCgroup {
                id: meta.ino(),
                path,
            }),
            Err(source) => {
                let _ = std::fs::remove_dir(&path);
                Err(io("stat", &path, source))
            }
        }
    }

    /// Creates `<cgroup2 mount>/<prefix>-<pid>-<n>`, unique per process and call.
    pub fn unique(prefix: &str) -> Result<TestCgroup, CgroupError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestCgroup::new(
            &cgroup2_mount()?,
            &format!("{prefix}-{}-{n}", std::process::id()),
        )
    }

    /// Creates a child cgroup `self/name` (dropped independently; drop children first).
    pub fn child(&self, name: &str) -> Result<TestCgroup, CgroupError> {
        TestCgroup::new(&self.path, name)
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id the kernel reports (`bpf_get_current_cgroup_id`): the directory inode.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Pids currently in the cgroup (not its children).
    pub fn procs(&self) -> Result<Vec<u32>, CgroupError> {
        let file = self.path.join("cgroup.procs");
        let text = std::fs::read_to_string(&file).map_err(|source| io("read", &file, source))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Moves process `pid` into the cgroup.
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        let file = self.path.join("cgroup.procs");
        std::fs::write(&file, pid.to_string()).map_err(|source| io("write", &file, source))
    }

    /// A command that joins this cgroup, then execs `program`:
    /// `sh -c 'echo 0 > "$0" && exec "$@"' <cgroup.procs> program`. Add args as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo 0 > "$0" && exec "$@""#)
            .arg(self.path.join("cgroup.procs"))
            .arg(program);
        cmd
    }

    /// Rewrites `cmd` (program, args, env changes, working dir) to run inside this cgroup;
    /// set stdio on the result. E.g. `cg.wrap(&lab.exec_in_node("curl"))`.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut wrapped = self.command(cmd.get_program());
        wrapped.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Kills every process in the cgroup (`cgroup.kill`, or SIGKILL per pid on old kernels)
    /// and waits up to 5 s for it to empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let kill_file = self.path.join("cgroup.kill");
        if kill_file.exists() {
            std::fs::write(&kill_file, "1").map_err(|source| io("write", &kill_file, source))?;
        } else {
            for pid in self.procs()? {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.procs()?.is_empty() {
            if Instant::now() >= deadline {
                let file = self.path.join("cgroup.procs");
                let err = std::io::Error::other("processes still present after SIGKILL");
                return Err(io("drain", &file, err));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(err) = self.kill_all() {
            eprintln!("{err}");
        }
        if let Err(err) = std::fs::remove_dir(&self.path) {
            eprintln!("cgroup: cleanup: remove {}: {err}", self.path.display());
        }
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Decodes the `\040`-style octal escapes of /proc/self/mounts.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mount() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
                Some("/sys/fs/cgroup"),
            ),
            (
                "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                 cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
                Some("/sys/fs/cgroup/unified"),
            ),
            ("none /mnt/my\\040cg cgroup2 rw 0 0\n", Some("/mnt/my cg")),
            ("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", None),
            ("", None),
            ("garbage\n", None),
        ];
        for (mounts, want) in cases {
            assert_eq!(
                parse_cgroup2_mount(mounts),
                want.map(PathBuf::from),
                "{mounts:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_names() {
        let parent = std::env::temp_dir();
        for name in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(TestCgroup::new(&parent, name), Err(CgroupError::BadName(_))),
                "{name:?}"
            );
        }
        assert_eq!(unescape_mount("a\\134b\\0"), "a\\b\\0");
    }
}
