//! Name-to-address binding for connections that carry no name the gateway can trust: which
//! `tcp_allow` host names the original destination belongs to, and whether a passed-through
//! connection goes where its SNI's rule allows.
//!
//! The decisions are pure ([`crate::route::passthrough_binding`], [`crate::route::route`]);
//! this file only does the lookups, with the daemon's own resolver.

use std::net::{IpAddr, SocketAddr};

use futures_util::future::join_all;

use crate::dns::Resolver;
use crate::host::Host;
use crate::net::canonical;
use crate::policy::CompiledPolicy;
use crate::route::{self, RejectReason};

/// Most host names resolved for one connection; entries beyond are not matched (fail closed).
pub const MAX_NAMES_PER_CONNECTION: usize = 16;

/// The names of `policy`'s `tcp_allow` host entries for `dest`'s port whose addresses (per
/// `resolver`) include `dest`'s. A name that fails to resolve does not match.
pub async fn names_resolving_to(
    resolver: &Resolver,
    policy: &CompiledPolicy,
    dest: SocketAddr,
) -> Vec<Host> {
    let ip = canonical(dest.ip());
    let candidates = policy.tcp_allow_hosts(dest.port());
    let lookups = candidates
        .iter()
        .take(MAX_NAMES_PER_CONNECTION)
        .map(|name| async move { (*name, resolver.lookup(name.as_str()).await) });
    join_all(lookups)
        .await
        .into_iter()
        .filter_map(|(name, found)| match found {
            Ok(addrs) if addrs.iter().any(|a: &IpAddr| canonical(*a) == ip) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Checks a passthrough connection to `dest` for SNI `host`: the port must be one a
/// matching passthrough entry of `policy` names, and the address one the daemon's resolver
/// returns for `host`.
///
/// # Security
/// Returns the refusal to audit; a lookup failure refuses.
pub async fn check_passthrough(
    resolver: &Resolver,
    policy: &CompiledPolicy,
    host: &Host,
    dest: SocketAddr,
) -> Result<(), RejectReason> {
    let ports = policy.passthrough_ports(host);
    let resolved = if ports.contains(&dest.port()) {
        resolver
            .lookup(host.as_str())
            .await
            .map_err(|e| e.to_string())
    } else {
        Ok(Vec::new())
    };
    let resolved = match &resolved {
        Ok(addrs) => Ok(addrs.as_slice()),
        Err(why) => Err(why.as_str()),
    };
    route::passthrough_binding(host, dest, &ports, resolved)
}
