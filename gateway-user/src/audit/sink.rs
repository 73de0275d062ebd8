//! The writer: records go over a channel to one task that appends JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use super::Record;

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be opened.
    #[error("audit: open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The writer task failed.
    #[error("audit: writer stopped: {0}")]
    Writer(String),
}

/// A cheap, cloneable handle that queues records for the writer.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Record>,
    written: Arc<AtomicU64>,
}

/// The task appending records to the file; [`AuditWriter::finish`] waits for the queue to drain.
#[derive(Debug)]
pub struct AuditWriter {
    task: tokio::task::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (appending, creating with mode 0640) the JSONL file and starts the writer task.
    pub fn open(path: &Path) -> Result<(AuditLog, AuditWriter), AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let written = Arc::new(AtomicU64::new(0));
        let task = tokio::task::spawn_blocking({
            let written = written.clone();
            move || write_loop(file, rx, &written)
        });
        Ok((AuditLog { tx, written }, AuditWriter { task }))
    }

    /// Queues a record, stamping its time. Never blocks.
    pub fn write(&self, mut record: Record) {
        record.time = now_rfc3339();
        if self.tx.send(record).is_err() {
            tracing::error!("audit: writer has stopped; a record was not written");
        }
    }

    /// How many records have reached the file so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

impl AuditWriter {
    /// Waits until every queued record is written (all [`AuditLog`] handles must be dropped).
    pub async fn finish(self) -> Result<(), AuditError> {
        self.task
            .await
            .map_err(|e| AuditError::Writer(e.to_string()))
    }
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

fn write_loop(file: std::fs::File, mut rx: mpsc::UnboundedReceiver<Record>, written: &AtomicU64) {
    let mut out = std::io::BufWriter::new(file);
    while let Some(record) = rx.blocking_recv() {
        let mut batch = vec![record];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for record in &batch {
            let line = match serde_json::to_string(record) {
                Ok(line) => line,
                Err(e) => {
                    tracing::error!(error = %e, "audit: cannot serialize a record");
                    continue;
                }
            };
            if let Err(e) = writeln!(out, "{line}") {
                tracing::error!(error = %e, "audit: write failed");
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "audit: flush failed");
        }
        written.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}
