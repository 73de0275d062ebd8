//! What every request of one intercepted connection shares.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;

use super::InterceptContext;
use super::body::ConnCounters;
use super::framing::Verdicts;
use crate::conn::Peer;
use crate::host::Host;

/// What every request of one connection shares.
#[derive(Debug)]
pub(super) struct ConnState {
    pub(super) ctx: Arc<InterceptContext>,
    /// The connection the requests arrive on.
    pub(super) peer: Peer,
    /// The host the TLS leaf was for; `None` on plain HTTP.
    pub(super) sni: Option<Host>,
    /// Whether the sandbox speaks HTTP/2 on this connection.
    pub(super) h2: bool,
    pub(super) counters: Arc<ConnCounters>,
    /// WebSocket copies started on this connection; awaited before returning.
    pub(super) upgrades: Mutex<Vec<JoinHandle<()>>>,
    /// Framing facts of HTTP/1 request heads as they arrived on the wire.
    pub(super) framing: Option<Arc<Verdicts>>,
}

impl ConnState {
    pub(super) fn new(
        ctx: Arc<InterceptContext>,
        peer: Peer,
        sni: Option<Host>,
        h2: bool,
    ) -> Arc<ConnState> {
        Arc::new(ConnState {
            ctx,
            peer,
            sni,
            h2,
            counters: Arc::default(),
            upgrades: Mutex::new(Vec::new()),
            framing: (!h2).then(Arc::default),
        })
    }

    /// `https` or `http`.
    pub(super) fn scheme(&self) -> &'static str {
        if self.sni.is_some() { "https" } else { "http" }
    }

    /// `h2` or `http/1.1`.
    pub(super) fn protocol(&self) -> &'static str {
        if self.h2 { "h2" } else { "http/1.1" }
    }

    pub(super) fn track_upgrade(&self, task: JoinHandle<()>) {
        self.upgrades
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}
