//! Streaming bodies that count bytes, and the per-request audit guard that rides on the
//! response body so the record is written when the response is really over.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::hook::{Refusal, RefusalSlot, SharedNotes, leave_refusal};
use crate::audit::{AuditLog, Decision, Outcome, Record, Side};
use crate::conn::Conn;
use crate::upstream::BoxError;

/// The body type the engine sends (both directions).
pub(super) type BoxBody = crate::upstream::Body;

/// Byte counters of one connection (shared by its requests and upgrades).
#[derive(Debug, Default)]
pub(super) struct ConnCounters {
    /// Requests that arrived.
    pub(super) requests: AtomicU64,
    /// Requests whose response is over (or was given up on): fewer than `requests` while
    /// one is in flight.
    pub(super) answered: AtomicU64,
    /// Times the connection was parked while idle (HTTP/1.1; see `park`).
    pub(super) parks: AtomicU64,
    /// Signalled whenever a request is answered (wakes a connection waiting to park).
    pub(super) answer: tokio::sync::Notify,
    pub(super) up: AtomicU64,
    pub(super) down: AtomicU64,
}

impl ConnCounters {
    /// Counts a request as answered, waking a connection waiting to park.
    pub(super) fn count_answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.answer.notify_one();
    }
}

/// The record of a connection that carries one request (an absolute-form request to the
/// explicit proxy), written with the bytes of its requests when this is dropped.
#[derive(Debug)]
pub(super) struct ConnEnd {
    conn: Conn,
    counters: Arc<ConnCounters>,
}

impl ConnEnd {
    pub(super) fn new(conn: Conn, counters: Arc<ConnCounters>) -> ConnEnd {
        ConnEnd { conn, counters }
    }

    /// `body`, which writes the record when it is dropped (after its own request record).
    pub(super) fn on_end_of(self, body: BoxBody) -> BoxBody {
        Closing { body, _end: self }.boxed_unsync()
    }
}

impl Drop for ConnEnd {
    fn drop(&mut self) {
        let up = self.counters.up.load(Ordering::Relaxed);
        let down = self.counters.down.load(Ordering::Relaxed);
        self.conn.audit.add_bytes(up, down);
        self.conn.audit.end(Outcome::allowed());
    }
}

/// A response body carrying its connection's record. Fields drop in order: the body (and
/// the request's record in it, which adds its bytes to the counters) before the end.
struct Closing {
    body: BoxBody,
    _end: ConnEnd,
}

impl Body for Closing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Writes one request record when dropped (also when the request is cancelled).
#[derive(Debug)]
pub(super) struct RequestAudit {
    log: AuditLog,
    record: Record,
    started: Instant,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    conn: Arc<ConnCounters>,
    decided: bool,
    body_done: bool,
    notes: Option<SharedNotes>,
}

impl RequestAudit {
    /// Starts the record of the next request on `conn` (numbered from 1).
    pub(super) fn start(log: &AuditLog, mut record: Record, conn: Arc<ConnCounters>) -> Self {
        record.request = Some(conn.requests.fetch_add(1, Ordering::Relaxed) + 1);
        RequestAudit {
            log: log.clone(),
            record,
            started: Instant::now(),
            up: Arc::default(),
            down: Arc::default(),
            conn,
            decided: false,
            body_done: true,
            notes: None,
        }
    }

    pub(super) fn record_mut(&mut self) -> &mut Record {
        &mut self.record
    }

    /// Facts the request hook and its filters gather; copied into the record when written.
    pub(super) fn attach_notes(&mut self, notes: SharedNotes) {
        self.notes = Some(notes);
    }

    /// The counter of request body bytes.
    pub(super) fn up(&self) -> Arc<AtomicU64> {
        self.up.clone()
    }

    /// The counter of response body bytes.
    pub(super) fn down(&self) -> Arc<AtomicU64> {
        self.down.clone()
    }

    /// Sets the outcome (decision, side, reason) and the status sent to the sandbox. A
    /// response body still to stream is tracked by [`Counted`].
    pub(super) fn decide(&mut self, outcome: Outcome, status: u16) {
        self.record.decision = outcome.decision;
        self.record.side = outcome.side;
        self.record.reason = outcome.reason;
        self.record.status = Some(status);
        self.decided = true;
    }

    /// Notes why the request ended the way it did (without changing the decision).
    pub(super) fn set_reason(&mut self, reason: String) {
        self.record.reason = Some(reason);
    }

    fn body_started(&mut self) {
        self.body_done = false;
    }

    fn body_finished(&mut self, error: Option<String>) {
        self.body_done = true;
        if let Some(error) = error {
            self.record.reason = Some(format!("response body failed: {error}"));
        }
    }
}

impl Drop for RequestAudit {
    fn drop(&mut self) {
        if !self.decided {
            self.record.decision = Decision::Error;
            self.record.side = Some(Side::Gateway);
            self.record.reason = Some("closed without result".to_owned());
        } else if !self.body_done && self.record.reason.is_none() {
            self.record.reason = Some("response cut short (sandbox or upstream went away)".into());
        }
        let (up, down) = (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        );
        self.conn.up.fetch_add(up, Ordering::Relaxed);
        self.conn.down.fetch_add(down, Ordering::Relaxed);
        self.conn.count_answer();
        self.record.bytes_up = up;
        self.record.bytes_down = down;
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(shared) = &self.notes {
            super::hook::notes(shared).apply(&mut self.record);
        }
        let kind = self.record.kind;
        self.log
            .write(std::mem::replace(&mut self.record, Record::new(kind)));
    }
}

/// The refusal of a request whose body the sandbox broke off: its side's fault, a 400.
pub(super) fn unreadable_request_body(error: &dyn std::fmt::Display) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        Side::Downstream,
        format!("downstream: reading the request body failed: {error}"),
    )
}

/// A body passed through unchanged, counting data bytes, optionally carrying the request's
/// audit guard (dropped, and so written, when the body ends or is dropped), or noting in a
/// slot that the sandbox's request body broke off.
pub(super) struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
    audit: Option<RequestAudit>,
    broken: Option<RefusalSlot>,
}

impl<B> Counted<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Wraps `inner`, counting into `count`.
    pub(super) fn boxed(inner: B, count: Arc<AtomicU64>) -> BoxBody {
        Counted {
            inner,
            count,
            audit: None,
            broken: None,
        }
        .boxed_unsync()
    }

    /// Wraps the sandbox's request body `inner`, counting into `count`; if it breaks off
    /// (bad chunking, a reset), a 400 blaming the sandbox is left in `slot`, so the failure
    /// is not taken for the upstream's.
    pub(super) fn request(inner: B, count: Arc<AtomicU64>, slot: RefusalSlot) -> BoxBody {
        Counted {
            inner,
            count,
            audit: None,
            broken: Some(slot),
        }
        .boxed_unsync()
    }

    /// Wraps `inner`, counting into the guard's download counter; the guard is written
    /// when the body ends.
    pub(super) fn boxed_with_audit(inner: B, mut audit: RequestAudit) -> BoxBody {
        audit.body_started();
        if inner.is_end_stream() {
            audit.body_finished(None);
        }
        Counted {
            inner,
            count: audit.down(),
            audit: Some(audit),
            broken: None,
        }
        .boxed_unsync()
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                // A body of known length may end without a final `None` poll (hyper's h2
                // server stops at the last byte): it is complete once the inner says so.
                if this.inner.is_end_stream()
                    && let Some(mut audit) = this.audit.take()
                {
                    audit.body_finished(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let error: BoxError = error.into();
                if let Some(mut audit) = this.audit.take() {
                    audit.body_finished(Some(error.to_string()));
                }
                if let Some(slot) = &this.broken {
                    leave_refusal(slot, unreadable_request_body(&error));
                }
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if let Some(mut audit) = this.audit.take() {
                    audit.body_finished(None);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Kind, Who};
    use crate::live::Live;
    use http_body_util::Full;

    /// An absolute-form request's connection record is written when its response body is
    /// over, with the id its request records carry and the bytes they counted.
    #[tokio::test]
    async fn a_one_request_connection_is_recorded_when_its_body_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open(&path).unwrap();
        let conn = Conn::start(
            &log,
            Who::default(),
            "198.51.100.1:80".parse().unwrap(),
            Arc::new(Live::default()),
        );
        let id = conn.id.to_string();
        let counters = Arc::new(ConnCounters::default());
        let mut request = Record::new(Kind::Request);
        request.conn = Some(id.clone());
        let mut audit = RequestAudit::start(&log, request, counters.clone());
        audit.decide(Outcome::allowed(), 200);
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let body = ConnEnd::new(conn, counters).on_end_of(Counted::boxed_with_audit(body, audit));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        drop(log);
        writer.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "{records:?}");
        let (request, connection) = (&records[0], &records[1]);
        assert_eq!(request["kind"], "request");
        assert_eq!(connection["kind"], "connection");
        assert_eq!(connection["conn"], id.as_str());
        assert_eq!(request["conn"], connection["conn"]);
        assert_eq!(connection["decision"], "allow");
        assert_eq!(connection["bytes_down"], 5);
    }
}
