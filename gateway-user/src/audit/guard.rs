//! The per-connection record guard.

use std::time::Instant;

use super::{AuditLog, Decision, Mode, Outcome, Record, Side};

/// Collects what happens to one connection and writes exactly one record when dropped.
///
/// If the handler never calls [`ConnAudit::end`] (an early return, a panic in a task, a
/// cancelled future) the record is still written, as an error "closed without result".
#[derive(Debug)]
pub struct ConnAudit {
    log: AuditLog,
    record: Record,
    started: Instant,
    finished: bool,
}

impl ConnAudit {
    /// Starts the record for a connection; the clock starts now.
    pub fn start(log: &AuditLog, record: Record) -> ConnAudit {
        ConnAudit {
            log: log.clone(),
            record,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records how the connection is being handled.
    pub fn set_mode(&mut self, mode: Mode) {
        self.record.mode = Some(mode);
    }

    /// Records the host name learned from SNI or Host.
    pub fn set_host(&mut self, host: impl Into<String>) {
        self.record.host = Some(host.into());
    }

    /// Records the label of the upstream proxy the connection went through.
    pub fn set_proxy(&mut self, label: impl Into<String>) {
        self.record.proxy = Some(label.into());
    }

    /// Records that the client refused Sluice's certificate (`alert`).
    pub fn set_trust_refused(&mut self, alert: &str) {
        self.record.trust_refused = Some(alert.to_owned());
    }

    /// Adds transferred bytes.
    pub fn add_bytes(&mut self, up: u64, down: u64) {
        self.record.bytes_up += up;
        self.record.bytes_down += down;
    }

    /// Sets the outcome; the record is written when the guard drops.
    pub fn end(&mut self, outcome: Outcome) {
        self.record.decision = outcome.decision;
        self.record.side = outcome.side;
        self.record.reason = outcome.reason;
        self.finished = true;
    }

    /// The record so far (for tests and logs).
    pub fn record(&self) -> &Record {
        &self.record
    }
}

impl Drop for ConnAudit {
    fn drop(&mut self) {
        if !self.finished {
            self.record.decision = Decision::Error;
            self.record.side = Some(Side::Gateway);
            self.record.reason = Some("closed without result".to_owned());
        }
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let kind = self.record.kind;
        let record = std::mem::replace(&mut self.record, Record::new(kind));
        self.log.write(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Kind;

    #[tokio::test]
    async fn forgotten_guard_still_writes_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open(&path).unwrap();
        {
            let mut guard = ConnAudit::start(&log, Record::new(Kind::Connection));
            guard.add_bytes(3, 4);
        }
        {
            let mut guard = ConnAudit::start(&log, Record::new(Kind::Connection));
            guard.end(Outcome::allowed());
        }
        drop(log);
        writer.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "error");
        assert_eq!(lines[0]["reason"], "closed without result");
        assert_eq!(lines[0]["bytes_up"], 3);
        assert_eq!(lines[1]["decision"], "allow");
    }
}
