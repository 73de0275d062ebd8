//! The front of the audit log: records go over a channel to one writer, for a JSONL file or a
//! Redis stream.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use super::counters::Counters;
use super::error::AuditError;
use super::redis_stream::{self, RedisTarget};
use super::{Decision, Kind, Record};

/// How long the file writer lingers after writing a batch before it waits again. Under load
/// the records of that moment queue without waking it (one wake and one `write` per batch,
/// not per record: a wake per request cost a futex call each way and a context switch);
/// a lone record is still written at once.
const FILE_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Default bound on the Redis writer's outage spool: 1 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// Where records are stored.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Append JSON lines to a local file: the embedded default, no `seq`/`node` stamped.
    File {
        /// The JSONL file (created with mode 0640).
        path: PathBuf,
    },
    /// Append to a Redis stream shared by the nodes; records are NOT also written to a file
    /// (the stream is the log, the spool only a buffer for outages).
    ///
    /// For Redis Cluster put a hash tag in `stream_key` (`{sluice}:audit`), so the stream and
    /// the per-node `last_seq` key share a slot. Neither key may be evicted
    /// (`maxmemory-policy noeviction` or `volatile-*`): without `last_seq` a retried batch
    /// could duplicate.
    Redis {
        /// `redis://[:password@]host:port/db` or `redis+unix:///path`.
        ///
        /// # Security
        /// May hold a password: never logged, and redacted in `Debug`.
        url: String,
        /// The stream's key.
        stream_key: String,
        /// Approximate bound on the stream's length (`XADD MAXLEN ~`); must be above 0.
        max_len: u64,
        /// Directory (mode 0700) for the outage spool, the sequence counter and a lock; one
        /// per node, on local disk.
        spool_dir: PathBuf,
        /// Bound on the spool's size in bytes. When full, new records are dropped (counted
        /// and logged) and the oldest kept. Default is [`DEFAULT_SPOOL_MAX_BYTES`].
        spool_max_bytes: u64,
        /// This node's id, unique among the nodes sharing the stream.
        node_id: String,
    },
}

impl std::fmt::Debug for AuditTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditTarget::File { path } => f.debug_struct("File").field("path", path).finish(),
            AuditTarget::Redis {
                url: _,
                stream_key,
                max_len,
                spool_dir,
                spool_max_bytes,
                node_id,
            } => f
                .debug_struct("Redis")
                .field("url", &"<redacted>")
                .field("stream_key", stream_key)
                .field("max_len", max_len)
                .field("spool_dir", spool_dir)
                .field("spool_max_bytes", spool_max_bytes)
                .field("node_id", node_id)
                .finish(),
        }
    }
}

/// A cheap, cloneable handle that queues records for the writer.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Record>,
    counters: Arc<Counters>,
}

/// The writer task; [`AuditWriter::finish`] waits for the queue to drain.
#[derive(Debug)]
pub struct AuditWriter {
    task: tokio::task::JoinHandle<()>,
}

impl AuditLog {
    /// Opens (appending, creating with mode 0640) the JSONL file and starts the writer task.
    pub fn open(path: &Path) -> Result<(AuditLog, AuditWriter), AuditError> {
        AuditLog::start(AuditTarget::File {
            path: path.to_path_buf(),
        })
    }

    /// Starts the writer for `target`. Must be called inside a Tokio runtime.
    ///
    /// A Redis target is checked here (URL, key, bound, node id, spool dir and its lock) but
    /// not contacted: an unreachable Redis only means records spool until it answers.
    pub fn start(target: AuditTarget) -> Result<(AuditLog, AuditWriter), AuditError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let task = match target {
            AuditTarget::File { path } => {
                let file = open_file(&path)?;
                let counters = counters.clone();
                tokio::task::spawn_blocking(move || write_loop(file, rx, &counters))
            }
            AuditTarget::Redis {
                url,
                stream_key,
                max_len,
                spool_dir,
                spool_max_bytes,
                node_id,
            } => {
                let target = RedisTarget {
                    url,
                    stream_key,
                    max_len,
                    spool_dir,
                    spool_max_bytes,
                    node_id,
                };
                redis_stream::spawn(target, rx, counters.clone())?
            }
        };
        Ok((AuditLog { tx, counters }, AuditWriter { task }))
    }

    /// Queues a record, stamping its time. Never blocks, whatever the store is doing.
    pub fn write(&self, mut record: Record) {
        record.time = now_rfc3339();
        if record.kind == Kind::Request {
            Counters::add(&self.counters.requests, 1);
        }
        if record.decision == Decision::Deny {
            Counters::add(&self.counters.refusals, 1);
        }
        if self.tx.send(record).is_err() {
            Counters::add(&self.counters.dropped, 1);
            tracing::error!("audit: writer has stopped; a record was not written");
        }
    }

    /// Records that reached the file or were confirmed by Redis (replayed ones included).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Records put in the outage spool because Redis did not answer (or was still behind).
    pub fn spooled(&self) -> u64 {
        self.counters.spooled.load(Ordering::Relaxed)
    }

    /// Spooled records later confirmed by Redis.
    pub fn replayed(&self) -> u64 {
        self.counters.replayed.load(Ordering::Relaxed)
    }

    /// Intercepted HTTP requests recorded, whatever their decision.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Refusals recorded (decision `deny`: requests, connections and DNS queries).
    pub fn refusals(&self) -> u64 {
        self.counters.refusals.load(Ordering::Relaxed)
    }

    /// Records lost: spool full or failing, unwritable file, writer stopped. Alert on it.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl AuditWriter {
    /// Waits until every queued record is written (all [`AuditLog`] handles must be dropped).
    /// In Redis mode, records Redis does not take at that point stay in the spool for the
    /// next start.
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

fn open_file(path: &Path) -> Result<std::fs::File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(io)
}

fn write_loop(file: std::fs::File, mut rx: mpsc::UnboundedReceiver<Record>, counters: &Counters) {
    let mut out = std::io::BufWriter::new(file);
    while let Some(record) = rx.blocking_recv() {
        let mut batch = vec![record];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut lines = 0;
        let mut line = Vec::with_capacity(512);
        for record in &batch {
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut line, record) {
                tracing::error!(error = %e, "audit: cannot serialize a record");
                Counters::add(&counters.dropped, 1);
                continue;
            }
            line.push(b'\n');
            match out.write_all(&line) {
                Ok(()) => lines += 1,
                Err(e) => {
                    tracing::error!(error = %e, "audit: write failed");
                    Counters::add(&counters.dropped, 1);
                }
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "audit: flush failed");
        }
        Counters::add(&counters.written, lines);
        std::thread::sleep(FILE_LINGER);
    }
}
