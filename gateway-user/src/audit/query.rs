//! Reading records back, for `sluice audit` and the control API.
//!
//! Both stores answer the same [`AuditQuery`] with an [`AuditPage`]: the matching records,
//! oldest first, and an opaque cursor to continue from. Without a cursor the newest `limit`
//! matches come back; with one, the oldest `limit` matches after it (paging forward and
//! following use the same call). File cursors are byte offsets, Redis cursors stream ids.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Most records one query returns.
pub const MAX_LIMIT: usize = 10_000;
/// Most stream entries one Redis query looks at, so a rare session cannot make it unbounded.
const MAX_SCAN: usize = 100_000;
/// Entries fetched per Redis round trip.
const PAGE: usize = 500;
/// Longest wait a follow call accepts.
pub const MAX_FOLLOW: Duration = Duration::from_secs(60);
/// How often a file is polled while following.
const FILE_POLL: Duration = Duration::from_millis(200);

/// What to read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records of this session.
    pub session: Option<String>,
    /// Only records of this kind (`connection`, `dns`, `request`, `sandbox`, `config`).
    pub kind: Option<String>,
    /// Only records after this cursor (from an earlier [`AuditPage::next`]); `None` for the
    /// newest records.
    pub after: Option<String>,
    /// Most records to return; capped at [`MAX_LIMIT`].
    pub limit: usize,
}

/// One page of records, oldest first, and where to continue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditPage {
    /// The records as stored (JSON objects).
    pub records: Vec<Value>,
    /// Pass as [`AuditQuery::after`] to get what comes next.
    pub next: String,
}

/// Why records could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The audit file could not be read.
    #[error("audit query: read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Redis refused or failed.
    #[error("audit query: redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("audit query: redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The cursor is not one this store handed out (or the file was rotated since).
    #[error("audit query: bad cursor {0:?}; start again without one")]
    BadCursor(String),
}

/// Whether a record passes the query's filters.
pub fn matches(query: &AuditQuery, record: &Value) -> bool {
    field_matches(query.session.as_deref(), record.get("session"))
        && field_matches(query.kind.as_deref(), record.get("kind"))
}

fn field_matches(want: Option<&str>, have: Option<&Value>) -> bool {
    match want {
        None => true,
        Some(want) => have.and_then(Value::as_str) == Some(want),
    }
}

/// Reads matching records from a JSONL file. A partial last line (being written) is left for
/// the next call; a line that is not JSON is skipped.
pub fn query_file(path: &Path, query: &AuditQuery) -> Result<AuditPage, QueryError> {
    let io = |source| QueryError::File {
        path: path.to_path_buf(),
        source,
    };
    let limit = query.limit.min(MAX_LIMIT);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let start = match &query.after {
        None => 0,
        Some(cursor) => {
            let offset: u64 = cursor
                .parse()
                .map_err(|_| QueryError::BadCursor(cursor.clone()))?;
            if offset > file.metadata().map_err(io)?.len() {
                return Err(QueryError::BadCursor(cursor.clone()));
            }
            file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
            offset
        }
    };
    let forward = query.after.is_some();
    let mut reader = std::io::BufReader::new(file);
    let mut records = std::collections::VecDeque::new();
    let mut offset = start;
    let mut line = Vec::new();
    loop {
        if forward && records.len() >= limit {
            break;
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // end, or a partial line still being written
        }
        offset += n as u64;
        let Ok(record) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if matches(query, &record) {
            records.push_back(record);
            if !forward && records.len() > limit {
                records.pop_front();
            }
        }
    }
    Ok(AuditPage {
        records: records.into(),
        next: offset.to_string(),
    })
}

/// Waits up to `wait` (capped at [`MAX_FOLLOW`]) for matching records after the cursor in a
/// JSONL file; returns an empty page with the same cursor when none came.
pub async fn follow_file(
    path: &Path,
    query: &AuditQuery,
    wait: Duration,
) -> Result<AuditPage, QueryError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_FOLLOW);
    let mut query = query.clone();
    if query.after.is_none() {
        let tail = AuditQuery {
            limit: 0,
            ..query.clone()
        };
        query.after = Some(query_file(path, &tail)?.next);
    }
    loop {
        let page = query_file(path, &query)?;
        if !page.records.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(page);
        }
        query.after = Some(page.next);
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// Whether `cursor` is a stream id (`<ms>-<n>`), the only thing accepted as a range bound.
pub fn valid_stream_id(cursor: &str) -> bool {
    let mut parts = cursor.split('-');
    let number =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

/// Reads matching records from a stream. Looks at no more than a bounded number of entries;
/// when that runs out the page may be short, and its cursor continues the scan.
pub async fn query_redis<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream_key: &str,
    query: &AuditQuery,
) -> Result<AuditPage, QueryError> {
    let limit = query.limit.min(MAX_LIMIT);
    match &query.after {
        Some(cursor) => {
            if !valid_stream_id(cursor) {
                return Err(QueryError::BadCursor(cursor.clone()));
            }
            let mut records = Vec::new();
            let mut next = cursor.clone();
            let mut scanned = 0;
            while records.len() < limit && scanned < MAX_SCAN {
                let ids = range(conn, "XRANGE", stream_key, &format!("({next}"), "+").await?;
                scanned += ids.len();
                for id in &ids {
                    next.clone_from(&id.id);
                    if let Some(record) = decode(query, id) {
                        records.push(record);
                        if records.len() >= limit {
                            break;
                        }
                    }
                }
                if ids.len() < PAGE {
                    break; // the end of the stream
                }
            }
            Ok(AuditPage { records, next })
        }
        None => {
            let mut records = Vec::new();
            let mut newest = None;
            let mut before = "+".to_owned();
            let mut scanned = 0;
            while records.len() < limit && scanned < MAX_SCAN {
                let ids = range(conn, "XREVRANGE", stream_key, &before, "-").await?;
                scanned += ids.len();
                for id in &ids {
                    newest.get_or_insert_with(|| id.id.clone());
                    if let Some(record) = decode(query, id) {
                        records.push(record);
                        if records.len() >= limit {
                            break;
                        }
                    }
                }
                match ids.last() {
                    Some(last) if ids.len() == PAGE => before = format!("({}", last.id),
                    _ => break,
                }
            }
            let next = match newest {
                Some(id) => id,
                None => newest_id(conn, stream_key).await?,
            };
            records.reverse();
            Ok(AuditPage { records, next })
        }
    }
}

/// Waits up to `wait` (capped at [`MAX_FOLLOW`]) for matching records after the cursor with
/// `XREAD BLOCK`; returns an empty page with the cursor moved past whatever did not match.
/// The connection's response timeout must be longer than `wait`.
pub async fn follow_redis<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream_key: &str,
    query: &AuditQuery,
    wait: Duration,
) -> Result<AuditPage, QueryError> {
    let wait = wait.min(MAX_FOLLOW);
    let deadline = tokio::time::Instant::now() + wait;
    let mut next = match &query.after {
        Some(cursor) if valid_stream_id(cursor) => cursor.clone(),
        Some(cursor) => return Err(QueryError::BadCursor(cursor.clone())),
        None => newest_id(conn, stream_key).await?,
    };
    let limit = query.limit.clamp(1, MAX_LIMIT);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let block_ms = left.as_millis().max(1);
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(limit)
            .arg("BLOCK")
            .arg(block_ms as u64)
            .arg("STREAMS")
            .arg(stream_key)
            .arg(&next);
        let read = read.query_async::<Option<redis::streams::StreamReadReply>>(conn);
        let bound = left + Duration::from_secs(2);
        let reply = tokio::time::timeout(bound, read)
            .await
            .map_err(|_| QueryError::Timeout(bound))??;
        let mut records = Vec::new();
        for id in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            next.clone_from(&id.id);
            records.extend(decode(query, &id));
        }
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(AuditPage { records, next });
        }
    }
}

async fn range<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    command: &str,
    key: &str,
    from: &str,
    to: &str,
) -> Result<Vec<redis::streams::StreamId>, QueryError> {
    let reply: redis::streams::StreamRangeReply = redis::cmd(command)
        .arg(key)
        .arg(from)
        .arg(to)
        .arg("COUNT")
        .arg(PAGE)
        .query_async(conn)
        .await?;
    Ok(reply.ids)
}

/// The newest entry's id, or `0-0` for an empty stream (so following gets everything).
async fn newest_id<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<String, QueryError> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |id| id.id))
}

/// The entry's record when its `session`/`kind` fields pass the filters.
fn decode(query: &AuditQuery, id: &redis::streams::StreamId) -> Option<Value> {
    let field = |name: &str| id.get::<String>(name);
    let wanted = |want: &Option<String>, name: &str| match want {
        None => true,
        Some(want) => field(name).as_deref() == Some(want.as_str()),
    };
    if !wanted(&query.session, "session") || !wanted(&query.kind, "kind") {
        return None;
    }
    serde_json::from_str(&field("record")?).ok()
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
