//! The audit log's error: why it could not be opened or written.

use std::path::PathBuf;

use super::seq::SeqError;
use super::spool::SpoolError;

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
    /// The target is misconfigured; the message says what to change.
    #[error("audit: {0}")]
    Config(String),
    /// The outage spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The sequence counter could not be loaded.
    #[error(transparent)]
    Seq(#[from] SeqError),
    /// The writer task failed.
    #[error("audit: writer stopped: {0}")]
    Writer(String),
}
