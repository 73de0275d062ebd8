//! The audit record: a flat JSON object, one per line.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A TCP connection from a sandbox.
    Connection,
    /// One DNS query from a sandbox.
    Dns,
    /// One intercepted HTTP request.
    Request,
    /// A sandbox was enrolled or removed.
    Sandbox,
    /// The daemon reloaded its configuration (`allow`) or refused to (`deny`).
    Config,
    /// A session was changed through the API (its policy replaced).
    Session,
}

/// How the gateway handled a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Bytes copied to the original destination unchanged.
    Relay,
    /// TLS copied byte for byte after the SNI peek.
    Passthrough,
    /// TLS terminated with a Sluice leaf, requests inspected.
    Intercept,
    /// Refused before any byte reached an upstream.
    Refused,
}

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed and completed.
    Allow,
    /// Refused by policy or by a safety rule.
    Deny,
    /// Failed: the reason says which side.
    Error,
}

/// Who made the connection, from the kernel's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Who {
    /// The daemon's sandbox id.
    pub sandbox: u64,
    /// The sandbox's session, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Process id (root pid namespace).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// The cgroup the process was in.
    pub cgroup: u64,
    /// The process's executable, as its own mount namespace names it, when it could be read
    /// at connect time (a process may name its binary anything: never trust it for policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

/// One audit record.
///
/// # Security
/// Holds no secret: URLs and headers are recorded after credential placeholders are
/// restored, and request or response bodies are never recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// RFC 3339 UTC time the record was written.
    pub time: String,
    /// The node that wrote the record (Redis mode; empty, and not serialized, in file mode).
    /// `(node, seq)` identifies a record across nodes, so consumers can dedupe.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Node-unique, increasing sequence number stamped by the writer (Redis mode, from 1; 0,
    /// and not serialized, in file mode). It makes a replayed record recognisable as such.
    #[serde(skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// What the record is about.
    pub kind: Kind,
    /// The connection the record is about (connection records) or arrived on (request
    /// records), as `run-n`: a request is tied to its connection by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// The request's number on its connection, from 1 (request records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// Who made the connection.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub who: Option<Who>,
    /// Original destination `addr:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Host name from SNI, Host, or the DNS question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How the connection was handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The label of the upstream proxy the connection or request went through (absent:
    /// direct).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The outcome; `None` is written as an error "closed without result".
    pub decision: Decision,
    /// Which side failed or refused (`downstream`, `upstream`, `gateway`, `policy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<super::Side>,
    /// Why, in words a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes from the sandbox to the upstream.
    pub bytes_up: u64,
    /// Bytes from the upstream to the sandbox.
    pub bytes_down: u64,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// DNS: the query type (`A`, `AAAA`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// DNS: the addresses answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
    /// DNS: signs of data carried in the name (`long-label`, `high-entropy-label`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Request: the HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request: the full URL (`scheme://host[:port]/path?query`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Request: the status sent to the sandbox (upstream's, or Sluice's own refusal/error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request: the protocols, downstream then upstream (`h2>http/1.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Request: credentials swapped in, by name (never values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Request: PII findings in the body by type, counts only (never the text).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pii: BTreeMap<String, u32>,
    /// Connection: how the client refused Sluice's certificate (`unknown_ca`, …, `closed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_refused: Option<String>,
    /// Request: a policy refusal recorded but not enforced (enforcement `audit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_refuse: Option<String>,
}

impl Record {
    /// A record of `kind` with every optional field empty and decision `Error`.
    pub fn new(kind: Kind) -> Record {
        Record {
            time: String::new(),
            node: String::new(),
            seq: 0,
            kind,
            conn: None,
            request: None,
            who: None,
            destination: None,
            host: None,
            mode: None,
            proxy: None,
            decision: Decision::Error,
            side: None,
            reason: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0.0,
            qtype: None,
            answers: Vec::new(),
            flags: Vec::new(),
            method: None,
            url: None,
            status: None,
            protocol: None,
            credentials: Vec::new(),
            pii: BTreeMap::new(),
            trust_refused: None,
            would_refuse: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
