//! Host names as types: a [`Host`] is parsed, validated and normalised once (lowercase, one
//! trailing dot dropped, IDNA to ASCII, addresses canonical) and then compared as a value;
//! a [`HostPattern`] is an exact name or `*.suffix` as rules write them.

use std::fmt;
use std::net::IpAddr;

/// A validated host: a DNS name (ASCII, lowercase, no trailing dot, labels of letters,
/// digits, `-` and `_`) or an IP address (IPv4-mapped IPv6 shown as IPv4).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    name: String,
    ip: Option<IpAddr>,
}

/// Why a text is not a [`Host`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty, too long, or a character no host name has.
    #[error("{0:?} is not a host name or address")]
    Invalid(String),
    /// An authority whose port is not 0..=65535, or brackets that do not close.
    #[error("{0:?} is not HOST, HOST:PORT, [IPv6] or [IPv6]:PORT")]
    Authority(String),
}

/// A host name pattern: an exact name, or `*.suffix` matching any name strictly below
/// `suffix`. Comparison is case-insensitive and ignores one trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(Host),
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

impl Host {
    /// Parses a host as it appears in an SNI, a `Host` header without its port, a rule or a
    /// DNS question: one trailing dot is dropped, an IPv6 literal may be bracketed, a
    /// non-ASCII name is converted to its ASCII (punycode) form.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        let invalid = || HostError::Invalid(raw.to_owned());
        let trimmed = raw.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::from(ip));
        }
        let name = bare.strip_suffix('.').unwrap_or(bare);
        let name = if name.is_ascii() {
            name.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(name).map_err(|_| invalid())?
        };
        if !valid_name(&name) {
            return Err(invalid());
        }
        Ok(Host { name, ip: None })
    }

    /// Splits an authority (`host`, `host:port`, `[v6]`, `[v6]:port`) into its host and the
    /// port it names, if any.
    pub fn from_authority(authority: &str) -> Result<(Host, Option<u16>), HostError> {
        let bad = || HostError::Authority(authority.to_owned());
        let authority = authority.trim();
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(port) => (inner, Some(port)),
                None if after.is_empty() => (inner, None),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => return Err(bad()),
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None | Some("") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok((Host::parse(host)?, port))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Whether the host is an address rather than a name.
    pub fn is_ip(&self) -> bool {
        self.ip.is_some()
    }

    /// The host as an authority: IPv6 in brackets, then `:port` when given.
    pub fn authority(&self, port: Option<u16>) -> String {
        let mut out = String::with_capacity(self.name.len() + 8);
        self.write_authority(&mut out, port);
        out
    }

    /// Appends [`Host::authority`] to `out`.
    pub fn write_authority(&self, out: &mut String, port: Option<u16>) {
        use std::fmt::Write as _;
        if let Some(IpAddr::V6(_)) = self.ip {
            out.push('[');
            out.push_str(&self.name);
            out.push(']');
        } else {
            out.push_str(&self.name);
        }
        if let Some(port) = port {
            let _ = write!(out, ":{port}");
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        let ip = crate::net::canonical(ip);
        Host {
            name: ip.to_string(),
            ip: Some(ip),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Host {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl PartialEq<str> for Host {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com` (case-insensitive, one trailing dot
    /// ignored; an address is an exact pattern).
    pub fn parse(text: &str) -> Result<HostPattern, PatternError> {
        let trimmed = text.trim();
        let (wild, rest) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if rest.contains('*') {
            return Err(PatternError::Wildcard(text.to_owned()));
        }
        let host = Host::parse(rest).map_err(|_| PatternError::Invalid(text.to_owned()))?;
        if wild && host.is_ip() {
            return Err(PatternError::Invalid(text.to_owned()));
        }
        Ok(if wild {
            HostPattern::Suffix(host.name)
        } else {
            HostPattern::Exact(host)
        })
    }

    /// Whether `host` matches.
    pub fn matches(&self, host: &Host) -> bool {
        match self {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Suffix(suffix) => {
                !host.is_ip()
                    && host
                        .name
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host.as_str()),
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Whether `name` (ASCII lowercase) is a DNS name of 1..=253 characters whose labels are
/// 1..=63 letters, digits, `-` or `_`.
fn valid_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// `text` parsed as a [`Host`], for tests.
#[cfg(test)]
pub(crate) fn test_host(text: &str) -> Host {
    Host::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn pat(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn host_parse_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("API.Example.COM.", Some("api.example.com")),
            ("api.example.com", Some("api.example.com")),
            ("under_score.test", Some("under_score.test")),
            ("198.51.100.7", Some("198.51.100.7")),
            ("[2001:DB8::1]", Some("2001:db8::1")),
            ("::ffff:198.51.100.7", Some("198.51.100.7")),
            ("bücher.example", Some("xn--bcher-kva.example")),
            ("", None),
            (".", None),
            ("a..b", None),
            ("ex ample.com", None),
            ("a.test..", None),
            ("*.test", None),
            ("a/b.test", None),
        ];
        for (raw, want) in cases {
            let got = Host::parse(raw).ok().map(|h| h.to_string());
            assert_eq!(got.as_deref(), *want, "{raw:?}");
        }
        assert!(host("198.51.100.7").is_ip());
        assert!(!host("a.test").is_ip());
        assert_eq!(
            Host::parse(&"a".repeat(64)),
            Err(HostError::Invalid("a".repeat(64)))
        );
    }

    /// An authority and the host and port it splits into (`None`: refused).
    type AuthorityCase<'a> = (&'a str, Option<(&'a str, Option<u16>)>);

    #[test]
    fn authority_table() {
        let cases: &[AuthorityCase<'_>] = &[
            ("example.com", Some(("example.com", None))),
            ("Example.com:8443", Some(("example.com", Some(8443)))),
            ("example.com:", Some(("example.com", None))),
            ("198.51.100.7:80", Some(("198.51.100.7", Some(80)))),
            ("[2001:db8::1]", Some(("2001:db8::1", None))),
            ("[2001:db8::1]:443", Some(("2001:db8::1", Some(443)))),
            ("2001:db8::1", None),
            ("[2001:db8::1]x", None),
            ("example.com:99999", None),
            ("example.com:abc", None),
            ("", None),
            (":80", None),
        ];
        for (authority, want) in cases {
            let got = Host::from_authority(authority)
                .ok()
                .map(|(h, p)| (h.to_string(), p));
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, want, "{authority:?}");
        }
        assert_eq!(
            host("2001:db8::1").authority(Some(443)),
            "[2001:db8::1]:443"
        );
        assert_eq!(host("a.test").authority(None), "a.test");
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
            ("*.Example.COM.", "API.example.com", true),
            ("198.51.100.7", "198.51.100.7", true),
            ("*.7", "198.51.100.7", false),
        ];
        for (p, h, want) in cases {
            assert_eq!(pat(p).matches(&host(h)), *want, "{p} vs {h}");
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
            "*.198.51.100.7",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(pat("*.a.b").to_string(), "*.a.b");
    }
}
