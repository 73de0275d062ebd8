//! Pure DNS message handling: parse one query datagram, classify it, build the reply.
//!
//! Nothing here does I/O. [`prepare`] either answers at once (malformed, unsupported) or hands
//! back a [`Pending`] question; the caller resolves it (policy, then lookup) and calls
//! [`Pending::finish`]. [`answer`] composes the two with a synchronous decision, for tests and
//! for callers that already know the answer.
//!
//! Choices, all fail closed:
//! - A and AAAA are resolved (and only they are ever forwarded upstream). HTTPS and SVCB go
//!   through policy but get an empty NOERROR when allowed, answered here without any lookup:
//!   clients that ask for them first (browsers, curl) then fall back to A/AAAA at once instead
//!   of waiting on a refusal retry. Every other type (TXT, MX, ANY, PTR, NULL, ...) gets
//!   REFUSED without consulting policy or resolver: it closes TXT tunnels.
//! - Unreadable datagrams (shorter than a header) and responses (QR=1) are dropped; readable
//!   headers with a broken body get FORMERR; opcodes other than QUERY get NOTIMP; EDNS
//!   versions above 0 get BADVERS; classes other than IN and names with characters outside
//!   letters, digits, `-` and `_` get REFUSED.
//! - Replies fit 512 bytes without EDNS (up to 1232 with it); answers that do not fit are
//!   dropped from the end and TC is set. TTL is [`ANSWER_TTL`].

use std::net::IpAddr;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::DnsError;

/// TTL of every answer record, in seconds: short, so policy changes take effect quickly.
pub const ANSWER_TTL: u32 = 30;
/// Most address records put in one answer; more are silently dropped.
pub const MAX_ANSWERS: usize = 32;
/// Reply size limit for queries without EDNS (RFC 1035).
const PLAIN_UDP_LIMIT: usize = 512;
/// Largest UDP reply we send to EDNS clients (the DNS flag day 2020 value), and the payload
/// size we advertise.
const EDNS_UDP_LIMIT: u16 = 1232;

/// The question of a query, as policy and audit see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lowercase, without the trailing dot (`api.example.com`). For a name refused for its
    /// characters, its escaped presentation form instead (e.g. `a\032b.example.com`).
    pub name: String,
    /// The query type (A, AAAA, TXT, ...).
    pub qtype: RecordType,
}

/// What the resolving side decided for a [`Pending`] question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The name may resolve and these are its addresses (any family; the reply keeps those
    /// matching the query type). Empty means "no records of this type" (NOERROR, no answers).
    Resolved(Vec<IpAddr>),
    /// Policy denies the name: NXDOMAIN. The reason names the rule.
    Denied(String),
    /// The query is not served for this client (sandbox unknown, session unusable, name
    /// budget spent): REFUSED. The reason says which.
    Refused(String),
    /// The name does not exist: NXDOMAIN.
    NotFound,
    /// The lookup failed (timeout, resolver error): SERVFAIL, never a made-up address.
    Failed(String),
}

/// What happened to one query; one per query, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with these addresses (empty for NODATA, e.g. HTTPS or a v4-only name's AAAA).
    Resolved(Vec<IpAddr>),
    /// Policy denied the name: NXDOMAIN. The reason names the rule.
    Denied(String),
    /// The name does not exist: NXDOMAIN.
    NotFound,
    /// The query asks for something not served (type, class, opcode, EDNS version, name
    /// characters): REFUSED, NOTIMP or BADVERS. The reason says which.
    Refused(String),
    /// Resolution or encoding failed: SERVFAIL.
    Failed(String),
    /// The datagram is not a well-formed query: FORMERR when its header is readable,
    /// otherwise no reply.
    Malformed(String),
    /// No reply was sent because the server was overloaded.
    Dropped(String),
}

impl Outcome {
    /// A short stable label for logs and metrics (`resolved`, `denied`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Resolved(_) => "resolved",
            Self::Denied(_) => "denied",
            Self::NotFound => "not_found",
            Self::Refused(_) => "refused",
            Self::Failed(_) => "failed",
            Self::Malformed(_) => "malformed",
            Self::Dropped(_) => "dropped",
        }
    }
}

/// The question (when readable) and outcome of one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryInfo {
    /// The question, or `None` when the datagram had no readable question.
    pub question: Option<Question>,
    /// What happened.
    pub outcome: Outcome,
}

/// A finished query: the reply to send (if any) and what to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply datagram; `None` means send nothing (unreadable or not a query).
    pub bytes: Option<Vec<u8>>,
    /// What to audit.
    pub info: QueryInfo,
}

/// The result of [`prepare`]: answered already, or waiting for a [`Resolution`].
#[derive(Debug)]
pub enum Prepared {
    /// Nothing to resolve (malformed or unsupported): send and audit this.
    Done(Reply),
    /// A supported question: resolve it, then call [`Pending::finish`].
    Resolve(Pending),
}

/// A well-formed A/AAAA/HTTPS/SVCB query waiting for its [`Resolution`].
#[derive(Debug)]
pub struct Pending {
    request: Message,
    query: Query,
    question: Question,
}

impl Pending {
    /// The normalized question to decide on.
    pub fn question(&self) -> &Question {
        &self.question
    }

    /// Builds the reply for `resolution`. Only addresses matching the query type are
    /// answered (A gets IPv4, AAAA gets IPv6, HTTPS/SVCB get none), at most [`MAX_ANSWERS`].
    pub fn finish(self, resolution: Resolution) -> Reply {
        let (rcode, outcome) = match resolution {
            Resolution::Resolved(addrs) => {
                let mut kept: Vec<IpAddr> = Vec::new();
                for addr in addrs {
                    if answers_type(self.question.qtype, addr) && !kept.contains(&addr) {
                        kept.push(addr);
                    }
                }
                kept.truncate(MAX_ANSWERS);
                (ResponseCode::NoError, Outcome::Resolved(kept))
            }
            Resolution::Denied(why) => (ResponseCode::NXDomain, Outcome::Denied(why)),
            Resolution::Refused(why) => (ResponseCode::Refused, Outcome::Refused(why)),
            Resolution::NotFound => (ResponseCode::NXDomain, Outcome::NotFound),
            Resolution::Failed(reason) => (ResponseCode::ServFail, Outcome::Failed(reason)),
        };
        let records = match &outcome {
            Outcome::Resolved(addrs) => addrs
                .iter()
                .map(|a| record(self.query.name(), *a))
                .collect(),
            _ => Vec::new(),
        };
        respond(&self.request, Some(self.question), rcode, records, outcome)
    }
}

/// Parses one datagram and answers it at once when nothing needs resolving.
pub fn prepare(datagram: &[u8]) -> Prepared {
    let request = match Message::from_vec(datagram) {
        Ok(request) => request,
        Err(err) => return Prepared::Done(malformed(datagram, &err.to_string())),
    };
    if request.message_type != MessageType::Query {
        return Prepared::Done(dropped("datagram is a DNS response, not a query"));
    }
    if request.op_code != OpCode::Query {
        let question = request.queries.first().map(|q| question_for(q).0);
        let reason = format!("opcode {:?} is not served", request.op_code);
        return Prepared::Done(refuse(
            &request,
            question,
            ResponseCode::NotImp,
            Outcome::Refused(reason),
        ));
    }
    let [query] = request.queries.as_slice() else {
        let reason = format!(
            "expected exactly one question, got {}",
            request.queries.len()
        );
        return Prepared::Done(refuse(
            &request,
            None,
            ResponseCode::FormErr,
            Outcome::Malformed(reason),
        ));
    };
    let query = query.clone();
    let (question, name_problem) = question_for(&query);
    let refusal = refusal(&request, &query, name_problem);
    match refusal {
        Some((rcode, reason)) => Prepared::Done(refuse(
            &request,
            Some(question),
            rcode,
            Outcome::Refused(reason),
        )),
        None => Prepared::Resolve(Pending {
            request,
            query,
            question,
        }),
    }
}

/// Answers one datagram with a synchronous decision: `decide(name, qtype)` is called only
/// for supported questions, with the normalized name (lowercase, no trailing dot).
pub fn answer(datagram: &[u8], decide: impl FnOnce(&str, RecordType) -> Resolution) -> Reply {
    match prepare(datagram) {
        Prepared::Done(reply) => reply,
        Prepared::Resolve(pending) => {
            let resolution = decide(&pending.question.name, pending.question.qtype);
            pending.finish(resolution)
        }
    }
}

/// The question of a datagram, if it parses; for auditing queries that are dropped unread.
pub fn question_of(datagram: &[u8]) -> Option<Question> {
    let request = Message::from_vec(datagram).ok()?;
    request.queries.first().map(|q| question_for(q).0)
}

/// Whether an address belongs in the answer to a query of type `qtype`.
pub(crate) fn answers_type(qtype: RecordType, addr: IpAddr) -> bool {
    matches!(
        (qtype, addr),
        (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))
    )
}

/// Why a one-question QUERY is not served, if it is not: the response code and the reason.
fn refusal(
    request: &Message,
    query: &Query,
    name_problem: Option<&str>,
) -> Option<(ResponseCode, String)> {
    if let Some(version) = request.edns.as_ref().map(Edns::version).filter(|v| *v > 0) {
        let reason = format!("EDNS version {version} is not supported");
        return Some((ResponseCode::BADVERS, reason));
    }
    let class = query.query_class();
    if class != DNSClass::IN {
        return Some((
            ResponseCode::Refused,
            format!("class {class} is not served"),
        ));
    }
    if let Some(problem) = name_problem {
        return Some((ResponseCode::Refused, problem.to_owned()));
    }
    let qtype = query.query_type();
    let reason = || format!("type {qtype} is not served");
    (!resolvable(qtype)).then(|| (ResponseCode::Refused, reason()))
}

/// Query types that go to policy and resolution; everything else is refused.
fn resolvable(qtype: RecordType) -> bool {
    matches!(
        qtype,
        RecordType::A | RecordType::AAAA | RecordType::HTTPS | RecordType::SVCB
    )
}

/// The normalized question, plus why the name is refused, if it is.
fn question_for(query: &Query) -> (Question, Option<&'static str>) {
    let qtype = query.query_type();
    match normalize(query.name()) {
        Ok(name) => (Question { name, qtype }, None),
        Err(problem) => {
            let name = query.name().to_lowercase().to_ascii();
            let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
            (Question { name, qtype }, Some(problem))
        }
    }
}

/// Lowercase dotted form of `name` without the trailing dot; only letters, digits, `-`, `_`.
fn normalize(name: &Name) -> Result<String, &'static str> {
    let mut out = String::with_capacity(name.len());
    for label in name.iter() {
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err("name has characters other than letters, digits, '-' and '_'");
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    if out.is_empty() {
        return Err("the root name is not served");
    }
    Ok(out)
}

fn record(owner: &Name, addr: IpAddr) -> Record {
    let data = match addr {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ANSWER_TTL, data)
}

/// A reply to a parsed request that answers nothing (errors and refusals).
fn refuse(
    request: &Message,
    question: Option<Question>,
    rcode: ResponseCode,
    outcome: Outcome,
) -> Reply {
    respond(request, question, rcode, Vec::new(), outcome)
}

/// Builds the reply; if encoding fails, falls back to a bare SERVFAIL (or nothing).
fn respond(
    request: &Message,
    question: Option<Question>,
    rcode: ResponseCode,
    records: Vec<Record>,
    outcome: Outcome,
) -> Reply {
    match encode(request, rcode, records) {
        Ok(bytes) => Reply {
            bytes: Some(bytes),
            info: QueryInfo { question, outcome },
        },
        Err(err) => Reply {
            bytes: encode(request, ResponseCode::ServFail, Vec::new()).ok(),
            info: QueryInfo {
                question,
                outcome: Outcome::Failed(err.to_string()),
            },
        },
    }
}

/// Encodes a response to `request`, dropping answers from the end (and setting TC) until it
/// fits the client's UDP limit.
fn encode(
    request: &Message,
    rcode: ResponseCode,
    records: Vec<Record>,
) -> Result<Vec<u8>, DnsError> {
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = rcode;
    reply.add_queries(request.queries.iter().cloned());
    reply.insert_answers(records);
    let limit = match &request.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP_LIMIT);
            reply.set_edns(ours);
            usize::from(edns.max_payload().clamp(512, EDNS_UDP_LIMIT))
        }
        None => PLAIN_UDP_LIMIT,
    };
    loop {
        let bytes = reply.to_vec().map_err(DnsError::Encode)?;
        if bytes.len() <= limit || reply.answers.pop().is_none() {
            return Ok(bytes);
        }
        reply.metadata.truncation = true;
    }
}

/// FORMERR when the header is readable and says "query", otherwise drop.
fn malformed(datagram: &[u8], reason: &str) -> Reply {
    let reason = format!("not a valid DNS query: {reason}");
    let header = Header::read(&mut BinDecoder::new(datagram));
    match header {
        Ok(header) if header.message_type == MessageType::Query => {
            let mut request = Message::new(header.id, MessageType::Query, header.op_code);
            request.metadata.recursion_desired = header.recursion_desired;
            refuse(
                &request,
                None,
                ResponseCode::FormErr,
                Outcome::Malformed(reason),
            )
        }
        Ok(_) => dropped("datagram is a DNS response, not a query"),
        Err(_) => dropped(&reason),
    }
}

fn dropped(reason: &str) -> Reply {
    Reply {
        bytes: None,
        info: QueryInfo {
            question: None,
            outcome: Outcome::Malformed(reason.to_owned()),
        },
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
