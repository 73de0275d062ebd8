//! Glue between the DNS responder and the node: policy hook and audit records.

use std::sync::Arc;

use super::Node;
use crate::audit::{AuditLog, Decision, Kind, Record, Who};
use crate::dns::{DnsEvent, DnsServer, Outcome};
use crate::drain::Drain;

/// Serves DNS on `socket` until `drain` stops. `who` names the sandbox when the socket is a
/// sandbox's own (in its namespace); on the node's shared socket the sandbox is not known
/// from the datagram alone and the record carries the client address only.
pub fn serve(node: &Node, socket: tokio::net::UdpSocket, drain: &Drain, who: Option<Who>) {
    let audit = node.audit.clone();
    let who = Arc::new(who);
    let server = DnsServer::new(
        socket,
        node.resolver.clone(),
        // Every name may resolve until per-session policy lands; resolution failures still
        // fail closed (SERVFAIL), and every query is audited.
        |_client, _name| true,
        move |event| write(&audit, who.as_ref().clone(), event),
    );
    let stop = drain.stop_token();
    drain.spawn(async move {
        if let Err(e) = server.run(stop).await {
            tracing::error!(error = %e, "dns: server stopped");
        }
    });
}

fn write(audit: &AuditLog, who: Option<Who>, event: DnsEvent) {
    let mut record = Record::new(Kind::Dns);
    record.who = who;
    record.destination = Some(event.client.to_string());
    if let Some(q) = &event.question {
        record.host = Some(q.name.clone());
        record.qtype = Some(q.qtype.to_string());
    }
    record.duration_ms = event.duration.as_secs_f64() * 1000.0;
    let (decision, reason) = match event.outcome {
        Outcome::Resolved(addrs) => {
            record.answers = addrs.iter().map(ToString::to_string).collect();
            (Decision::Allow, None)
        }
        Outcome::NotFound => (Decision::Allow, Some("no such name".to_owned())),
        Outcome::Denied => (Decision::Deny, Some("policy: name not allowed".to_owned())),
        Outcome::Refused(why) => (Decision::Deny, Some(why)),
        Outcome::Failed(why) | Outcome::Malformed(why) | Outcome::Dropped(why) => {
            (Decision::Error, Some(why))
        }
    };
    record.decision = decision;
    record.reason = reason;
    audit.write(record);
}
