//! One daemon per capture: an exclusive lock named after the pin directory.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the lock files live.
const LOCK_DIR: &str = "/run/sluice";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error(
        "another sluice daemon (pid {pid}) is running with the capture pinned at {pin_dir}; \
         stop it first, or give this one its own capture.pin_dir"
    )]
    Held {
        /// The other daemon's pid, as it wrote it.
        pid: String,
        /// The shared pin directory.
        pin_dir: PathBuf,
    },
    /// The lock file could not be used.
    #[error("daemon lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Held for the daemon's lifetime; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DaemonLock {
    _lock: Flock<std::fs::File>,
}

impl DaemonLock {
    /// Takes the lock for `pin_dir`, writing this process's pid into it.
    pub fn acquire(pin_dir: &Path) -> Result<DaemonLock, LockError> {
        let name = pin_dir
            .to_string_lossy()
            .trim_matches('/')
            .replace('/', "_");
        let path = Path::new(LOCK_DIR).join(format!("{name}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(LOCK_DIR).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_owned();
                return Err(LockError::Held {
                    pid,
                    pin_dir: pin_dir.to_path_buf(),
                });
            }
        };
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        write!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DaemonLock { _lock: lock })
    }
}
