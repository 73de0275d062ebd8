//! Name-to-address binding for connections that carry no name the gateway can trust: which
//! `tcp_allow` host names the original destination belongs to, and whether a passed-through
//! connection goes where its SNI's rule allows.
//!
//! The decisions are pure ([`crate::route::passthrough_binding`], [`crate::route::route`]);
//! this file only does the lookups, with the daemon's own resolver.

use std::net::{IpAddr, SocketAddr};

use futures_util::future::join_all;

use crate::dns::Resolver;
use crate::net::canonical;
use crate::policy::CompiledPolicy;
use crate::route::{self, RejectReason, RoutePolicy};

/// Most host names resolved for one connection; entries beyond are not matched (fail closed).
pub const MAX_NAMES_PER_CONNECTION: usize = 16;

/// The names among `candidates` whose addresses (per `resolver`) include `ip`. A name that
/// fails to resolve does not match.
pub async fn names_resolving_to(
    resolver: &Resolver,
    candidates: &[String],
    ip: IpAddr,
) -> Vec<String> {
    let ip = canonical(ip);
    let lookups = candidates
        .iter()
        .take(MAX_NAMES_PER_CONNECTION)
        .map(|name| async move { (name, resolver.lookup(name).await) });
    join_all(lookups)
        .await
        .into_iter()
        .filter_map(|(name, found)| match found {
            Ok(addrs) if addrs.iter().any(|a| canonical(*a) == ip) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Checks a passthrough connection to `dest` for SNI `host`: the port must be one a matching
/// passthrough entry (node `node` or the session's `session`) names, and the address one the
/// daemon's resolver returns for `host`.
///
/// # Security
/// Returns the refusal to audit; a lookup failure refuses.
pub async fn check_passthrough(
    resolver: &Resolver,
    node: &RoutePolicy,
    session: Option<&CompiledPolicy>,
    host: &str,
    dest: SocketAddr,
) -> Result<(), RejectReason> {
    let mut ports: Vec<u16> = node
        .passthrough
        .iter()
        .filter(|rule| rule.host.matches(host))
        .map(|rule| rule.port)
        .collect();
    if let Some(policy) = session {
        ports.extend(policy.passthrough_ports(host));
    }
    ports.sort_unstable();
    ports.dedup();
    let resolved = if ports.contains(&dest.port()) {
        resolver.lookup(host).await.map_err(|e| e.to_string())
    } else {
        Ok(Vec::new())
    };
    let resolved = match &resolved {
        Ok(addrs) => Ok(addrs.as_slice()),
        Err(why) => Err(why.as_str()),
    };
    route::passthrough_binding(host, dest, &ports, resolved)
}
