//! The per-connection routing decision, as a pure function of what detection saw, where the
//! connection was going, and the session's routing policy.
//!
//! The I/O layer only carries the [`Route`] out: intercept (terminate TLS or serve plain
//! HTTP), pass TLS through untouched, relay opaque TCP, or reject.

use std::fmt;
use std::net::SocketAddr;

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
    /// A host name (matched against SNI or Host; opaque TCP has none, so only IP rules can
    /// match opaque traffic).
    Host(HostPattern),
    /// An address range, matched against the original destination IP.
    Cidr(Cidr),
}

/// The routing part of a session's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// TLS to these hosts is copied byte for byte (no interception, no inspection).
    /// Default is empty.
    pub passthrough: Vec<HostPattern>,
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
        }
    }
}

/// Decides what to do with a connection to `dest` after detection saw `detected`.
///
/// # Security
/// Fails closed: TLS without SNI, silence and opaque bytes are refused unless a `tcp_allow`
/// rule names the destination; a host is never invented.
pub fn route(detected: &Detected, dest: SocketAddr, policy: &RoutePolicy) -> Route {
    match detected {
        Detected::Tls { sni: None } => Route::Reject(RejectReason::NoSni),
        Detected::Tls { sni: Some(sni) } => {
            let host = normalize(sni);
            if policy.passthrough.iter().any(|p| p.matches(&host)) {
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
        Detected::Opaque if tcp_allowed(policy, dest) => Route::Relay,
        Detected::Opaque => Route::Reject(RejectReason::OpaqueNotAllowed(dest)),
        Detected::Timeout if tcp_allowed(policy, dest) => Route::Relay,
        Detected::Timeout => Route::Reject(RejectReason::Silent(dest)),
        Detected::TooLarge => Route::Reject(RejectReason::TooLarge),
        Detected::Malformed(why) => Route::Reject(RejectReason::Malformed(why.clone())),
        Detected::Closed => Route::Reject(RejectReason::Closed),
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

/// Whether an IP rule of `tcp_allow` covers `dest` (host rules cannot: opaque TCP and
/// silent connections carry no name).
fn tcp_allowed(policy: &RoutePolicy, dest: SocketAddr) -> bool {
    policy.tcp_allow.iter().any(|(target, port)| {
        *port == dest.port() && matches!(target, TcpTarget::Cidr(c) if c.contains(dest.ip()))
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
        let policy = RoutePolicy {
            passthrough: vec![pat("*.bank.test"), pat("pinned.test")],
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
            assert_eq!(route(&detected, dest, &policy), want, "{detected:?} {dest}");
        }
        assert_eq!(
            route(&Detected::Opaque, db, &RoutePolicy::default()),
            Route::Reject(RejectReason::OpaqueNotAllowed(db))
        );
    }
}
