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
pub mod trust_failures;

use std::sync::Arc;

use crate::audit::{AuditLog, Who};
use crate::detect::Limits;
use crate::intercept::InterceptContext;
use crate::live::LiveStore;
use crate::upstream::egress::{EgressError, Level, Plan, ProxyChoice, resolve};
use crate::upstream::{Dialer, Egress};

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
    /// Clients that refused Sluice's certificate, for `/metrics`.
    pub trust_failures: Arc<trust_failures::TrustFailures>,
    /// The thread-per-core runtimes connections are served on; `None` serves them on the
    /// runtime that accepted them.
    pub workers: Option<Arc<crate::workers::Workers>>,
}

/// The path a connection of `who` leaves by: its sandbox's override (`sandbox`), its
/// session's proxy, the node's default, the daemon's environment, or direct.
///
/// # Security
/// A level that names what cannot be used gives [`Egress::Refused`]: every dial of the
/// connection then fails with the reason, and nothing goes direct instead.
pub(crate) async fn egress_of(ctx: &ProxyContext, who: &Who, sandbox: Option<&str>) -> Egress {
    let resolved = async {
        let sandbox = match sandbox {
            None => Level::Inherit,
            Some(text) => {
                let choice = ProxyChoice::parse(text).map_err(|e| EgressError::Unusable {
                    level: "sandbox",
                    reason: e.to_string(),
                })?;
                Level::Chose(choice, None)
            }
        };
        let session = ctx.intercept.policy.session_proxy(who).await?;
        // Checked now (an unusable choice is refused at once), resolved again at each dial.
        resolve(&sandbox, &session, &ctx.dialer.proxies())?;
        Ok::<_, EgressError>(Egress::Plan(Arc::new(Plan { sandbox, session })))
    };
    match resolved.await {
        Ok(egress) => egress,
        Err(error) => {
            tracing::warn!(%error, "egress: refused");
            Egress::Refused(error.to_string().into())
        }
    }
}
