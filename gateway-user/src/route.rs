//! The per-connection routing decision, as a pure function of what detection saw, where the
//! connection was going, and the session's routing policy.
//!
//! The I/O layer only carries the [`Route`] out: intercept (terminate TLS or serve plain
//! HTTP), pass TLS through untouched, relay opaque TCP, or reject.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::net::Cidr;

/// What protocol detection saw on the first bytes of a connection (a summary; the detector
/// keeps the bytes for replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A TLS ClientHello, with its SNI if it carried one.
    Tls {
        /// The server name the client asked for.
        sni: Option<String>,
    },
    /// An HTTP/1 request head, with its `Host` if it carried one.
    Http {
        /// The `Host` header (or absolute-form authority), port included as sent.
        host: Option<String>,
    },
    /// Bytes that are neither TLS nor HTTP/1.
    Opaque,
    /// The client sent nothing before the deadline (a server-speaks-first protocol?).
    Timeout,
    /// The detection buffer filled up without a complete hello or request head.
    TooLarge,
    /// The bytes looked like TLS or HTTP but did not parse.
    Malformed(String),
    /// The client closed before sending anything useful.
    Closed,
}

/// A host name pattern: an exact name, or `*.suffix` matching any name strictly below
/// `suffix`. Comparison is case-insensitive and ignores one trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this name (lowercase, no trailing dot).
    Exact(String),
    /// Any name ending in `.suffix` (the suffix itself does not match).
    Suffix(String),
}

/// Why a [`HostPattern`] could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty, or contains characters that cannot appear in a host name.
    #[error("host pattern {0:?} is not a host name or `*.suffix`")]
    Invalid(String),
    /// A `*` anywhere other than a leading `*.` label.
    #[error("host pattern {0:?}: `*` is only allowed as the whole first label (`*.example.com`)")]
    Wildcard(String),
}

/// A destination a [`RoutePolicy::tcp_allow`] rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpTarget {
    /// An exact host name: matches when the original destination is one of the addresses the
    /// daemon's resolver returns for it (the caller resolves; see [`route`]'s `dest_names`).
    /// Wildcards are refused when the rule is loaded: they name no address.
    Host(HostPattern),
    /// An address range, matched against the original destination IP.
    Cidr(Cidr),
}

/// One passthrough entry: TLS whose SNI matches `host` is copied untouched, but only toward
/// `port` of an address `host` resolves to. Written `HOST` (port 443) or `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughRule {
    /// The SNI pattern.
    pub host: HostPattern,
    /// The one destination port allowed for it.
    pub port: u16,
}

/// The routing part of a session's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// TLS to these hosts is copied byte for byte (no interception, no inspection), toward
    /// the rule's port of the host's own addresses only. Default is empty.
    pub passthrough: Vec<PassthroughRule>,
    /// Non-HTTP TCP allowed to these destinations and ports (relayed untouched).
    /// Default is empty.
    pub tcp_allow: Vec<(TcpTarget, u16)>,
}

/// What to do with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Terminate TLS (or serve plain HTTP) and inspect every request for `host`.
    Intercept {
        /// The host from SNI or Host (as sent; lowercased, no port for TLS).
        host: String,
    },
    /// Copy the TLS bytes to the original destination untouched.
    Passthrough {
        /// The SNI.
        host: String,
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
    /// Plain HTTP without a Host header.
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
    /// The session's policy refuses the connection (the text names the rule).
    Session(String),
    /// A passthrough connection aimed somewhere its SNI's rule does not cover (another
    /// address than the name's, or another port); the text says which.
    Passthrough(String),
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
            Self::Passthrough(why) => write!(f, "passthrough: {why}"),
        }
    }
}

/// Decides what to do with a connection to `dest` after detection saw `detected`.
/// `dest_names` are the `tcp_allow` host names the caller resolved and found `dest`'s address
/// among (see [`tcp_host_candidates`]).
///
/// A passthrough route still has to pass [`passthrough_binding`] before it is carried out.
///
/// # Security
/// Fails closed: TLS without SNI, silence and opaque bytes are refused unless a `tcp_allow`
/// rule names the destination; a host is never invented.
pub fn route(
    detected: &Detected,
    dest: SocketAddr,
    policy: &RoutePolicy,
    dest_names: &[String],
) -> Route {
    let tcp_allowed = |dest| tcp_allowed(policy, dest, dest_names);
    match detected {
        Detected::Tls { sni: None } => Route::Reject(RejectReason::NoSni),
        Detected::Tls { sni: Some(sni) } => {
            let host = normalize(sni);
            if policy.passthrough.iter().any(|p| p.host.matches(&host)) {
                Route::Passthrough { host }
            } else {
                Route::Intercept { host }
            }
        }
        Detected::Http { host: None } => Route::Reject(RejectReason::NoHost),
        Detected::Http { host: Some(host) } => match host_without_port(host) {
            Some(host) => Route::Intercept {
                host: normalize(host),
            },
            None => Route::Reject(RejectReason::NoHost),
        },
        Detected::Opaque if tcp_allowed(dest) => Route::Relay,
        Detected::Opaque => Route::Reject(RejectReason::OpaqueNotAllowed(dest)),
        Detected::Timeout if tcp_allowed(dest) => Route::Relay,
        Detected::Timeout => Route::Reject(RejectReason::Silent(dest)),
        Detected::TooLarge => Route::Reject(RejectReason::TooLarge),
        Detected::Malformed(why) => Route::Reject(RejectReason::Malformed(why.clone())),
        Detected::Closed => Route::Reject(RejectReason::Closed),
    }
}

/// Checks a passthrough connection against its rules: `dest`'s port must be one of `ports`
/// (those of every passthrough entry, node or session, matching `host`), and `dest`'s address
/// one of `resolved`, what the daemon's resolver returns for `host` (or why it failed).
///
/// # Security
/// The SNI is the sandbox's claim; without this check a passthrough name would be a raw
/// tunnel to any address and port. A failed lookup refuses.
pub fn passthrough_binding(
    host: &str,
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

/// The exact host names of `policy`'s `tcp_allow` entries for `port`: the names the caller
/// resolves to see whether the original destination is one of their addresses.
pub fn tcp_host_candidates(policy: &RoutePolicy, port: u16) -> Vec<String> {
    let mut names = Vec::new();
    for (target, p) in &policy.tcp_allow {
        if let (TcpTarget::Host(HostPattern::Exact(name)), true) = (target, *p == port)
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    names
}

impl PassthroughRule {
    /// The port of an entry written without one.
    pub const DEFAULT_PORT: u16 = 443;

    /// Parses `HOST` (port 443) or `HOST:PORT`, where `HOST` is an exact name or
    /// `*.suffix`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<PassthroughRule, String> {
        let trimmed = text.trim();
        let (host, port) = match trimmed.rsplit_once(':') {
            None => (trimmed, Self::DEFAULT_PORT),
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if port > 0 && !host.contains(':') => (host, port),
                _ => {
                    return Err(format!(
                        "{text:?} is not HOST or HOST:PORT with a port 1..=65535 (e.g. pinned.example.com or pinned.example.com:8443)"
                    ));
                }
            },
        };
        let host = HostPattern::parse(host).map_err(|e| e.to_string())?;
        if let HostPattern::Exact(name) = &host
            && name.parse::<IpAddr>().is_ok()
        {
            return Err(format!(
                "{text:?}: a passthrough entry names a TLS server name, not an address"
            ));
        }
        Ok(PassthroughRule { host, port })
    }
}

impl fmt::Display for PassthroughRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == Self::DEFAULT_PORT {
            self.host.fmt(f)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com` (case-insensitive, one trailing dot
    /// ignored).
    pub fn parse(text: &str) -> Result<HostPattern, PatternError> {
        let lowered = normalize(text.trim());
        let (wild, name) = match lowered.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lowered.as_str()),
        };
        if name.contains('*') {
            return Err(PatternError::Wildcard(text.to_owned()));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let valid_ip = name.parse::<std::net::IpAddr>().is_ok();
        if !valid_ip && (name.len() > 253 || !name.split('.').all(label_ok)) {
            return Err(PatternError::Invalid(text.to_owned()));
        }
        Ok(if wild {
            HostPattern::Suffix(name.to_owned())
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }

    /// Whether `host` (any case, optional trailing dot, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize(host);
        match self {
            HostPattern::Exact(name) => host == *name,
            HostPattern::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The host part of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`), without
/// brackets; `None` if empty or malformed.
pub fn host_without_port(authority: &str) -> Option<&str> {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        inner
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if valid_port(port) && !host.contains(':') => host,
            Some(_) => return None,
            None => authority,
        }
    };
    (!host.is_empty()).then_some(host)
}

fn valid_port(port: &str) -> bool {
    port.is_empty() || port.parse::<u16>().is_ok()
}

/// Lowercases and drops one trailing dot.
fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Whether a `tcp_allow` rule covers `dest`: an address rule containing it, or a host rule
/// whose name is among `dest_names` (names resolved to `dest`'s address by the caller).
fn tcp_allowed(policy: &RoutePolicy, dest: SocketAddr, dest_names: &[String]) -> bool {
    policy.tcp_allow.iter().any(|(target, port)| {
        *port == dest.port()
            && match target {
                TcpTarget::Cidr(c) => c.contains(dest.ip()),
                TcpTarget::Host(HostPattern::Exact(name)) => dest_names.contains(name),
                TcpTarget::Host(HostPattern::Suffix(_)) => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn host_pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("api.example.com", "api.example.com", true),
            ("api.example.com", "API.Example.COM.", true),
            ("api.example.com", "example.com", false),
            ("api.example.com", "x.api.example.com", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", ".example.com", false),
            ("*.Example.COM.", "API.example.com", true),
            ("198.51.100.7", "198.51.100.7", true),
        ];
        for (p, host, want) in cases {
            assert_eq!(pat(p).matches(host), *want, "{p} vs {host}");
        }
    }

    #[test]
    fn host_pattern_rejects_table() {
        for bad in [
            "",
            "*",
            "a.*.com",
            "*example.com",
            "ex ample.com",
            "a..b",
            "**.a",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(pat("*.a.b").to_string(), "*.a.b");
    }

    #[test]
    fn host_without_port_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("example.com:8443", Some("example.com")),
            ("example.com:", Some("example.com")),
            ("198.51.100.7:80", Some("198.51.100.7")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("2001:db8::1", None),
            ("[2001:db8::1]x", None),
            ("example.com:99999", None),
            ("example.com:abc", None),
            ("", None),
            (":80", None),
        ];
        for (authority, want) in cases {
            assert_eq!(host_without_port(authority), *want, "{authority:?}");
        }
    }

    #[test]
    fn route_table() {
        let dest: SocketAddr = "203.0.113.10:443".parse().unwrap();
        let db: SocketAddr = "203.0.113.10:5432".parse().unwrap();
        let rule = |s: &str| PassthroughRule::parse(s).unwrap();
        let policy = RoutePolicy {
            passthrough: vec![rule("*.bank.test"), rule("pinned.test")],
            tcp_allow: vec![
                (
                    TcpTarget::Cidr(Cidr::parse("203.0.113.0/24").unwrap()),
                    5432,
                ),
                (TcpTarget::Host(pat("db.test")), 443),
            ],
        };
        let tls = |s: &str| Detected::Tls {
            sni: Some(s.into()),
        };
        let intercept = |h: &str| Route::Intercept { host: h.into() };
        let cases: Vec<(Detected, SocketAddr, Route)> = vec![
            (tls("API.example.com."), dest, intercept("api.example.com")),
            (
                tls("www.bank.test"),
                dest,
                Route::Passthrough {
                    host: "www.bank.test".into(),
                },
            ),
            (
                tls("pinned.test"),
                dest,
                Route::Passthrough {
                    host: "pinned.test".into(),
                },
            ),
            (tls("bank.test"), dest, intercept("bank.test")),
            (
                Detected::Tls { sni: None },
                dest,
                Route::Reject(RejectReason::NoSni),
            ),
            (
                Detected::Http {
                    host: Some("Example.com:8080".into()),
                },
                dest,
                intercept("example.com"),
            ),
            (
                Detected::Http { host: None },
                dest,
                Route::Reject(RejectReason::NoHost),
            ),
            (Detected::Opaque, db, Route::Relay),
            (
                Detected::Opaque,
                dest,
                Route::Reject(RejectReason::OpaqueNotAllowed(dest)),
            ),
            (Detected::Timeout, db, Route::Relay),
            (
                Detected::Timeout,
                dest,
                Route::Reject(RejectReason::Silent(dest)),
            ),
            (
                Detected::Timeout,
                "198.51.100.10:5432".parse().unwrap(),
                Route::Reject(RejectReason::Silent("198.51.100.10:5432".parse().unwrap())),
            ),
            (
                Detected::TooLarge,
                db,
                Route::Reject(RejectReason::TooLarge),
            ),
            (
                Detected::Malformed("bad".into()),
                db,
                Route::Reject(RejectReason::Malformed("bad".into())),
            ),
            (Detected::Closed, db, Route::Reject(RejectReason::Closed)),
        ];
        for (detected, dest, want) in cases {
            assert_eq!(
                route(&detected, dest, &policy, &[]),
                want,
                "{detected:?} {dest}"
            );
        }
        assert_eq!(
            route(&Detected::Opaque, db, &RoutePolicy::default(), &[]),
            Route::Reject(RejectReason::OpaqueNotAllowed(db))
        );
        // A host rule matches only when the caller resolved the name to the destination.
        let named = ["db.test".to_owned()];
        assert_eq!(
            route(&Detected::Opaque, dest, &policy, &named),
            Route::Relay
        );
        assert_eq!(
            route(&Detected::Timeout, dest, &policy, &named),
            Route::Relay
        );
        let other = ["other.test".to_owned()];
        assert_eq!(
            route(&Detected::Opaque, dest, &policy, &other),
            Route::Reject(RejectReason::OpaqueNotAllowed(dest))
        );
        assert_eq!(
            tcp_host_candidates(&policy, 443),
            vec!["db.test".to_owned()]
        );
        assert!(tcp_host_candidates(&policy, 5432).is_empty());
    }

    #[test]
    fn passthrough_rule_table() {
        let cases: &[(&str, Option<(&str, u16)>)] = &[
            ("pinned.test", Some(("pinned.test", 443))),
            ("Pinned.Test:8443", Some(("pinned.test", 8443))),
            ("*.bank.test:993", Some(("*.bank.test", 993))),
            ("pinned.test:0", None),
            ("pinned.test:99999", None),
            ("pinned.test:", None),
            ("pinned.test:https", None),
            ("198.51.100.7", None),
            ("[2001:db8::1]:443", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = PassthroughRule::parse(text)
                .ok()
                .map(|r| (r.host.to_string(), r.port));
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, want, "{text:?}");
        }
        let err = PassthroughRule::parse("pinned.test:0").unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
        assert_eq!(
            PassthroughRule::parse("a.test:8443").unwrap().to_string(),
            "a.test:8443"
        );
    }

    #[test]
    fn passthrough_binding_table() {
        let pinned: Vec<IpAddr> = vec![
            "198.51.100.10".parse().unwrap(),
            "2001:db8:1::10".parse().unwrap(),
        ];
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        type Case<'a> = (
            SocketAddr,
            &'a [u16],
            Result<&'a [IpAddr], &'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (at("198.51.100.10:443"), &[443], Ok(pinned.as_slice()), None),
            (
                at("[::ffff:198.51.100.10]:443"),
                &[443],
                Ok(pinned.as_slice()),
                None,
            ),
            (
                at("[2001:db8:1::10]:443"),
                &[443],
                Ok(pinned.as_slice()),
                None,
            ),
            (
                at("198.51.100.10:8443"),
                &[443, 8443],
                Ok(pinned.as_slice()),
                None,
            ),
            (
                at("198.51.100.66:443"),
                &[443],
                Ok(pinned.as_slice()),
                Some(
                    "198.51.100.66 is not an address of pinned.test (it resolves to 198.51.100.10, 2001:db8:1::10)",
                ),
            ),
            (
                at("198.51.100.10:8443"),
                &[443],
                Ok(pinned.as_slice()),
                Some(
                    "port 8443 is not allowed for pinned.test (allowed: 443); write pinned.test:8443",
                ),
            ),
            (
                at("198.51.100.10:443"),
                &[443],
                Err("timed out"),
                Some("cannot resolve pinned.test to check the destination: timed out"),
            ),
            (
                at("198.51.100.10:443"),
                &[443],
                Ok(&[][..]),
                Some("(it resolves to no address)"),
            ),
        ];
        for (dest, ports, resolved, want) in cases {
            let got = passthrough_binding("pinned.test", dest, ports, resolved);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(reason), Some(want)) => {
                    let text = reason.to_string();
                    assert!(text.starts_with("passthrough: "), "{text}");
                    assert!(text.contains(want), "{dest}: {text}");
                }
                (got, want) => unreachable!("{dest}: got {got:?}, want {want:?}"),
            }
        }
    }
}
