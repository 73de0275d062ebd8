//! Glue between the DNS responder and the node: who asked, what their policy admits, the
//! name budget, and the audit records.
//!
//! # Security
//! Fails closed: a query whose sandbox cannot be identified, or whose session cannot be used,
//! is REFUSED; a name no rule that applies to the sandbox could connect to is NXDOMAIN and
//! never reaches the upstream resolver.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::Node;
use crate::audit::{AuditLog, Decision, Kind, Record, Who};
use crate::capture::Capture;
use crate::dns::admit::name_allowed;
use crate::dns::{
    Admission, Admit, DnsEvent, DnsServer, NameBudget, Outcome, QueryPolicy, Question,
};
use crate::drain::Drain;
use crate::host::Host;
use crate::proxy::ProxyContext;
use crate::sandbox::Registry;

/// Names the sandbox behind a query that arrived on the node's shared DNS socket (where the
/// datagram alone does not say): e.g. a kernel map from (netns cookie, sender address and
/// port) to the sandbox record.
pub trait IdentifyClient: Send + Sync + 'static {
    /// The sandbox that sent from `client`, or `None` when it is not known (refused).
    fn identify(&self, client: SocketAddr) -> BoxFuture<'_, Option<Who>>;
}

/// Identifies the sender of a query on the node's shared socket from the kernel's DNS client
/// map: the egress program records, for every DNS datagram a sandbox socket sends, the
/// socket's capture record under (network namespace, sender address and port).
///
/// # Security
/// A miss — no record, or a record of a cgroup that is no longer enrolled — is `None`, and
/// the query is refused; a process outside the sandboxes that sends to the listener itself
/// has no record.
#[derive(Debug)]
pub struct KernelIdentify {
    capture: Arc<Capture>,
    sandboxes: Arc<Registry>,
    netns_cookie: u64,
}

impl KernelIdentify {
    /// Identifies senders to `socket` (the node's shared DNS socket).
    pub fn for_socket(node: &Node, socket: &tokio::net::UdpSocket) -> std::io::Result<Self> {
        let netns_cookie = crate::capture::netns_cookie(socket)?;
        Ok(KernelIdentify {
            capture: node.capture.clone(),
            sandboxes: node.registry.clone(),
            netns_cookie,
        })
    }
}

impl IdentifyClient for KernelIdentify {
    fn identify(&self, client: SocketAddr) -> BoxFuture<'_, Option<Who>> {
        let found = match self.capture.dns_client(self.netns_cookie, client) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "dns: client lookup failed; refusing the query");
                None
            }
        };
        let who = found.and_then(|record| {
            let sandbox = self.sandboxes.by_cgroup(record.sandbox_cgroup_id)?;
            Some(crate::proxy::identify::who_of(&sandbox, &record))
        });
        Box::pin(async move { who })
    }
}

/// The refusal reason for a query whose sandbox is unknown.
pub const UNIDENTIFIED: &str = "cannot identify the sandbox that asked: the kernel has no \
     record of this sender (only datagrams a sandbox sends through the redirect are answered)";

/// Serves DNS on `socket` until `drain` stops. `who` names the sandbox when the socket is a
/// sandbox's own (in its namespace); on the node's shared socket (`None`) each query's sandbox
/// is found with [`KernelIdentify`].
pub fn serve(
    node: &Node,
    socket: tokio::net::UdpSocket,
    drain: &Drain,
    who: Option<Who>,
) -> std::io::Result<()> {
    let source = match who {
        Some(who) => Source::Sandbox(who),
        None => Source::Shared(Arc::new(KernelIdentify::for_socket(node, &socket)?)),
    };
    serve_with(node, socket, drain, source);
    Ok(())
}

/// Who the queries on a socket come from.
pub enum Source {
    /// A socket in one sandbox's own network namespace: every query is that sandbox's.
    Sandbox(Who),
    /// The node's shared socket: each query's sandbox is looked up by its sender.
    Shared(Arc<dyn IdentifyClient>),
}

/// [`serve`] with an explicit [`Source`] (for wiring a real [`IdentifyClient`]).
pub fn serve_with(node: &Node, socket: tokio::net::UdpSocket, drain: &Drain, source: Source) {
    let audit = node.audit.clone();
    let fixed = match &source {
        Source::Sandbox(who) => Some(who.clone()),
        Source::Shared(_) => None,
    };
    let policy = SandboxPolicy {
        source,
        proxy: node.proxy.clone(),
        budget: node.dns_budget.clone(),
    };
    let server = DnsServer::new(socket, node.resolver.clone(), policy, move |event| {
        write(&audit, fixed.clone(), event)
    });
    let stop = drain.stop_token();
    drain.spawn(async move {
        if let Err(e) = server.run(stop).await {
            tracing::error!(error = %e, "dns: server stopped");
        }
    });
}

/// The daemon's [`QueryPolicy`]: identify, load the session's policy, decide, spend budget.
struct SandboxPolicy {
    source: Source,
    proxy: Arc<ProxyContext>,
    budget: Arc<NameBudget>,
}

impl QueryPolicy for SandboxPolicy {
    fn admit<'a>(&'a self, client: SocketAddr, question: &'a Question) -> BoxFuture<'a, Admission> {
        Box::pin(async move {
            let who = match &self.source {
                Source::Sandbox(who) => Some(who.clone()),
                Source::Shared(identify) => identify.identify(client).await,
            };
            let Some(who) = who else {
                return Admission {
                    verdict: Admit::Refuse(UNIDENTIFIED.to_owned()),
                    who: None,
                };
            };
            let verdict = self.verdict(&who, &question.name).await;
            Admission {
                verdict,
                who: Some(who),
            }
        })
    }
}

impl SandboxPolicy {
    async fn verdict(&self, who: &Who, name: &str) -> Admit {
        let Ok(host) = Host::parse(name) else {
            return Admit::Deny(format!("{name:?} is not a host name"));
        };
        let node = self.proxy.live.load().policy.clone();
        let policy = match self.proxy.intercept.policy.connection(who, &node).await {
            Ok(policy) => policy,
            Err(why) => return Admit::Refuse(format!("session cannot be used: {why}")),
        };
        if let Err(why) = name_allowed(&host, &policy) {
            return Admit::Deny(why.to_string());
        }
        match self
            .budget
            .spend(who.sandbox, name, tokio::time::Instant::now())
        {
            Ok(()) => Admit::Resolve,
            Err(why) => Admit::Refuse(why.to_string()),
        }
    }
}

fn write(audit: &AuditLog, fixed: Option<Who>, event: DnsEvent) {
    let mut record = Record::new(Kind::Dns);
    record.who = event.who.or(fixed);
    record.destination = Some(event.client.to_string());
    if let Some(q) = &event.question {
        record.host = Some(q.name.clone());
        record.qtype = Some(q.qtype.to_string());
    }
    record.flags = event.flags;
    record.duration_ms = event.duration.as_secs_f64() * 1000.0;
    let (decision, reason) = match event.outcome {
        Outcome::Resolved(addrs) => {
            record.answers = addrs.iter().map(ToString::to_string).collect();
            (Decision::Allow, None)
        }
        Outcome::NotFound => (Decision::Allow, Some("no such name".to_owned())),
        Outcome::Denied(why) => (Decision::Deny, Some(format!("policy: {why}"))),
        Outcome::Refused(why) => (Decision::Deny, Some(why)),
        Outcome::Failed(why) | Outcome::Malformed(why) | Outcome::Dropped(why) => {
            (Decision::Error, Some(why))
        }
    };
    record.decision = decision;
    record.reason = reason;
    audit.write(record);
}
