//! One value per connection, built at accept: its id, who made it, where it was going, the
//! live rules it is decided by, its session's policy and its audit record.
//!
//! Stages take the [`Conn`] (or the [`Peer`] view the request path needs) instead of loose
//! arguments; its id goes into every record the connection causes and names its tracing
//! span.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::audit::{AuditLog, ConnAudit, Kind, Record, Who};
use crate::live::Live;
use crate::policy::CompiledPolicy;
use crate::session::Unusable;
use crate::upstream::Egress;

/// A connection's id: unique within this daemon's run, and across runs by its random run
/// prefix. Written `run-n` (`5f0c2a91-17`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    run: u32,
    n: u64,
}

impl ConnId {
    /// The next id of this run.
    pub fn next() -> ConnId {
        static RUN: OnceLock<u32> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId {
            run: *RUN.get_or_init(rand::random),
            n: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.run, self.n)
    }
}

/// A connection being served.
#[derive(Debug)]
pub struct Conn {
    /// Its id (in its records and its span).
    pub id: ConnId,
    /// Who made it.
    pub who: Who,
    /// Where the application meant it to go (the original destination).
    pub dest: SocketAddr,
    /// The live rules loaded when it was accepted; kept to its end.
    pub live: Arc<Live>,
    /// What it is routed by: the node's rules, with its session's policy layered over them
    /// once known (see [`Conn::with_session`]).
    pub policy: Arc<CompiledPolicy>,
    /// Why its session cannot be used, when that is so.
    pub unusable: Option<Unusable>,
    /// Its sandbox's upstream proxy override (`none`, an id), if any.
    pub sandbox_proxy: Option<String>,
    /// The path it leaves by (resolved with its session; direct until then).
    pub egress: Egress,
    /// Its audit record, written when the connection ends.
    pub audit: ConnAudit,
    /// Its tracing span.
    pub span: tracing::Span,
}

/// What the request path knows of the connection a request arrived on (cheap to clone).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The connection's id; request records carry it.
    pub conn: ConnId,
    /// Who made the connection, when known.
    pub who: Option<Who>,
    /// Where requests are sent (the original, or resolved, destination).
    pub dest: SocketAddr,
    /// The path requests leave by.
    pub egress: Egress,
    /// The node's rules the connection was accepted under (its session's policy is layered
    /// over them for each request).
    pub node: Arc<CompiledPolicy>,
}

impl Conn {
    /// A connection from `who` to `dest`, decided by `live`; its audit record starts now.
    pub fn start(audit: &AuditLog, who: Who, dest: SocketAddr, live: Arc<Live>) -> Conn {
        let id = ConnId::next();
        let mut record = Record::new(Kind::Connection);
        record.conn = Some(id.to_string());
        record.who = Some(who.clone());
        record.destination = Some(dest.to_string());
        let span = tracing::info_span!(
            "conn",
            id = %id,
            sandbox = who.sandbox,
            session = who.session.as_deref().unwrap_or(""),
            dest = %dest,
        );
        Conn {
            id,
            who,
            dest,
            policy: live.policy.clone(),
            live,
            unusable: None,
            sandbox_proxy: None,
            egress: Egress::Direct,
            audit: ConnAudit::start(audit, record),
            span,
        }
    }

    /// Sets what the connection's session makes of its policy: the layered policy, or why
    /// the session cannot be used (the node's rules then stay).
    pub fn with_session(&mut self, session: Result<Arc<CompiledPolicy>, Unusable>) {
        match session {
            Ok(policy) => self.policy = policy,
            Err(why) => self.unusable = Some(why),
        }
    }

    /// The view the request path keeps of this connection.
    pub fn peer(&self) -> Peer {
        Peer {
            conn: self.id,
            who: Some(self.who.clone()),
            dest: self.dest,
            egress: self.egress.clone(),
            node: self.live.policy.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_share_the_run() {
        let a = ConnId::next();
        let b = ConnId::next();
        assert_ne!(a, b);
        let (run_a, _) = a
            .to_string()
            .split_once('-')
            .map(|(r, n)| (r.to_owned(), n.to_owned()))
            .unwrap();
        let (run_b, _) = b
            .to_string()
            .split_once('-')
            .map(|(r, n)| (r.to_owned(), n.to_owned()))
            .unwrap();
        assert_eq!(run_a, run_b);
        assert_eq!(run_a.len(), 8);
    }
}
