//! The Redis writer: batches records into a stream with one idempotent script call per batch,
//! and spools to disk while Redis does not answer.
//!
//! The writer runs on its own thread with a small runtime of its own, so the spool's fsyncs
//! never stall the daemon's workers and the data path only ever pays for a channel send.
//!
//! Order is the invariant everything rests on: sequence numbers are stamped here, by the one
//! consumer of the channel, and reach Redis in increasing order: while anything is spooled,
//! new batches go behind it into the spool, and replay drains the spool oldest first. The
//! script skips every record whose number is not above the node's `last_seq`, so a batch sent
//! again after an ambiguous failure (the reply was lost, the call timed out) never duplicates.
//!
//! # Security
//! The Redis URL may hold a password: it is never logged nor put in an error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::Record;
use super::counters::Counters;
use super::entry::Entry;
use super::error::AuditError;
use super::script::{StreamError, append_batch, append_script, connect, last_seq_key};
use super::seq::SeqCounter;
use super::spool::{Appended, Spool};

/// Most records per script call.
const BATCH_MAX: usize = 256;
/// How long a batch waits to fill after its first record.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How often a batch being collected looks for more records.
const COLLECT_STEP: Duration = Duration::from_millis(2);
/// Bound on one connect or one script call.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the last batch at shutdown; after it the batch is spooled for the next start.
const FINAL_TIMEOUT: Duration = Duration::from_millis(500);
/// First and longest wait between attempts to reach Redis again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Spool chunks replayed before the writer looks at new records again.
const REPLAY_TURN: usize = 8;

/// Where the Redis writer sends records (see [`AuditTarget::Redis`](super::AuditTarget)).
#[derive(Clone)]
pub(super) struct RedisTarget {
    pub url: String,
    pub stream_key: String,
    pub max_len: u64,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub node_id: String,
}

/// Checks the target, takes the spool lock, loads spool and counter, and starts the writer.
pub(super) fn spawn(
    target: RedisTarget,
    rx: UnboundedReceiver<Record>,
    counters: Arc<Counters>,
) -> Result<tokio::task::JoinHandle<()>, AuditError> {
    let invalid = |what: &str| AuditError::Config(what.to_owned());
    if target.stream_key.is_empty() {
        return Err(invalid("the Redis stream key is empty"));
    }
    if target.node_id.is_empty() {
        return Err(invalid("the node id is empty; give each node a unique one"));
    }
    if target.max_len == 0 {
        return Err(invalid("the stream's max length is 0; give it a bound"));
    }
    let client = redis::Client::open(target.url.as_str()).map_err(|_| {
        invalid("the Redis URL is not valid (redis://host:port/db or redis+unix:///path)")
    })?;
    let spool = Spool::open(&target.spool_dir, target.spool_max_bytes)?;
    let lock = lock_spool(&target.spool_dir)?;
    let floor = spool.max_seq()?.saturating_add(1);
    let seq = SeqCounter::open(&target.spool_dir.join("seq"), floor)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Writer(format!("cannot start the writer's runtime: {e}")))?;
    let writer = Writer {
        client,
        conn: None,
        script: append_script(),
        last_key: last_seq_key(&target.stream_key, &target.node_id),
        target,
        seq,
        spool,
        counters,
        retry_at: Instant::now(),
        backoff: RETRY_MIN,
        outage: false,
        dropping: 0,
        _lock: lock,
    };
    Ok(tokio::task::spawn_blocking(move || {
        runtime.block_on(writer.run(rx));
    }))
}

struct Writer {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    script: redis::Script,
    last_key: String,
    target: RedisTarget,
    seq: SeqCounter,
    spool: Spool,
    counters: Arc<Counters>,
    /// When to try Redis again while the spool is not empty.
    retry_at: Instant,
    backoff: Duration,
    /// Whether the last attempt failed (for one log line per outage).
    outage: bool,
    /// Records dropped since the spool filled (for one log line per episode).
    dropping: u64,
    _lock: Flock<std::fs::File>,
}

impl Writer {
    async fn run(mut self, mut rx: UnboundedReceiver<Record>) {
        self.sync_seq().await;
        loop {
            let first = if self.spool.is_empty() {
                rx.recv().await
            } else {
                tokio::select! {
                    record = rx.recv() => record,
                    () = tokio::time::sleep_until(self.retry_at) => {
                        self.replay().await;
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let (batch, closed) = collect(first, &mut rx).await;
            let entries = self.stamp(batch);
            let limit = if closed { FINAL_TIMEOUT } else { OP_TIMEOUT };
            self.dispatch(entries, limit).await;
            if closed {
                break;
            }
            if !self.spool.is_empty() && Instant::now() >= self.retry_at {
                self.replay().await;
            }
        }
        if let Err(e) = self.seq.close() {
            tracing::error!(error = %e, "audit: cannot save the sequence counter");
        }
        if !self.spool.is_empty() {
            tracing::warn!(
                bytes = self.spool.bytes(),
                dir = %self.target.spool_dir.display(),
                "audit: records left in the spool; they are replayed at the next start"
            );
        }
    }

    /// Makes sure new numbers are above what Redis already has from this node (a lost
    /// counter file, or a node id used twice, would otherwise get records skipped).
    async fn sync_seq(&mut self) {
        let last = match connect(&self.client, &mut self.conn, OP_TIMEOUT).await {
            Ok(conn) => {
                let mut get = redis::cmd("GET");
                get.arg(&self.last_key);
                tokio::time::timeout(OP_TIMEOUT, get.query_async::<Option<u64>>(conn)).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit: Redis not reachable at start; records spool until it is");
                return;
            }
        };
        match last {
            Ok(Ok(Some(last))) if last >= self.seq.next() => {
                tracing::error!(
                    last,
                    next = self.seq.next(),
                    node = %self.target.node_id,
                    "audit: Redis has higher sequence numbers from this node than the counter; \
                     continuing after them (was the spool dir reset, or is the node id shared?)"
                );
                self.seq.raise_to(last.saturating_add(1));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.conn = None;
                tracing::warn!(error = %e, "audit: cannot read the node's last sequence number");
            }
            Err(_) => self.conn = None,
        }
    }

    fn stamp(&mut self, batch: Vec<Record>) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(batch.len());
        for mut record in batch {
            record.seq = self.seq.take();
            record.node.clone_from(&self.target.node_id);
            match Entry::from_record(&record) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::error!(error = %e, "audit: cannot serialize a record");
                    Counters::add(&self.counters.dropped, 1);
                }
            }
        }
        entries
    }

    /// Sends fresh records, or spools them behind older ones.
    async fn dispatch(&mut self, entries: Vec<Entry>, limit: Duration) {
        if entries.is_empty() {
            return;
        }
        if self.spool.is_empty() {
            match self.send(&entries, limit).await {
                Ok(added) => {
                    let n = entries.len() as u64;
                    if added < n {
                        // Fresh numbers that Redis already had: records lost, say so loudly.
                        tracing::error!(
                            skipped = n - added,
                            "audit: Redis skipped fresh records as already seen; is this node id shared?"
                        );
                        Counters::add(&self.counters.dropped, n - added);
                        self.sync_seq().await;
                    }
                    Counters::add(&self.counters.written, added);
                    return;
                }
                Err(e) => self.failed(&e),
            }
        }
        self.spool_batch(&entries);
    }

    fn spool_batch(&mut self, entries: &[Entry]) {
        let n = entries.len() as u64;
        match self.spool.append(entries) {
            Ok(Appended::Stored) => {
                Counters::add(&self.counters.spooled, n);
                if self.dropping > 0 {
                    tracing::error!(
                        dropped = self.dropping,
                        "audit: spool accepting records again"
                    );
                    self.dropping = 0;
                }
            }
            Ok(Appended::Full) => {
                if self.dropping == 0 {
                    tracing::error!(
                        bytes = self.spool.bytes(),
                        limit = self.target.spool_max_bytes,
                        "audit: spool full; DROPPING new records until Redis is back"
                    );
                }
                self.dropping += n;
                Counters::add(&self.counters.dropped, n);
            }
            Err(e) => {
                tracing::error!(error = %e, records = n, "audit: cannot spool; records DROPPED");
                Counters::add(&self.counters.dropped, n);
            }
        }
    }

    /// Replays spooled chunks, oldest first, until the spool is empty, Redis fails, or a turn
    /// is used up (so new records are taken in between).
    async fn replay(&mut self) {
        for _ in 0..REPLAY_TURN {
            let chunk = match self.spool.peek(BATCH_MAX) {
                Ok(chunk) => chunk.to_vec(),
                Err(e) => {
                    tracing::error!(error = %e, "audit: cannot read the spool");
                    self.retry_later();
                    return;
                }
            };
            let corrupt = self.spool.take_corrupt();
            if corrupt > 0 {
                tracing::error!(lines = corrupt, "audit: unreadable spool lines DROPPED");
                Counters::add(&self.counters.dropped, corrupt);
            }
            if chunk.is_empty() {
                tracing::info!("audit: spool replayed; writing to Redis directly again");
                return;
            }
            if let Err(e) = self.send(&chunk, OP_TIMEOUT).await {
                self.failed(&e);
                return;
            }
            let n = chunk.len();
            if let Err(e) = self.spool.confirm(n) {
                // Confirmed in Redis but still on disk: a later replay sends it again and the
                // script skips it.
                tracing::error!(error = %e, "audit: cannot remove a replayed spool segment");
                self.retry_later();
                return;
            }
            Counters::add(&self.counters.replayed, n as u64);
            Counters::add(&self.counters.written, n as u64);
        }
        self.retry_at = Instant::now();
    }

    /// Runs the script for one batch under `limit`; returns how many records were new.
    async fn send(&mut self, entries: &[Entry], limit: Duration) -> Result<u64, StreamError> {
        let conn = connect(&self.client, &mut self.conn, limit).await?;
        let keys = (self.target.stream_key.as_str(), self.last_key.as_str());
        let call = append_batch(
            &self.script,
            conn,
            keys,
            self.target.max_len,
            &self.target.node_id,
            entries,
        );
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(StreamError::Redis),
            Err(_) => Err(StreamError::Timeout(limit)),
        };
        match &result {
            Ok(_) => self.recovered(),
            Err(_) => self.conn = None,
        }
        result
    }

    fn failed(&mut self, error: &StreamError) {
        if !self.outage {
            tracing::warn!(
                error = %error,
                spool = %self.target.spool_dir.display(),
                "audit: Redis unreachable; spooling records until it answers"
            );
            self.outage = true;
            self.backoff = RETRY_MIN;
        }
        self.retry_later();
    }

    fn retry_later(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    fn recovered(&mut self) {
        if self.outage {
            tracing::info!("audit: Redis answers again; replaying the spool");
            self.outage = false;
        }
        self.backoff = RETRY_MIN;
    }
}

/// Takes more records after `first` until the batch is full or its window closes; also says
/// whether the channel has closed (every [`AuditLog`](super::AuditLog) dropped).
///
/// Records are taken in steps of [`COLLECT_STEP`], not awaited one by one: under load a
/// wake per record (a futex call each way) cost more than writing it.
async fn collect(first: Record, rx: &mut UnboundedReceiver<Record>) -> (Vec<Record>, bool) {
    use tokio::sync::mpsc::error::TryRecvError;
    let mut batch = vec![first];
    let deadline = Instant::now() + BATCH_WINDOW;
    loop {
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(record) => batch.push(record),
                Err(TryRecvError::Disconnected) => return (batch, true),
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if batch.len() >= BATCH_MAX || now >= deadline {
            return (batch, false);
        }
        tokio::time::sleep_until((now + COLLECT_STEP).min(deadline)).await;
    }
}

/// One writer per spool directory: a second one would interleave segments and numbers.
fn lock_spool(dir: &std::path::Path) -> Result<Flock<std::fs::File>, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| AuditError::Open {
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        AuditError::Config(format!(
            "the spool dir {} is in use by another writer; give each node its own",
            dir.display()
        ))
    })
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
