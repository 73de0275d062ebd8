//! The outage spool: batches Redis did not confirm, on disk, in order, until replayed.
//!
//! Segments are `spool-<first seq, 20 digits>.jsonl` files (mode 0600) in the spool directory,
//! one record per line; names sort in write order. Each appended batch is fsync'd. Replay reads
//! the oldest segment (closing it for appends first if it is the one being written), hands out
//! chunks, and deletes the segment only once every chunk of it has been confirmed by Redis. A
//! crash between a confirmed chunk and the delete means the chunk is sent again on restart,
//! which the stream script recognises by its sequence numbers and skips.
//!
//! The spool is bounded: a batch that would take it past `max_bytes` is refused whole and the
//! caller counts it as dropped. The oldest records are kept (they are the evidence of what
//! happened when the outage began); a gap in the sequence shows where records were dropped.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::entry::Entry;

/// A segment is closed for appends past this size, so replay loads bounded files.
const SEGMENT_MAX: u64 = 8 << 20;

/// Why the spool could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A spool file or the directory could not be used.
    #[error("audit: spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What happened to an appended batch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Appended {
    /// On disk and fsync'd.
    Stored,
    /// Refused: the spool is at its size bound.
    Full,
}

/// The spool directory's segments.
#[derive(Debug)]
pub(super) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in every segment, loaded or not.
    total: u64,
    /// Closed segments waiting for replay, oldest first, with their sizes.
    closed: VecDeque<(PathBuf, u64)>,
    /// The segment being appended to.
    active: Option<Active>,
    /// The segment being replayed.
    loaded: Option<Loaded>,
    /// Unreadable lines seen while loading, not yet reported.
    corrupt: u64,
}

#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

#[derive(Debug)]
struct Loaded {
    path: PathBuf,
    size: u64,
    entries: Vec<Entry>,
    pos: usize,
}

impl Spool {
    /// Opens (creating with mode 0700) the spool directory and lists its segments.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mut closed = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io)? {
            let item = item.map_err(io)?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("spool-") && name.ends_with(".jsonl") {
                let size = item.metadata().map_err(io)?.len();
                closed.push((item.path(), size));
            }
        }
        closed.sort();
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            total: closed.iter().map(|(_, size)| size).sum(),
            closed: closed.into(),
            active: None,
            loaded: None,
            corrupt: 0,
        })
    }

    /// Whether nothing is waiting for replay.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_none() && self.closed.is_empty() && self.active.is_none()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// The highest sequence number in the spool (0 when empty), so a restarted writer
    /// never reuses one. Reads the newest segment.
    pub fn max_seq(&self) -> Result<u64, SpoolError> {
        let Some((path, _)) = self.closed.back() else {
            return Ok(0);
        };
        let text = std::fs::read_to_string(path).map_err(|source| SpoolError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(text
            .lines()
            .filter_map(Entry::from_line)
            .map(|entry| entry.seq)
            .max()
            .unwrap_or(0))
    }

    /// Appends a batch and fsyncs it, or refuses it whole if the spool is full.
    pub fn append(&mut self, entries: &[Entry]) -> Result<Appended, SpoolError> {
        let Some(first) = entries.first() else {
            return Ok(Appended::Stored);
        };
        let mut bytes = Vec::new();
        for entry in entries {
            bytes.extend_from_slice(entry.json.as_bytes());
            bytes.push(b'\n');
        }
        let len = bytes.len() as u64;
        if self.total.saturating_add(len) > self.max_bytes {
            return Ok(Appended::Full);
        }
        if self.active.as_ref().is_some_and(|a| a.size >= SEGMENT_MAX) {
            self.close_active();
        }
        let mut active = match self.active.take() {
            Some(active) => active,
            None => create_segment(&self.dir, first.seq)?,
        };
        let written = active
            .file
            .write_all(&bytes)
            .and_then(|()| active.file.sync_data());
        match written {
            Ok(()) => {
                active.size += len;
                self.total += len;
                self.active = Some(active);
                Ok(Appended::Stored)
            }
            Err(source) => {
                // The segment may end in a torn line: close it so the next batch starts a
                // fresh file instead of being glued onto the torn one.
                let path = active.path.clone();
                self.closed.push_back((active.path, active.size));
                Err(SpoolError::Io { path, source })
            }
        }
    }

    /// The next records to replay, oldest first, up to `max` (empty when the spool is empty).
    /// They stay in the spool until [`Spool::confirm`].
    pub fn peek(&mut self, max: usize) -> Result<&[Entry], SpoolError> {
        loop {
            if let Some(loaded) = &self.loaded {
                if loaded.pos < loaded.entries.len() {
                    break;
                }
                self.finish_loaded()?;
                continue;
            }
            if self.closed.is_empty() {
                self.close_active();
            }
            let Some((path, size)) = self.closed.pop_front() else {
                return Ok(&[]);
            };
            let text = std::fs::read(&path).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&text);
            let mut entries = Vec::new();
            for line in text.split_terminator('\n') {
                match Entry::from_line(line) {
                    Some(entry) => entries.push(entry),
                    None => self.corrupt += 1,
                }
            }
            self.loaded = Some(Loaded {
                path,
                size,
                entries,
                pos: 0,
            });
        }
        Ok(match &self.loaded {
            Some(loaded) => {
                let end = loaded.entries.len().min(loaded.pos.saturating_add(max));
                &loaded.entries[loaded.pos..end]
            }
            None => &[],
        })
    }

    /// Marks the first `n` peeked records as confirmed; deletes a segment once all are.
    pub fn confirm(&mut self, n: usize) -> Result<(), SpoolError> {
        if let Some(loaded) = &mut self.loaded {
            loaded.pos = loaded.entries.len().min(loaded.pos.saturating_add(n));
            if loaded.pos == loaded.entries.len() {
                self.finish_loaded()?;
            }
        }
        Ok(())
    }

    /// Lines that could not be read back since the last call (torn writes after a crash).
    pub fn take_corrupt(&mut self) -> u64 {
        std::mem::take(&mut self.corrupt)
    }

    fn close_active(&mut self) {
        if let Some(active) = self.active.take() {
            self.closed.push_back((active.path, active.size));
        }
    }

    fn finish_loaded(&mut self) -> Result<(), SpoolError> {
        if let Some(loaded) = self.loaded.take() {
            match std::fs::remove_file(&loaded.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    let path = loaded.path.clone();
                    self.loaded = Some(loaded);
                    return Err(SpoolError::Io { path, source });
                }
            }
            self.total = self.total.saturating_sub(loaded.size);
        }
        Ok(())
    }
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<Active, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("spool-{first_seq:020}.jsonl"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| SpoolError::Io {
            path: path.clone(),
            source,
        })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Active { path, file, size })
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
