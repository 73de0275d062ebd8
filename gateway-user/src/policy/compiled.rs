//! A [`PolicySpec`] checked once and indexed for the request path.
//!
//! Compilation validates every field (errors name the field and its index, e.g.
//! `rules[2].paths[0]: must start with /`) and builds host indexes: exact names in a hash map,
//! `*.suffix` patterns in a second hash map probed once per label of the host, and `*` as a
//! catch-all. A lookup costs one hash probe per label, whatever the number of rules.

use std::collections::HashMap;
use std::fmt;

use crate::host::{Host, HostPattern, PatternError};
use crate::net::{Cidr, CidrError};

use super::spec::{Enforcement, PiiMode, PolicySpec};

/// A host pattern as a policy writes it: `*` (every named host), an exact name, or
/// `*.suffix` (names strictly below `suffix`). Case-insensitive; one trailing dot ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `*`: every host.
    Any,
    /// An exact name or a `*.suffix` pattern.
    Pattern(HostPattern),
}

/// Why a policy could not be compiled: the field (with its index) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// The offending field, e.g. `rules[2].paths[0]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: Invalid,
}

/// What is wrong with one policy entry; the message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A host entry that is not a name, address or `*.suffix` pattern.
    #[error(transparent)]
    Host(#[from] PatternError),
    /// A method that is not an RFC 9110 token.
    #[error("{0:?} is not an HTTP method (e.g. GET, POST)")]
    Method(String),
    /// A path prefix that does not start with `/`.
    #[error("must start with /")]
    PathNotAbsolute,
    /// A path prefix with a query, fragment, space or control character.
    #[error("{0:?} must be a plain path prefix (no query, fragment, spaces or control characters)")]
    PathCharacters(String),
    /// A path prefix with `.` or `..` segments.
    #[error("{0:?} must not contain . or .. segments")]
    PathDotSegment(String),
    /// A rate limit of zero.
    #[error("must be at least 1 (use deny to block a host)")]
    ZeroRate,
    /// A passthrough entry that is not `HOST` or `HOST:PORT`.
    #[error(
        "{0:?} is not HOST or HOST:PORT with a port 1..=65535 (e.g. pinned.example.com or pinned.example.com:8443)"
    )]
    Passthrough(String),
    /// A passthrough entry naming an address (passthrough matches the TLS server name).
    #[error("{0:?}: a passthrough entry names a TLS server name, not an address")]
    PassthroughAddress(String),
    /// A `tcp_allow` entry that is not `HOST_OR_CIDR:PORT`.
    #[error(
        "{0:?} is not HOST_OR_CIDR:PORT (e.g. db.example.com:5432, 203.0.113.0/24:443, [2001:db8::/32]:22)"
    )]
    Tcp(String),
    /// A `tcp_allow` entry with port 0.
    #[error("{0:?}: port must be 1..=65535")]
    TcpPort(String),
    /// A `tcp_allow` IPv6 target without brackets.
    #[error("{0:?}: write IPv6 targets in brackets ([2001:db8::1]:443)")]
    TcpBrackets(String),
    /// A `tcp_allow` address range that does not parse.
    #[error(transparent)]
    TcpRange(#[from] CidrError),
    /// A `tcp_allow` host entry that is a wildcard.
    #[error(
        "{text:?}: a host entry must be an exact name: opaque TCP carries no name, so \
         Sluice matches the destination against the addresses the name resolves to, and a \
         wildcard has none (use an address range, e.g. 203.0.113.0/24:{port})"
    )]
    TcpWildcard {
        /// The entry as written.
        text: String,
        /// Its port.
        port: u16,
    },
}

/// A validated, indexed policy, ready for [`super::evaluate`] and friends.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    spec: PolicySpec,
    pub(super) deny: HostIndex,
    pub(super) allow: Option<HostIndex>,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) rule_index: HostIndex,
    pub(super) rate_index: HostIndex,
    pub(super) tcp_allow: Vec<TcpAllow>,
    pub(super) tcp_by_port: HashMap<u16, Vec<usize>>,
    passthrough: Vec<HostMatch>,
    passthrough_ports: Vec<u16>,
    passthrough_index: HostIndex,
}

/// One `rules[i]` entry, normalised.
#[derive(Clone, Debug)]
pub(super) struct CompiledRule {
    /// Position in `rules`, for refusal messages.
    pub index: usize,
    pub host: HostMatch,
    /// Uppercase; empty allows every method.
    pub methods: Vec<String>,
    /// Each starts with `/`; empty allows every path.
    pub paths: Vec<String>,
}

/// One `tcp_allow[i]` entry.
#[derive(Clone, Debug)]
pub(super) struct TcpAllow {
    pub target: TcpMatch,
    pub port: u16,
}

/// What a `tcp_allow` entry matches besides the port.
#[derive(Clone, Debug)]
pub(super) enum TcpMatch {
    /// A host pattern, matched against the SNI / Host when there is one.
    Host(HostMatch),
    /// An address range, matched against the original destination.
    Cidr(Cidr),
}

/// Host patterns indexed for lookup by the most specific match.
#[derive(Clone, Debug, Default)]
pub(super) struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    suffix: HashMap<String, Vec<usize>>,
    any: Vec<usize>,
}

impl Default for CompiledPolicy {
    /// The empty policy: every host allowed, nothing passed through, no opaque TCP.
    fn default() -> CompiledPolicy {
        CompiledPolicy {
            spec: PolicySpec::default(),
            deny: HostIndex::default(),
            allow: None,
            rules: Vec::new(),
            rule_index: HostIndex::default(),
            rate_index: HostIndex::default(),
            tcp_allow: Vec::new(),
            tcp_by_port: HashMap::new(),
            passthrough: Vec::new(),
            passthrough_ports: Vec::new(),
            passthrough_index: HostIndex::default(),
        }
    }
}

impl CompiledPolicy {
    /// Validates `spec` and builds its indexes; the error names the first bad field.
    pub fn compile(spec: &PolicySpec) -> Result<CompiledPolicy, PolicyError> {
        let mut deny = HostIndex::default();
        for (i, text) in spec.deny.iter().enumerate() {
            deny.insert(&parse_host(text, || format!("deny[{i}]"))?, i);
        }
        let allow = match &spec.allow {
            None => None,
            Some(list) => {
                let mut index = HostIndex::default();
                for (i, text) in list.iter().enumerate() {
                    index.insert(&parse_host(text, || format!("allow[{i}]"))?, i);
                }
                Some(index)
            }
        };
        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut rule_index = HostIndex::default();
        for (i, rule) in spec.rules.iter().enumerate() {
            let host = parse_host(&rule.host, || format!("rules[{i}].host"))?;
            let methods = rule
                .methods
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    parse_method(m).map_err(|r| err(format!("rules[{i}].methods[{j}]"), r))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let paths = rule
                .paths
                .iter()
                .enumerate()
                .map(|(j, p)| parse_path(p).map_err(|r| err(format!("rules[{i}].paths[{j}]"), r)))
                .collect::<Result<Vec<_>, _>>()?;
            rule_index.insert(&host, i);
            rules.push(CompiledRule {
                index: i,
                host,
                methods,
                paths,
            });
        }
        let mut rate_index = HostIndex::default();
        for (i, limit) in spec.rate_limits.iter().enumerate() {
            let host = parse_host(&limit.host, || format!("rate_limits[{i}].host"))?;
            if limit.per_minute == 0 {
                return Err(err(
                    format!("rate_limits[{i}].per_minute"),
                    Invalid::ZeroRate,
                ));
            }
            rate_index.insert(&host, i);
        }
        let mut tcp_allow = Vec::with_capacity(spec.tcp_allow.len());
        let mut tcp_by_port: HashMap<u16, Vec<usize>> = HashMap::new();
        for (i, text) in spec.tcp_allow.iter().enumerate() {
            let entry = parse_tcp(text).map_err(|r| err(format!("tcp_allow[{i}]"), r))?;
            tcp_by_port.entry(entry.port).or_default().push(i);
            tcp_allow.push(entry);
        }
        let mut passthrough = Vec::with_capacity(spec.passthrough.len());
        let mut passthrough_ports = Vec::with_capacity(spec.passthrough.len());
        let mut passthrough_index = HostIndex::default();
        for (i, text) in spec.passthrough.iter().enumerate() {
            let field = || format!("passthrough[{i}]");
            let (host, port) = split_passthrough(text).map_err(|r| err(field(), r))?;
            let host = parse_host(host, field)?;
            if let HostMatch::Pattern(HostPattern::Exact(exact)) = &host
                && exact.is_ip()
            {
                return Err(err(field(), Invalid::PassthroughAddress(text.clone())));
            }
            passthrough_index.insert(&host, i);
            passthrough.push(host);
            passthrough_ports.push(port);
        }
        Ok(CompiledPolicy {
            spec: spec.clone(),
            deny,
            allow,
            rules,
            rule_index,
            rate_index,
            tcp_allow,
            tcp_by_port,
            passthrough,
            passthrough_ports,
            passthrough_index,
        })
    }

    /// The policy a connection of this session is routed by: `node`'s `passthrough` and
    /// `tcp_allow` entries (the node's rules, see [`crate::config::PolicyConfig`]) followed by
    /// this session's own, and everything else (allow and deny lists, rules, limits, PII,
    /// enforcement) from the session.
    ///
    /// # Security
    /// The node only adds routes a session may then narrow: its deny and allow lists apply
    /// to the node's passthrough and `tcp_allow` entries as to its own.
    pub fn layered_over(&self, node: &CompiledPolicy) -> Result<CompiledPolicy, PolicyError> {
        let mut spec = self.spec.clone();
        let join = |base: &[String], own: &[String]| base.iter().chain(own).cloned().collect();
        spec.passthrough = join(&node.spec.passthrough, &self.spec.passthrough);
        spec.tcp_allow = join(&node.spec.tcp_allow, &self.spec.tcp_allow);
        CompiledPolicy::compile(&spec)
    }

    /// The policy as written (for the control API and audit).
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// How request bodies are scanned for PII.
    pub fn pii_mode(&self) -> PiiMode {
        self.spec.pii
    }

    /// Whether refusals take effect or are only recorded.
    pub fn enforcement(&self) -> Enforcement {
        self.spec.enforcement
    }

    /// The SNI patterns whose TLS is passed through untouched, in the order written.
    pub fn passthrough_patterns(&self) -> &[HostMatch] {
        &self.passthrough
    }

    /// The destination ports allowed for a passed-through connection to `sni`: those of every
    /// passthrough entry matching it (443 for an entry written without `:PORT`). Empty when
    /// no entry matches.
    pub fn passthrough_ports(&self, sni: &Host) -> Vec<u16> {
        let mut ports = Vec::new();
        for (host, port) in self.passthrough.iter().zip(&self.passthrough_ports) {
            if host.matches(sni) && !ports.contains(port) {
                ports.push(*port);
            }
        }
        ports
    }

    /// The exact host names of the `tcp_allow` entries for `port`: opaque TCP carries no
    /// name, so the caller resolves these and relays when the destination is among their
    /// addresses (then [`super::evaluate_tcp`] with that name decides).
    pub fn tcp_allow_hosts(&self, port: u16) -> Vec<&Host> {
        let entries = self.tcp_by_port.get(&port).map_or(&[][..], Vec::as_slice);
        entries
            .iter()
            .filter_map(|&i| match &self.tcp_allow.get(i)?.target {
                TcpMatch::Host(HostMatch::Pattern(HostPattern::Exact(name))) => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Whether some `tcp_allow` entry (any port) names `host` exactly.
    pub fn tcp_allow_names(&self, host: &Host) -> bool {
        self.tcp_allow.iter().any(|entry| {
            matches!(&entry.target,
                TcpMatch::Host(HostMatch::Pattern(HostPattern::Exact(name))) if host == name)
        })
    }

    /// Whether TLS toward `sni` is passed through untouched (no interception, no inspection).
    ///
    /// # Security
    /// Passed-through traffic escapes credential injection, PII checks and per-request rules.
    pub fn is_passthrough(&self, sni: &Host) -> bool {
        self.passthrough_index.lookup(sni).is_some()
    }
}

impl HostMatch {
    /// Parses `*`, `api.example.com` or `*.example.com`.
    pub fn parse(text: &str) -> Result<HostMatch, PatternError> {
        if text.trim() == "*" {
            return Ok(HostMatch::Any);
        }
        HostPattern::parse(text).map(HostMatch::Pattern)
    }

    /// Whether `host` matches.
    pub fn matches(&self, host: &Host) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Pattern(p) => p.matches(host),
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Pattern(p) => p.fmt(f),
        }
    }
}

impl HostIndex {
    fn insert(&mut self, host: &HostMatch, i: usize) {
        let slot = match host {
            HostMatch::Any => &mut self.any,
            HostMatch::Pattern(HostPattern::Exact(name)) => {
                self.exact.entry(name.as_str().to_owned()).or_default()
            }
            HostMatch::Pattern(HostPattern::Suffix(s)) => self.suffix.entry(s.clone()).or_default(),
        };
        slot.push(i);
    }

    /// The entries of the most specific pattern matching `host` (exact, then the longest
    /// suffix, then `*`), in the order written; `None` if nothing matches.
    pub(super) fn lookup(&self, host: &Host) -> Option<&[usize]> {
        if let Some(found) = self.exact.get(host.as_str()) {
            return Some(found);
        }
        if !host.is_ip() && !self.suffix.is_empty() {
            let mut rest = host.as_str();
            while let Some((_, tail)) = rest.split_once('.') {
                if let Some(found) = self.suffix.get(tail) {
                    return Some(found);
                }
                rest = tail;
            }
        }
        (!self.any.is_empty()).then_some(self.any.as_slice())
    }
}

fn err(field: String, reason: Invalid) -> PolicyError {
    PolicyError { field, reason }
}

fn parse_host(text: &str, field: impl Fn() -> String) -> Result<HostMatch, PolicyError> {
    HostMatch::parse(text).map_err(|e| err(field(), e.into()))
}

/// Uppercases an HTTP method after checking it is an RFC 9110 token.
fn parse_method(method: &str) -> Result<String, Invalid> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(tchar) {
        return Err(Invalid::Method(method.to_owned()));
    }
    Ok(method.to_ascii_uppercase())
}

/// Checks a path prefix: starts with `/`, no query, fragment, spaces or dot segments.
fn parse_path(path: &str) -> Result<String, Invalid> {
    if !path.starts_with('/') {
        return Err(Invalid::PathNotAbsolute);
    }
    if path
        .bytes()
        .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Invalid::PathCharacters(path.to_owned()));
    }
    if has_dot_segment(path) {
        return Err(Invalid::PathDotSegment(path.to_owned()));
    }
    Ok(path.to_owned())
}

/// Whether `path` has a `.` or `..` segment, literally or percent-encoded.
pub(crate) fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let dots = lower.replace("%2e", ".");
        dots == "." || dots == ".."
    })
}

/// The port of a passthrough entry written without one.
pub const PASSTHROUGH_DEFAULT_PORT: u16 = 443;

/// Splits a passthrough entry into its host pattern and port (`HOST` means port 443).
fn split_passthrough(text: &str) -> Result<(&str, u16), Invalid> {
    let trimmed = text.trim();
    let Some((host, port)) = trimmed.rsplit_once(':') else {
        return Ok((trimmed, PASSTHROUGH_DEFAULT_PORT));
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 && !host.contains(':') => Ok((host, port)),
        _ => Err(Invalid::Passthrough(text.to_owned())),
    }
}

/// Parses `HOST_OR_CIDR:PORT` (`[v6]:port` or `[v6/len]:port` for IPv6). A host must be an
/// exact name: it is matched by resolving it, and a wildcard has no addresses.
fn parse_tcp(text: &str) -> Result<TcpAllow, Invalid> {
    let bad = || Invalid::Tcp(text.to_owned());
    let (target, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let port = match port.parse::<u16>() {
        Ok(0) => return Err(Invalid::TcpPort(text.to_owned())),
        Ok(port) => port,
        Err(_) => return Err(bad()),
    };
    let target = match target.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
        None if target.contains(':') => {
            return Err(Invalid::TcpBrackets(text.to_owned()));
        }
        None => target,
    };
    let target = if target.starts_with(|c: char| c.is_ascii_digit()) || target.contains(':') {
        match Cidr::parse(target) {
            Ok(cidr) => TcpMatch::Cidr(cidr),
            Err(_) if !target.contains(':') && !target.contains('/') => {
                TcpMatch::Host(HostMatch::parse(target)?)
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        TcpMatch::Host(HostMatch::parse(target)?)
    };
    if let TcpMatch::Host(HostMatch::Any | HostMatch::Pattern(HostPattern::Suffix(_))) = target {
        return Err(Invalid::TcpWildcard {
            text: text.to_owned(),
            port,
        });
    }
    Ok(TcpAllow { target, port })
}

#[cfg(test)]
#[path = "compiled_tests.rs"]
mod tests;
