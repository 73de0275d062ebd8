//! The transparent listener: connections the kernel redirected from sandboxes.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use super::{ProxyContext, listener};
use crate::audit::{ConnAudit, Kind, Mode, Outcome, Record};
use crate::conn::{Conn, ConnId};
use crate::drain::Drain;
use crate::upstream::check_destination;

/// Accepts until `drain` stops, handling each connection on its own tracked task (on one of
/// `ctx.workers` when set). At most `ctx.max_connections` are handled at once per listener.
pub async fn serve_transparent(listener: TcpListener, ctx: Arc<ProxyContext>, drain: Drain) {
    let limit = ctx.max_connections;
    let workers = ctx.workers.clone();
    listener::serve_on(
        listener,
        "transparent",
        limit,
        drain,
        workers,
        move |stream, _| {
            let ctx = ctx.clone();
            async move { handle(&ctx, stream).await }
        },
    )
    .await;
}

/// One connection: identify, check, then the pipeline. Exactly one audit record, whatever
/// happens.
async fn handle(ctx: &ProxyContext, client: TcpStream) {
    let identity = match ctx.identify.identify(&client) {
        Ok(identity) => identity,
        Err(refusal) => {
            // Nobody vouches for it, so no `Conn`; the record still gets an id.
            let mut record = Record::new(Kind::Connection);
            record.conn = Some(ConnId::next().to_string());
            record.mode = Some(Mode::Refused);
            let mut audit = ConnAudit::start(&ctx.audit, record);
            audit.end(Outcome::refused(&refusal));
            reset(&client);
            return;
        }
    };
    let mut conn = Conn::start(
        &ctx.audit,
        identity.who,
        identity.destination,
        ctx.live.load_full(),
    );
    conn.sandbox_proxy = identity.proxy;
    if let Err(refusal) = check_destination(conn.dest, &conn.live.allow_internal) {
        conn.audit.set_mode(Mode::Refused);
        conn.audit.end(Outcome::refused(&refusal));
        reset(&client);
        return;
    }
    let span = conn.span.clone();
    super::pipeline::serve(ctx, &mut conn, client)
        .instrument(span)
        .await;
}

/// Closes with a RST so the client sees "connection reset", not a clean empty reply.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}
