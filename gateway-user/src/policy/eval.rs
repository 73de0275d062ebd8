//! Policy decisions as pure functions of a [`CompiledPolicy`] and what a request or connection
//! looks like. No I/O: the caller answers 403 / 429, relays, or records.
//!
//! HTTP requests are checked in this order:
//! 1. **deny**: any matching pattern refuses;
//! 2. **allow**: when the list is present, the host must match one of its patterns;
//! 3. **rules**: only the rules of the *most specific* pattern matching the host apply
//!    (an exact name beats `*.suffix`, a longer suffix beats a shorter one, and `*` applies
//!    only when nothing else matches). Several rules written with that same pattern are
//!    alternatives: the request is allowed if any one of them allows it. A host no rule
//!    matches is unrestricted.
//!
//! Within a rule, an empty method list allows every method, and an empty path list every
//! path. Methods compare case-insensitively; paths case-sensitively, on segment boundaries:
//! `/v1` allows `/v1` and `/v1/x` but not `/v10`, while `/v1/` allows `/v1/` and `/v1/x`
//! but not `/v1`. A path with a `.` or `..` segment (also percent-encoded) is refused by
//! any rule that lists paths, since the upstream may resolve it outside the prefix.
//!
//! The request's port does not take part in HTTP decisions (it is recorded by the caller).

use std::net::SocketAddr;

use super::compiled::{CompiledPolicy, CompiledRule, HostMatch, TcpMatch, has_dot_segment};
use super::spec::Enforcement;
use crate::host::Host;

/// What the HTTP evaluator sees of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo<'a> {
    /// The target host (SNI or Host without its port).
    pub host: &'a Host,
    /// The destination port.
    pub port: u16,
    /// The request method (any case).
    pub method: &'a str,
    /// The request path, without the query.
    pub path: &'a str,
}

/// A policy decision and whether it takes effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What the policy says.
    pub verdict: Verdict,
    /// `false` only for a refusal under [`Enforcement::Audit`]: the caller lets the request
    /// through and records the refusal.
    pub enforced: bool,
}

/// What the policy says about a request or connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused, for the reason given.
    Refuse(Refusal),
}

/// Why a request or connection is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The policy entry that refused, for the audit record
    /// (e.g. `rules[1] api.test: method DELETE not in [GET, POST]`).
    pub rule: String,
    /// A sentence for the 403 body, saying what the agent may not do.
    pub reason: String,
}

/// A request-rate budget that applies to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRule {
    /// The normalised host the requests are counted under (each host its own budget).
    pub key: String,
    /// Requests allowed per rolling minute (at least 1).
    pub per_minute: u32,
}

impl Decision {
    /// Whether the caller should let the request through (allowed, or refused in audit mode).
    pub fn lets_through(&self) -> bool {
        matches!(self.verdict, Verdict::Allow) || !self.enforced
    }
}

/// Decides whether an HTTP request may go out.
///
/// # Security
/// Fails closed: a path with dot segments toward a host whose rule lists paths is refused.
pub fn evaluate(policy: &CompiledPolicy, req: &RequestInfo<'_>) -> Decision {
    decide(policy, refusal(policy, req))
}

/// Decides whether a connection to `host` may be passed through untouched (no requests to
/// see): the deny list, then the allow list; per-host rules cannot be checked on bytes the
/// gateway does not read, so a host whose rules restrict methods or paths is refused.
pub fn evaluate_host(policy: &CompiledPolicy, host: &Host) -> Decision {
    decide(policy, host_refusal(policy, host))
}

/// Decides whether `host` could be reached at all under the deny and allow lists (what the DNS
/// responder asks before it resolves a name): per-host rules restrict requests, not names,
/// so they do not apply here.
pub fn evaluate_name(policy: &CompiledPolicy, host: &Host) -> Decision {
    decide(policy, denied_or_not_allowed(policy, host))
}

/// Decides whether `host` is on the deny list (and nothing else).
pub fn evaluate_deny(policy: &CompiledPolicy, host: &Host) -> Decision {
    decide(policy, denied(policy, host))
}

/// Decides whether non-HTTP TCP to `dest` may be relayed. `host` is the SNI when there was
/// one.
///
/// The deny list applies to `host` and to the destination address; then some `tcp_allow`
/// entry must name the port and either the address range or the host (`*` matches any
/// named host, never a nameless connection). The HTTP `allow` list does not apply here.
pub fn evaluate_tcp(policy: &CompiledPolicy, host: Option<&Host>, dest: SocketAddr) -> Decision {
    decide(policy, tcp_refusal(policy, host, dest))
}

/// The rate limit for requests toward `host`: that of the most specific matching
/// `rate_limits` pattern (the lowest, if one pattern is written several times). `None` when
/// no limit applies.
pub fn rate_limit_for(policy: &CompiledPolicy, host: &Host) -> Option<RateRule> {
    let limits = &policy.spec().rate_limits;
    let per_minute = policy
        .rate_index
        .lookup(host)?
        .iter()
        .filter_map(|&i| limits.get(i).map(|l| l.per_minute))
        .min()?;
    Some(RateRule {
        key: host.as_str().to_owned(),
        per_minute,
    })
}

fn decide(policy: &CompiledPolicy, refusal: Option<Refusal>) -> Decision {
    match refusal {
        None => Decision {
            verdict: Verdict::Allow,
            enforced: true,
        },
        Some(refusal) => Decision {
            verdict: Verdict::Refuse(refusal),
            enforced: policy.enforcement() == Enforcement::Enforce,
        },
    }
}

fn host_refusal(policy: &CompiledPolicy, host: &Host) -> Option<Refusal> {
    if let Some(refusal) = denied_or_not_allowed(policy, host) {
        return Some(refusal);
    }
    let restricted = policy.rule_index.lookup(host).is_some_and(|indexes| {
        indexes.iter().any(|&i| {
            policy
                .spec()
                .rules
                .get(i)
                .is_some_and(|r| !r.methods.is_empty() || !r.paths.is_empty())
        })
    });
    restricted.then(|| Refusal {
        rule: format!("rules ({})", host),
        reason: format!(
            "{} has method or path rules, which cannot be checked on a passed-through connection",
            host
        ),
    })
}

fn denied_or_not_allowed(policy: &CompiledPolicy, host: &Host) -> Option<Refusal> {
    if let Some(refusal) = denied(policy, host) {
        return Some(refusal);
    }
    if let Some(allow) = &policy.allow
        && allow.lookup(host).is_none()
    {
        return Some(Refusal {
            rule: format!("allow (no entry for {})", host),
            reason: format!("{} is not on this session's allow list", host),
        });
    }
    None
}

fn refusal(policy: &CompiledPolicy, req: &RequestInfo<'_>) -> Option<Refusal> {
    let host = req.host;
    if let Some(refusal) = denied_or_not_allowed(policy, host) {
        return Some(refusal);
    }
    let indexes = policy.rule_index.lookup(host)?;
    let mut first = None;
    for &i in indexes {
        let Some(rule) = policy.rules.get(i) else {
            continue;
        };
        match rule_refusal(rule, host, req) {
            None => return None,
            Some(refusal) => {
                first.get_or_insert(refusal);
            }
        }
    }
    first
}

fn denied(policy: &CompiledPolicy, host: &Host) -> Option<Refusal> {
    let &i = policy.deny.lookup(host)?.first()?;
    let pattern = policy.spec().deny.get(i).map_or("?", String::as_str);
    Some(Refusal {
        rule: format!("deny[{i}] {pattern}"),
        reason: format!("{} is on this session's deny list", host),
    })
}

fn rule_refusal(rule: &CompiledRule, host: &Host, req: &RequestInfo<'_>) -> Option<Refusal> {
    let name = format!("rules[{}] {}", rule.index, rule.host);
    let method = clip(req.method, 32);
    if !rule.methods.is_empty()
        && !rule
            .methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(req.method))
    {
        return Some(Refusal {
            rule: format!(
                "{name}: method {method} not in [{}]",
                rule.methods.join(", ")
            ),
            reason: format!(
                "{} requests to {} are not allowed by this session's policy (allowed: {})",
                method.to_ascii_uppercase(),
                host,
                rule.methods.join(", ")
            ),
        });
    }
    if rule.paths.is_empty() {
        return None;
    }
    let path = clip(req.path, 128);
    if has_dot_segment(req.path) {
        return Some(Refusal {
            rule: format!("{name}: path {path} has dot segments"),
            reason: format!(
                "path {path} toward {} has . or .. segments; send a normalised path",
                host
            ),
        });
    }
    if rule.paths.iter().any(|p| path_allows(p, req.path)) {
        return None;
    }
    Some(Refusal {
        rule: format!("{name}: path {path} not under [{}]", rule.paths.join(", ")),
        reason: format!(
            "path {path} toward {} is not allowed by this session's policy (allowed prefixes: {})",
            host,
            rule.paths.join(", ")
        ),
    })
}

/// Whether prefix `prefix` allows `path` (segment boundaries; see the module docs).
fn path_allows(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

fn tcp_refusal(policy: &CompiledPolicy, host: Option<&Host>, dest: SocketAddr) -> Option<Refusal> {
    let ip = crate::net::canonical(dest.ip());
    let ip_host = Host::from(ip);
    if let Some(refusal) = host
        .into_iter()
        .chain([&ip_host])
        .find_map(|h| denied(policy, h))
    {
        return Some(refusal);
    }
    let allowed = policy.tcp_by_port.get(&dest.port()).is_some_and(|entries| {
        entries
            .iter()
            .filter_map(|&i| policy.tcp_allow.get(i))
            .any(|entry| match &entry.target {
                TcpMatch::Cidr(cidr) => cidr.contains(ip),
                TcpMatch::Host(HostMatch::Any) => host.is_some(),
                TcpMatch::Host(HostMatch::Pattern(p)) => host.is_some_and(|h| p.matches(h)),
            })
    });
    if allowed {
        return None;
    }
    let named = host.map_or(String::new(), |h| format!("{h} "));
    let dest = SocketAddr::new(ip, dest.port());
    Some(Refusal {
        rule: format!("tcp_allow (no entry for {named}{dest})"),
        reason: format!(
            "non-HTTP TCP to {named}{dest} is not allowed by this session's policy (tcp_allow)"
        ),
    })
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
