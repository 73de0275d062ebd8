//! Drafting a policy from what a session did (typically under `enforcement = "audit"`).
//!
//! [`suggest`] returns the smallest policy, in this module's vocabulary, that would have
//! allowed every observed request and connection:
//! - `allow`: the exact HTTP hosts seen, sorted (an empty list if none);
//! - `rules`: one per host that made requests, with the methods seen and the paths generalised
//!   to their first segment: `/v1/chat/completions` → `/v1/`, `/v1` → `/v1`, `/` → `/`.
//!   A host with a request whose path is unknown, not absolute, or has dot segments gets no
//!   path restriction; a host with an unknown or malformed method gets no method restriction;
//! - `tcp_allow`: `host:port` (or `ip:port`, `[v6]:port`) for each non-HTTP connection;
//! - `passthrough`: each host where a client that most likely pins its server's certificate
//!   refused Sluice's — a client of the system trust store, which `sluice exec` overlays
//!   ([`likely_pinned`]); a runtime with roots of its own needs its variable instead
//!   ([`crate::tls::clients::advise`] says which). A proposal to review, never applied by
//!   itself;
//! - no deny list or rate limits; PII off; enforcement on.
//!
//! Observations without a method (connection-level records) only add their host to `allow`.
//! Hosts that are not valid names are skipped: no policy could name them. The output is
//! sorted, so the same observations always give the same policy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::compiled::has_dot_segment;
use super::spec::{Enforcement, HostRule, PiiMode, PolicySpec};
use crate::host::Host;
use crate::tls::clients::likely_pinned;

/// What an audit record says about one request or connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The host (SNI / Host, or the destination address for nameless TCP).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// The request method, for HTTP requests.
    pub method: Option<String>,
    /// The request path (a query, if present, is ignored), for HTTP requests.
    pub path: Option<String>,
    /// Whether this was non-HTTP TCP (relayed, not intercepted).
    pub tcp: bool,
    /// Whether the client refused Sluice's certificate here (a pinned client, or one that
    /// does not trust the CA).
    pub refused_certificate: bool,
    /// The executable of a client that refused Sluice's certificate, when it was read.
    pub executable: Option<String>,
}

/// The smallest policy that would have allowed everything observed (see the module docs).
pub fn suggest(observed: impl IntoIterator<Item = Observed>) -> PolicySpec {
    let mut hosts: BTreeMap<String, Draft> = BTreeMap::new();
    let mut tcp: BTreeSet<(String, u16)> = BTreeSet::new();
    let mut pinned: BTreeSet<(String, u16)> = BTreeSet::new();
    for seen in observed {
        let Ok(host) = Host::parse(&seen.host) else {
            continue;
        };
        let name = host.as_str().to_owned();
        if seen.refused_certificate {
            hosts.entry(name.clone()).or_default();
            // A runtime with roots of its own needs its variable, not passthrough.
            if likely_pinned(seen.executable.as_deref()) {
                pinned.insert((name, seen.port));
            }
            continue;
        }
        if seen.tcp {
            tcp.insert((name, seen.port));
            continue;
        }
        let draft = hosts.entry(name).or_default();
        let Some(method) = seen.method else {
            continue;
        };
        draft.requests = true;
        match normal_method(&method) {
            Some(m) => {
                draft.methods.insert(m);
            }
            None => draft.any_method = true,
        }
        match seen.path.as_deref().and_then(first_segment) {
            Some(prefix) => {
                draft.paths.insert(prefix);
            }
            None => draft.any_path = true,
        }
    }
    let rules = hosts
        .iter()
        .filter(|(_, draft)| draft.requests)
        .map(|(host, draft)| HostRule {
            host: host.clone(),
            methods: if draft.any_method {
                Vec::new()
            } else {
                draft.methods.iter().cloned().collect()
            },
            paths: if draft.any_path {
                Vec::new()
            } else {
                minimal_prefixes(&draft.paths)
            },
        })
        .collect();
    PolicySpec {
        allow: Some(hosts.into_keys().collect()),
        deny: Vec::new(),
        rules,
        rate_limits: Vec::new(),
        tcp_allow: tcp
            .into_iter()
            .map(|(host, port)| tcp_entry(&host, port))
            .collect(),
        passthrough: pinned
            .into_iter()
            .map(|(host, port)| {
                if port == 443 {
                    host
                } else {
                    format!("{host}:{port}")
                }
            })
            .collect(),
        pii: PiiMode::Off,
        enforcement: Enforcement::Enforce,
    }
}

/// What was seen toward one HTTP host.
#[derive(Debug, Default)]
struct Draft {
    requests: bool,
    methods: BTreeSet<String>,
    any_method: bool,
    paths: BTreeSet<String>,
    any_path: bool,
}

/// The uppercase method if it is a plain token.
fn normal_method(method: &str) -> Option<String> {
    let ok = !method.is_empty()
        && method.len() <= 32
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then(|| method.to_ascii_uppercase())
}

/// `/a/b…` → `/a/`, `/a` → `/a`, `/` → `/`; `None` when no prefix can be written for it.
fn first_segment(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let rest = path.strip_prefix('/')?;
    if has_dot_segment(path)
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    Some(match rest.split_once('/') {
        Some(("", _)) => "/".to_owned(),
        Some((first, _)) => format!("/{first}/"),
        None => format!("/{rest}"),
    })
}

/// Drops prefixes another one already covers (`/` covers all; `/a` covers `/a/`).
fn minimal_prefixes(paths: &BTreeSet<String>) -> Vec<String> {
    if paths.contains("/") {
        return vec!["/".to_owned()];
    }
    paths
        .iter()
        .filter(|p| p.strip_suffix('/').is_none_or(|bare| !paths.contains(bare)))
        .cloned()
        .collect()
}

fn tcp_entry(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
#[path = "suggest_tests.rs"]
mod tests;
