//! The transparent listener: connections the kernel redirected from sandboxes.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::ProxyContext;
use super::identify::{check_destination, identify};
use crate::audit::{ConnAudit, Decision, Kind, Mode, Record};
use crate::drain::Drain;

/// Accepts until `drain` stops, handling each connection on its own tracked task. At most
/// `ctx.max_connections` are handled at once per listener.
pub async fn serve_transparent(listener: TcpListener, ctx: Arc<ProxyContext>, drain: Drain) {
    let limit = Arc::new(Semaphore::new(ctx.max_connections));
    let stopping = drain.stopping();
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            () = &mut stopping => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = &mut stopping => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "transparent: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let aborted = drain.aborted();
        drain.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = handle(&ctx, stream) => {}
                () = aborted => {}
            }
        });
    }
}

/// One connection: identify, check, relay. Exactly one audit record, whatever happens.
async fn handle(ctx: &ProxyContext, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let rules = ctx.rules.load_full();
    let mut record = Record::new(Kind::Connection);
    let identity = match identify(ctx, &client) {
        Ok(identity) => identity,
        Err(refusal) => {
            record.mode = Some(Mode::Refused);
            let mut audit = ConnAudit::start(&ctx.audit, record);
            audit.finish(Decision::Deny, Some(refusal.to_string()));
            reset(&client);
            return;
        }
    };
    record.who = Some(identity.who());
    record.destination = Some(identity.destination.to_string());
    let mut audit = ConnAudit::start(&ctx.audit, record);

    if let Err(refusal) = check_destination(identity.destination, &rules.allow_internal) {
        audit.set_mode(Mode::Refused);
        audit.finish(Decision::Deny, Some(refusal.to_string()));
        reset(&client);
        return;
    }
    let who = identity.who();
    super::pipeline::serve(ctx, &rules, client, identity.destination, who, &mut audit).await;
}

/// Closes with a RST so the client sees "connection reset", not a clean empty reply.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}
