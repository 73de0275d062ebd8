//! The data path: accept a captured connection, identify its sandbox, decide, and carry it out.
//!
//! Entry points take an already-bound listener and a shutdown token, so the daemon serves the
//! node's listeners and each sandbox namespace's listeners with the same code, and tests can
//! bind port 0.

mod binding;
mod explicit;
pub mod identify;
pub mod pipeline;
mod relay;
mod splice;
mod transparent;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::audit::AuditLog;
use crate::capture::Capture;
use crate::config::Config;
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
    /// The node's connection rules, swapped whole on a configuration reload. Each connection
    /// loads them once, when it is accepted, and keeps them to its end.
    pub rules: ArcSwap<ProxyRules>,
    /// Most connections handled at once; further accepts wait.
    pub max_connections: usize,
    /// How much to peek, for how long, before routing.
    pub detect_limits: Limits,
    /// The interception engine (CA, upstream client, request policy).
    pub intercept: Arc<InterceptContext>,
    /// Sessions: their policies narrow or extend the node's routes.
    pub gate: Option<Arc<crate::gate::SessionGate>>,
    /// The daemon's resolver (the one sandboxes' DNS uses): binds passthrough names and
    /// `tcp_allow` host entries to addresses.
    pub resolver: crate::dns::Resolver,
}

/// The node-wide rules a connection is decided by: what reloads live from the configuration.
#[derive(Debug, Default)]
pub struct ProxyRules {
    /// Passthrough hosts and opaque-TCP rules.
    pub route_policy: RoutePolicy,
    /// Internal ranges a sandbox may nevertheless reach.
    pub allow_internal: Vec<Cidr>,
}

impl ProxyRules {
    /// The rules of `config` (`policy`, `upstream.allow_internal`); the error names the bad
    /// entry.
    pub fn from_config(config: &Config) -> Result<ProxyRules, String> {
        let allow_internal = config
            .upstream
            .allow_internal
            .iter()
            .map(|c| Cidr::parse(c).map_err(|e| format!("upstream.allow_internal: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(ProxyRules {
            route_policy: config.policy.route_policy()?,
            allow_internal,
        })
    }
}
