//! The data path: accept a captured connection, identify its sandbox, decide, and carry it out.
//!
//! Entry points take an already-bound listener and a shutdown token, so the daemon serves the
//! node's listeners and each sandbox namespace's listeners with the same code, and tests can
//! bind port 0.

mod explicit;
mod identify;
pub mod pipeline;
mod relay;
mod splice;
mod transparent;

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::capture::Capture;
use crate::detect::Limits;
use crate::intercept::InterceptContext;
use crate::net::Cidr;
use crate::route::RoutePolicy;
use crate::sandbox::Registry;

pub use explicit::{ExplicitProxy, serve_explicit};
pub use identify::{Identity, Refusal, check_destination};
pub use transparent::serve_transparent;

/// Everything a connection handler needs, shared by all listeners.
#[derive(Debug)]
pub struct ProxyContext {
    /// The kernel's connection records.
    pub capture: Arc<Capture>,
    /// Enrolled sandboxes.
    pub sandboxes: Arc<Registry>,
    /// Where records go.
    pub audit: AuditLog,
    /// How long an upstream dial may take.
    pub connect_timeout: Duration,
    /// Internal ranges a sandbox may nevertheless reach.
    pub allow_internal: Vec<Cidr>,
    /// Most connections handled at once; further accepts wait.
    pub max_connections: usize,
    /// How much to peek, for how long, before routing.
    pub detect_limits: Limits,
    /// Passthrough hosts and opaque-TCP rules.
    pub route_policy: RoutePolicy,
    /// The interception engine (CA, upstream client, request policy).
    pub intercept: Arc<InterceptContext>,
    /// Sessions: their policies narrow or extend the node's routes.
    pub gate: Option<Arc<crate::gate::SessionGate>>,
}
