//! One record as it travels to Redis: its sequence number, the fields streams are filtered on,
//! and the record's JSON. The same shape is rebuilt from a spool line on replay.

use serde_json::Value;

use super::Record;

/// A record ready for the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The writer's sequence number (also inside `json`).
    pub seq: u64,
    /// The record's session, or empty.
    pub session: String,
    /// The record's kind (`connection`, `dns`, …).
    pub kind: String,
    /// The whole record as one JSON line (no newline).
    pub json: String,
}

impl Entry {
    /// Serializes a stamped record.
    pub fn from_record(record: &Record) -> Result<Entry, serde_json::Error> {
        let json = serde_json::to_string(record)?;
        let kind = match serde_json::to_value(record.kind)? {
            Value::String(kind) => kind,
            other => other.to_string(),
        };
        let session = record
            .who
            .as_ref()
            .and_then(|who| who.session.clone())
            .unwrap_or_default();
        Ok(Entry {
            seq: record.seq,
            session,
            kind,
            json,
        })
    }

    /// Rebuilds an entry from a spooled line; `None` when the line is not a stamped record
    /// (a torn write from a crash, or a hand-edited file).
    pub fn from_line(line: &str) -> Option<Entry> {
        let value: Value = serde_json::from_str(line).ok()?;
        let seq = value.get("seq")?.as_u64().filter(|&seq| seq > 0)?;
        let kind = value.get("kind")?.as_str()?.to_owned();
        let session = value
            .get("session")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some(Entry {
            seq,
            session,
            kind,
            json: line.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Kind, Who};

    #[test]
    fn record_and_spool_line_give_the_same_entry() {
        let mut record = Record::new(Kind::Dns);
        record.seq = 7;
        record.node = "n1".to_owned();
        record.who = Some(Who {
            session: Some("s1".to_owned()),
            ..Who::default()
        });
        let entry = Entry::from_record(&record).unwrap();
        assert_eq!(entry.seq, 7);
        assert_eq!(entry.kind, "dns");
        assert_eq!(entry.session, "s1");
        assert_eq!(Entry::from_line(&entry.json), Some(entry));
    }

    #[test]
    fn bad_spool_lines_are_rejected() {
        for line in [
            "",
            "{",
            r#"{"kind":"dns"}"#,
            r#"{"seq":0,"kind":"dns"}"#,
            r#"{"seq":3}"#,
            r#"{"seq":"3","kind":"dns"}"#,
            r#"{"seq":3,"kind":"dns""#,
        ] {
            assert_eq!(Entry::from_line(line), None, "{line}");
        }
        let ok = Entry::from_line(r#"{"seq":3,"kind":"dns"}"#).unwrap();
        assert_eq!(ok.session, "");
    }
}
