//! `GET /v1/audit/stream`: the audit log as server-sent events, for the dashboard.
//!
//! Each record is one event, `data:` its JSON; the last event of each batch carries the
//! cursor as its `id:`, so a client that reconnects with `?after=<id>` misses nothing and
//! repeats nothing. Without `after` the stream opens with the newest [`BACKLOG`] records. A
//! `: keep-alive` comment goes out after [`KEEP_ALIVE`] without records, so the client can
//! tell a quiet node from a dead connection.
//!
//! Built on the same reader as `GET /v1/audit` (`follow`), so the file and Redis Stream
//! targets behave alike; a stream keeps one Redis connection for its life, however busy the
//! log. At most [`MAX_STREAMS`] are open at once (503 beyond). The stream is a body the
//! connection polls: a client that goes away drops it, and nothing keeps running for it.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::StreamBody;
use hyper::body::Frame;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::audit::{AuditRecords, Reader};
use super::sessions::Failure;
use crate::audit::AuditQuery;
use crate::daemon::Node;

/// Records sent first when the client gives no cursor.
pub const BACKLOG: usize = 200;
/// Longest silence before a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most records sent in one batch.
const BATCH: usize = 500;
/// Most streams open at once on this node (each may hold a Redis connection).
pub const MAX_STREAMS: usize = 64;

/// The open streams' permits.
fn streams() -> &'static Arc<Semaphore> {
    static STREAMS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    STREAMS.get_or_init(|| Arc::new(Semaphore::new(MAX_STREAMS)))
}

/// Parameters of the stream (`session`, `kind`, `after`).
pub fn parse(query: &str) -> Result<AuditQuery, Failure> {
    let mut q = AuditQuery {
        limit: BACKLOG,
        ..AuditQuery::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decoded(value).ok_or_else(|| bad(key, "is not valid percent-encoded UTF-8"))?;
        match key {
            "session" => q.session = Some(value),
            "kind" => q.kind = Some(value),
            "after" => q.after = Some(value),
            _ => return Err(bad(key, "unknown parameter (session, kind, after)")),
        }
    }
    Ok(q)
}

fn bad(key: &str, what: &str) -> Failure {
    (StatusCode::BAD_REQUEST, format!("query `{key}`: {what}"))
}

fn percent_decoded(value: &str) -> Option<String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// The event stream for `query`. The first page is read before answering, so a bad cursor
/// or an unreachable audit log is an HTTP error, not a stream that ends at once.
pub async fn open(
    node: Arc<Node>,
    query: AuditQuery,
) -> Result<StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>>, Failure>
{
    let permit = streams().clone().try_acquire_owned().map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("audit stream: {MAX_STREAMS} streams are open on this node already; close one"),
        )
    })?;
    let mut reader = Reader::new(KEEP_ALIVE);
    let first = reader.read(&node, &query, None).await?;
    let mut head = String::from(": sluice audit stream\n\n");
    push_events(&mut head, &first);
    let state = Follow {
        node,
        query: AuditQuery {
            after: Some(first.next),
            limit: BATCH,
            ..query
        },
        head: Some(Bytes::from(head)),
        reader,
        _permit: permit,
    };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok(Frame::data(chunk)), state))
    });
    Ok(StreamBody::new(frames))
}

/// Where a stream is: its node, its filters and cursor, and what it has not sent yet.
struct Follow {
    node: Arc<Node>,
    query: AuditQuery,
    head: Option<Bytes>,
    reader: Reader,
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    /// The next bytes to send; `None` ends the stream (the audit log failed: the client
    /// reconnects from its last id and sees the error then).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        match self
            .reader
            .read(&self.node, &self.query, Some(KEEP_ALIVE))
            .await
        {
            Ok(page) if page.records.is_empty() => {
                self.query.after = Some(page.next);
                Some(Bytes::from_static(b": keep-alive\n\n"))
            }
            Ok(page) => {
                let mut out = String::new();
                push_events(&mut out, &page);
                self.query.after = Some(page.next);
                Some(Bytes::from(out))
            }
            Err((_, error)) => {
                tracing::warn!(%error, "audit stream: reading the log failed; closing the stream");
                None
            }
        }
    }
}

/// Appends one event per record, the cursor on the last.
fn push_events(out: &mut String, page: &AuditRecords) {
    let last = page.records.len().saturating_sub(1);
    for (i, record) in page.records.iter().enumerate() {
        if i == last {
            let _ = writeln!(out, "id: {}", page.next);
        }
        // serde_json never writes a raw newline, so one `data:` line holds the record.
        let _ = write!(out, "data: {record}\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_unknown_ones_refused() {
        let q = parse("session=ses_a%2Db&kind=request&after=12").unwrap();
        assert_eq!(q.session.as_deref(), Some("ses_a-b"));
        assert_eq!(q.kind.as_deref(), Some("request"));
        assert_eq!(q.after.as_deref(), Some("12"));
        assert_eq!(q.limit, BACKLOG);
        let (status, message) = parse("follow=5").unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("`follow`"), "{message}");
        assert!(parse("session=%FF").is_err());
    }

    #[test]
    fn each_record_is_one_event_and_the_last_carries_the_cursor() {
        let page = AuditRecords {
            records: vec![
                serde_json::json!({"kind": "request", "url": "https://a.test/x\ny"}),
                serde_json::json!({"kind": "dns"}),
            ],
            next: "7-0".into(),
        };
        let mut out = String::new();
        push_events(&mut out, &page);
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{out}");
        assert!(events[0].starts_with("data: {") && !events[0].contains("id:"));
        assert!(events[1].starts_with("id: 7-0\ndata: {"), "{}", events[1]);
        for event in events {
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            serde_json::from_str::<serde_json::Value>(data).unwrap();
        }
    }
}
