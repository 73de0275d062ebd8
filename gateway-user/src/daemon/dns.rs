//! Glue between the DNS responder and the node (placeholder until the responder lands).

use super::Node;
use crate::drain::Drain;

/// Serves DNS for sandboxes on `socket` until `drain` stops.
pub fn serve(_node: &Node, socket: tokio::net::UdpSocket, drain: &Drain) {
    let stopping = drain.stopping();
    drain.spawn(async move {
        stopping.await;
        drop(socket);
    });
}
