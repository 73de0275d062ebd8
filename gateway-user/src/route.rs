//! The per-connection routing decision: one pure function of what detection saw, where the
//! connection was going, and the connection's policy (the node's rules with its session's
//! layered over them, see [`CompiledPolicy::layered_over`]).
//!
//! The I/O layer only carries the [`Route`] out: intercept (terminate TLS or serve plain
//! HTTP), pass TLS through untouched, relay opaque TCP, or reject.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::audit::{Side, Sided};
use crate::detect::Outcome;
use crate::host::Host;
use crate::policy::{self, CompiledPolicy, Verdict};
use crate::session::Unusable;

/// What a connection is routed by, fixed when it was accepted.
#[derive(Clone, Copy, Debug)]
pub struct RouteRules<'a> {
    /// The node's rules, with the session's policy layered over them when there is one.
    pub policy: &'a CompiledPolicy,
    /// Why the connection's session cannot be used (unknown, revoked, expired, store down),
    /// when that is so: only interception goes on (each request is then refused readably).
    pub unusable: Option<&'a Unusable>,
    /// The `tcp_allow` host names among [`CompiledPolicy::tcp_allow_hosts`] that the
    /// daemon's resolver resolved to the destination's address.
    pub dest_names: &'a [Host],
}

/// What to do with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Terminate TLS (or serve plain HTTP) and inspect every request for `host`.
    Intercept {
        /// The host from SNI or Host.
        host: Host,
    },
    /// Copy the TLS bytes to the original destination untouched.
    Passthrough {
        /// The SNI.
        host: Host,
    },
    /// Copy opaque TCP to the original destination (allowed by a `tcp_allow` rule).
    Relay,
    /// Refuse, for the reason given.
    Reject(RejectReason),
}

/// Why a connection is refused, in words the agent can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// TLS without SNI: Sluice will not guess which host the client meant.
    NoSni,
    /// Plain HTTP without a Host header (an invalid one is malformed).
    NoHost,
    /// Not TLS or HTTP, and no `tcp_allow` rule covers the destination.
    OpaqueNotAllowed(SocketAddr),
    /// The client sent nothing in time, and no `tcp_allow` rule covers the destination.
    Silent(SocketAddr),
    /// The first bytes exceeded the detection limit.
    TooLarge,
    /// The first bytes did not parse.
    Malformed(String),
    /// The client closed before sending a request.
    Closed,
    /// The session's policy refuses the connection (a passthrough host it denies).
    Session(String),
    /// The connection's session cannot be used; the side is the error's (a store outage is
    /// the gateway's).
    Unusable(Unusable),
    /// A passthrough connection aimed somewhere its SNI's rule does not cover (another
    /// address than the name's, or another port); the text says which.
    Passthrough(String),
}

impl Sided for RejectReason {
    /// What the sandbox sent is to blame for bytes that are not a request; an unusable
    /// session names its own side; a rule for the rest.
    fn side(&self) -> Side {
        match self {
            Self::TooLarge | Self::Malformed(_) | Self::Closed => Side::Downstream,
            Self::Unusable(why) => why.side(),
            _ => Side::Policy,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSni => {
                f.write_str("TLS ClientHello without SNI: connect by host name, not by IP address")
            }
            Self::NoHost => f.write_str("HTTP request without a Host header"),
            Self::OpaqueNotAllowed(dest) => write!(
                f,
                "{dest} is neither TLS nor HTTP and no tcp_allow rule covers it"
            ),
            Self::Silent(dest) => write!(
                f,
                "client sent nothing to {dest} in time and no tcp_allow rule covers it"
            ),
            Self::TooLarge => f.write_str("first bytes exceed the protocol detection limit"),
            Self::Malformed(why) => write!(f, "malformed first bytes: {why}"),
            Self::Closed => f.write_str("client closed before sending a request"),
            Self::Session(why) => f.write_str(why),
            Self::Unusable(why) => write!(f, "{why}"),
            Self::Passthrough(why) => write!(f, "passthrough: {why}"),
        }
    }
}

/// Decides what to do with a connection to `dest` after detection saw `detected`.
///
/// A passthrough route still has to pass [`passthrough_binding`] before it is carried out.
///
/// # Security
/// Fails closed: TLS without SNI, silence and opaque bytes are refused unless a `tcp_allow`
/// rule names the destination; a host is never invented. A session that cannot be used
/// leaves only interception, where every request is refused readably.
pub fn route(detected: &Outcome, dest: SocketAddr, rules: &RouteRules<'_>) -> Route {
    let route = decide(detected, dest, rules);
    match rules.unusable {
        Some(why) if !matches!(route, Route::Intercept { .. }) => {
            Route::Reject(RejectReason::Unusable(why.clone()))
        }
        _ => route,
    }
}

/// Whether opaque TCP (or silence) toward `dest` is relayed: a `tcp_allow` address range
/// covers it, or a host entry whose name resolved to it.
pub fn relays(dest: SocketAddr, rules: &RouteRules<'_>) -> bool {
    let allows = |host: Option<&Host>| {
        matches!(
            policy::evaluate_tcp(rules.policy, host, dest).verdict,
            Verdict::Allow
        )
    };
    rules.unusable.is_none()
        && (allows(None) || rules.dest_names.iter().any(|name| allows(Some(name))))
}

fn decide(detected: &Outcome, dest: SocketAddr, rules: &RouteRules<'_>) -> Route {
    match detected {
        Outcome::Tls(hello) => match &hello.server_name {
            None => Route::Reject(RejectReason::NoSni),
            Some(host) if rules.policy.is_passthrough(host) => passthrough(host, rules.policy),
            Some(host) => Route::Intercept { host: host.clone() },
        },
        Outcome::Http1(request) => match &request.host {
            Some(host) => Route::Intercept { host: host.clone() },
            None => Route::Reject(RejectReason::NoHost),
        },
        Outcome::Opaque if relays(dest, rules) => Route::Relay,
        Outcome::Opaque => Route::Reject(RejectReason::OpaqueNotAllowed(dest)),
        Outcome::Timeout if relays(dest, rules) => Route::Relay,
        Outcome::Timeout => Route::Reject(RejectReason::Silent(dest)),
        Outcome::TooLarge => Route::Reject(RejectReason::TooLarge),
        Outcome::Malformed(why) => Route::Reject(RejectReason::Malformed(why.to_string())),
        Outcome::Closed => Route::Reject(RejectReason::Closed),
        Outcome::ReadFailed(kind) => Route::Reject(RejectReason::Malformed(format!(
            "downstream: read failed: {kind}"
        ))),
    }
}

/// A passthrough host still passes the deny and allow lists (and is refused when per-host
/// rules would need the requests the gateway does not read).
fn passthrough(host: &Host, policy: &CompiledPolicy) -> Route {
    let decision = policy::evaluate_host(policy, host);
    match decision.verdict {
        Verdict::Refuse(refusal) if decision.enforced => {
            Route::Reject(RejectReason::Session(format!(
                "refused by the session's policy: {}: {}",
                refusal.rule, refusal.reason
            )))
        }
        _ => Route::Passthrough { host: host.clone() },
    }
}

/// Checks a passthrough connection against its rules: `dest`'s port must be one of `ports`
/// (those of every passthrough entry matching `host`), and `dest`'s address one of
/// `resolved`, what the daemon's resolver returns for `host` (or why it failed).
///
/// # Security
/// The SNI is the sandbox's claim; without this check a passthrough name would be a raw
/// tunnel to any address and port. A failed lookup refuses.
pub fn passthrough_binding(
    host: &Host,
    dest: SocketAddr,
    ports: &[u16],
    resolved: Result<&[IpAddr], &str>,
) -> Result<(), RejectReason> {
    let refuse = |why: String| Err(RejectReason::Passthrough(why));
    if !ports.contains(&dest.port()) {
        let allowed: Vec<String> = ports.iter().map(u16::to_string).collect();
        return refuse(format!(
            "port {} is not allowed for {host} (allowed: {}); write {host}:{} in the passthrough rule to allow it",
            dest.port(),
            allowed.join(", "),
            dest.port()
        ));
    }
    let addrs = match resolved {
        Ok(addrs) => addrs,
        Err(why) => {
            return refuse(format!(
                "cannot resolve {host} to check the destination: {why}"
            ));
        }
    };
    let ip = crate::net::canonical(dest.ip());
    if addrs.iter().any(|a| crate::net::canonical(*a) == ip) {
        return Ok(());
    }
    let listed: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let listed = if listed.is_empty() {
        "no address".to_owned()
    } else {
        listed.join(", ")
    };
    refuse(format!(
        "{ip} is not an address of {host} (it resolves to {listed})"
    ))
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
