//! The node's record sequence: increasing, never reused across restarts.
//!
//! The counter file holds the first number not yet promised to any record. The writer reserves
//! numbers in blocks (one small fsync'd write per block, not per record) and, on a clean stop,
//! writes back the exact next number, so a restart continues without a gap. After a crash the
//! rest of the reserved block is skipped: a gap, never a reuse. Reuse would be worse than a gap:
//! the stream script would take the reused numbers for replays and drop the records.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Numbers reserved per counter write.
const BLOCK: u64 = 4096;

/// Why the counter could not be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    /// The counter file exists but is not a number.
    #[error(
        "audit: sequence counter {path} is corrupt ({text:?}); restore it, or remove it to continue from the spool and Redis"
    )]
    Corrupt {
        /// The counter file.
        path: PathBuf,
        /// What it held (a number's worth of characters at most).
        text: String,
    },
    /// Reading or writing the counter file failed.
    #[error("audit: sequence counter {path}: {source}")]
    Io {
        /// The counter file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The writer's sequence counter.
#[derive(Debug)]
pub(super) struct SeqCounter {
    path: PathBuf,
    next: u64,
    reserved: u64,
}

impl SeqCounter {
    /// Loads the counter; the next number is at least `floor` and at least 1.
    pub fn open(path: &Path, floor: u64) -> Result<SeqCounter, SeqError> {
        let stored = match std::fs::read_to_string(path) {
            Ok(text) => parse(&text).ok_or_else(|| SeqError::Corrupt {
                path: path.to_path_buf(),
                text: text.chars().take(24).collect(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(source) => {
                return Err(SeqError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let next = stored.max(floor).max(1);
        Ok(SeqCounter {
            path: path.to_path_buf(),
            next,
            reserved: next,
        })
    }

    /// The number the next record will get.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Moves the counter forward to at least `min_next` (never backwards).
    pub fn raise_to(&mut self, min_next: u64) {
        self.next = self.next.max(min_next);
    }

    /// Hands out the next number, reserving a new block on disk first when needed.
    ///
    /// A failed reservation is logged and the number is still used: losing the record would be
    /// worse, and the writer's startup check against Redis catches a counter left behind.
    pub fn take(&mut self) -> u64 {
        if self.next >= self.reserved {
            let reserve = self.next.saturating_add(BLOCK);
            match self.store(reserve) {
                Ok(()) => self.reserved = reserve,
                Err(e) => tracing::error!(error = %e, "audit: cannot reserve sequence numbers"),
            }
        }
        let seq = self.next;
        self.next += 1;
        seq
    }

    /// Writes back the exact next number, so a clean restart leaves no gap.
    pub fn close(&mut self) -> Result<(), SeqError> {
        self.store(self.next)?;
        self.reserved = self.next;
        Ok(())
    }

    fn store(&self, value: u64) -> Result<(), SeqError> {
        write_atomically(&self.path, format!("{value}\n").as_bytes()).map_err(|source| {
            SeqError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

fn parse(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Replaces `path` with `bytes` (mode 0600) so a crash leaves the old or the new content.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_restart_continues_without_gap_or_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let mut seq = SeqCounter::open(&path, 0).unwrap();
        assert_eq!((seq.take(), seq.take(), seq.take()), (1, 2, 3));
        seq.close().unwrap();
        let mut seq = SeqCounter::open(&path, 0).unwrap();
        assert_eq!(seq.take(), 4);
    }

    #[test]
    fn crash_skips_the_reserved_block_never_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let mut seq = SeqCounter::open(&path, 0).unwrap();
        for _ in 0..10 {
            seq.take();
        }
        drop(seq); // no close: a crash
        let mut seq = SeqCounter::open(&path, 0).unwrap();
        assert_eq!(seq.take(), 1 + BLOCK);
    }

    #[test]
    fn floor_and_raise_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let mut seq = SeqCounter::open(&path, 50).unwrap();
        assert_eq!(seq.next(), 50);
        seq.raise_to(10);
        assert_eq!(seq.next(), 50);
        seq.raise_to(70);
        assert_eq!(seq.take(), 70);
    }

    #[test]
    fn corrupt_counter_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        std::fs::write(&path, "twelve").unwrap();
        let err = SeqCounter::open(&path, 0).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
