//! The data path: accept a captured connection, identify its sandbox, decide, and carry it out.
//!
//! Every listener runs the same accept loop ([`listener::serve`]): bounded concurrency,
//! accept-error backoff, drain-aware shutdown. Entry points take an already-bound listener
//! and a [`Drain`](crate::drain::Drain), so the daemon serves the node's listeners and each
//! sandbox namespace's listeners with the same code, and tests bind port 0 and identify
//! connections from a table ([`TableIdentify`]) instead of the kernel's map.

mod binding;
mod explicit;
pub mod identify;
pub mod listener;
pub mod pipeline;
mod relay;
mod splice;
mod transparent;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::detect::Limits;
use crate::intercept::InterceptContext;
use crate::live::LiveStore;
use crate::upstream::Dialer;

pub use explicit::{ExplicitProxy, serve_explicit};
pub use identify::{Identify, Identity, KernelIdentify, Refusal, TableIdentify};
pub use transparent::serve_transparent;

/// Everything a connection handler needs, shared by all listeners.
#[derive(Debug)]
pub struct ProxyContext {
    /// Who a captured connection comes from and where it was going.
    pub identify: Arc<dyn Identify>,
    /// Where records go.
    pub audit: AuditLog,
    /// Opens every upstream connection (relays and tunnels; intercepted requests go through
    /// the same dialer inside [`InterceptContext::upstream`]).
    pub dialer: Dialer,
    /// The live rules, swapped whole on a configuration reload. Each connection loads them
    /// once, when it is accepted, and keeps them to its end.
    pub live: LiveStore,
    /// Most connections handled at once per listener; further accepts wait.
    pub max_connections: usize,
    /// How much to peek, for how long, before routing.
    pub detect_limits: Limits,
    /// The interception engine (CA, upstream client, request policy); its policy also
    /// layers each connection's session over the node's rules.
    pub intercept: Arc<InterceptContext>,
    /// The daemon's resolver (the one sandboxes' DNS uses): binds passthrough names and
    /// `tcp_allow` host entries to addresses.
    pub resolver: crate::dns::Resolver,
}
