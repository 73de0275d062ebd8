//! What every request of one intercepted connection shares.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinSet;

use super::InterceptContext;
use super::body::{ConnCounters, ConnEnd};
use super::framing::Verdicts;
use crate::conn::Peer;
use crate::host::Host;
use crate::upstream::Offer;

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
    /// WebSocket tunnels started on this connection; awaited before returning, aborted
    /// when the connection is dropped (a drain that gave up on it).
    upgrades: Mutex<Upgrades>,
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
            upgrades: Mutex::default(),
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

    /// What its upstream connections offer: the protocol the sandbox speaks here.
    pub(super) fn offer(&self) -> Offer {
        if self.h2 { Offer::Http2 } else { Offer::Http1 }
    }

    /// Runs a WebSocket tunnel on its own task, owned by this connection.
    pub(super) fn spawn_upgrade<F>(&self, tunnel: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.lock_upgrades().tunnels.spawn(tunnel);
    }

    /// The tunnels started so far, for the connection's owner to await.
    pub(super) fn take_upgrades(&self) -> Upgrades {
        std::mem::take(&mut *self.lock_upgrades())
    }

    fn lock_upgrades(&self) -> std::sync::MutexGuard<'_, Upgrades> {
        self.upgrades.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The WebSocket tunnels of one connection: awaited with [`Upgrades::finish`], aborted when
/// dropped, never detached.
///
/// # Security
/// A drain that aborts a connection drops what it was awaiting, this included: the tunnels
/// stop with their connection instead of outliving the daemon's shutdown.
#[derive(Debug, Default)]
pub struct Upgrades {
    tunnels: JoinSet<()>,
    /// The record of the connection they belong to, written after them (explicit proxy).
    /// Boxed: a connection's record is hundreds of bytes, and every intercepted
    /// connection's state holds this, nearly always empty.
    end: Option<Box<ConnEnd>>,
}

impl Upgrades {
    /// Waits until every tunnel has ended.
    pub async fn finish(mut self) {
        while self.tunnels.join_next().await.is_some() {}
    }

    /// Whether no tunnel was started.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    /// Writes `end` once the tunnels are over (or aborted).
    pub(super) fn end_with(&mut self, end: ConnEnd) {
        self.end = Some(Box::new(end));
    }
}
