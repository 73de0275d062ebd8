//! Address classification for upstream dials: which destinations a sandbox may reach.
//!
//! The check runs on the address actually dialled (never on a name the sandbox supplied), so
//! DNS rebinding and IPv4-mapped tricks cannot smuggle an internal address past it.

use std::fmt;
use std::net::IpAddr;

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why an upstream address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    /// 127.0.0.0/8, ::1: the node's own services (including Sluice's control API).
    Loopback,
    /// RFC 1918, RFC 6598 shared space, IPv6 unique-local.
    Private,
    /// 169.254.0.0/16 (cloud metadata lives here) and fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8, ::, multicast, broadcast, reserved ranges.
    Unroutable,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Internal::Loopback => "loopback address",
            Internal::Private => "private address",
            Internal::LinkLocal => "link-local or metadata address",
            Internal::Unroutable => "unroutable address",
        })
    }
}

impl Cidr {
    /// Parses `addr/prefix` (or a bare address, meaning a single host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Unwraps IPv4-mapped IPv6 addresses to IPv4 so every check sees one form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Classifies an address a sandbox wants to reach: `Some` means it is internal to the node
/// or its network and must be refused unless explicitly allowed.
pub fn classify(ip: IpAddr) -> Option<Internal> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some(Internal::Loopback)
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some(Internal::Private)
            } else if v4.is_link_local() {
                Some(Internal::LinkLocal)
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
            {
                Some(Internal::Unroutable)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some(Internal::Loopback)
            } else if first & 0xfe00 == 0xfc00 {
                Some(Internal::Private)
            } else if first & 0xffc0 == 0xfe80 {
                Some(Internal::LinkLocal)
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some(Internal::Unroutable)
            } else {
                None
            }
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases: &[(&str, Option<Internal>)] = &[
            ("127.0.0.1", Some(Internal::Loopback)),
            ("::1", Some(Internal::Loopback)),
            ("::ffff:127.0.0.1", Some(Internal::Loopback)),
            ("10.1.2.3", Some(Internal::Private)),
            ("172.16.0.1", Some(Internal::Private)),
            ("192.168.1.1", Some(Internal::Private)),
            ("100.64.0.1", Some(Internal::Private)),
            ("fd00::1", Some(Internal::Private)),
            ("169.254.169.254", Some(Internal::LinkLocal)),
            ("fe80::1", Some(Internal::LinkLocal)),
            ("0.0.0.0", Some(Internal::Unroutable)),
            ("255.255.255.255", Some(Internal::Unroutable)),
            ("224.0.0.1", Some(Internal::Unroutable)),
            ("198.51.100.10", None),
            ("203.0.113.10", None),
            ("2001:db8::10", None),
            ("::ffff:198.51.100.10", None),
            ("1.1.1.1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn cidr_table() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.0.0/17", "10.1.127.255", true),
            ("10.1.0.0/17", "10.1.128.0", false),
            ("10.0.0.5", "10.0.0.5", true),
            ("10.0.0.5", "10.0.0.6", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "10.0.0.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
        ];
        for (cidr, ip, want) in cases {
            assert_eq!(
                Cidr::parse(cidr).unwrap().contains(ip.parse().unwrap()),
                want,
                "{cidr} {ip}"
            );
        }
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for text in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(text).is_err(), "{text}");
        }
    }
}
