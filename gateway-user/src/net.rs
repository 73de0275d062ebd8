//! Address classification for upstream dials: which destinations a sandbox may reach.
//!
//! The check runs on the address actually dialled (never on a name the sandbox supplied), so
//! DNS rebinding and IPv4-mapped tricks cannot smuggle an internal address past it.
//! Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are
//! classified by what they embed, and the node's own interface addresses count as internal
//! ([`node_addresses`], re-read at most every [`NODE_ADDRESS_TTL`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an address")]
    Address(String),
    /// The prefix length is not a number in range for the address family.
    #[error("{text:?}: prefix length must be 0..={max}")]
    Prefix {
        /// The text as given.
        text: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
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
    /// 0.0.0.0/8, ::, multicast, broadcast, reserved and benchmarking (198.18.0.0/15)
    /// ranges, IPv6 discard-only (100::/64).
    Unroutable,
    /// NAT64 (64:ff9b::/96, 64:ff9b:1::/48): a translator would reach an IPv4 address
    /// Sluice never checked.
    Nat64,
    /// Teredo (2001::/32): tunnelled to an IPv4 address hidden in the low bits.
    Teredo,
    /// One of the node's own interface addresses (the daemon's services listen there).
    Node,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Internal::Loopback => "loopback address",
            Internal::Private => "private address",
            Internal::LinkLocal => "link-local or metadata address",
            Internal::Unroutable => "unroutable address",
            Internal::Nat64 => "NAT64 address",
            Internal::Teredo => "Teredo tunnel address",
            Internal::Node => "address of the node itself",
        })
    }
}

impl Cidr {
    /// Parses `addr/prefix` (or a bare address, meaning a single host).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })?,
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

/// How long a snapshot of the node's interface addresses is trusted before it is re-read.
pub const NODE_ADDRESS_TTL: Duration = Duration::from_secs(2);

/// Classifies an address a sandbox wants to reach: `Some` means it is internal to the node
/// or its network and must be refused unless explicitly allowed. Pure: the node's own
/// interface addresses are not consulted here (see [`classify_dialled`]).
pub fn classify(ip: IpAddr) -> Option<Internal> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// [`classify`], plus the node's own interface addresses `node` (which also catches a
/// public address the node owns, where the daemon's own listeners answer).
pub fn classify_with(ip: IpAddr, node: &[IpAddr]) -> Option<Internal> {
    let ip = canonical(ip);
    classify(ip).or_else(|| {
        node.iter()
            .any(|n| canonical(*n) == ip)
            .then_some(Internal::Node)
    })
}

/// Classifies the address about to be dialled, consulting the node's current interface
/// addresses ([`node_addresses`]).
///
/// # Security
/// Fails closed: when the interface list cannot be read, every address is refused as
/// [`Internal::Node`] (with the error logged) rather than let through unchecked.
pub fn classify_dialled(ip: IpAddr) -> Option<Internal> {
    match node_addresses() {
        Ok(node) => classify_with(ip, &node),
        Err(e) => {
            tracing::error!(error = %e, "net: cannot read the node's interface addresses; refusing");
            Some(Internal::Node)
        }
    }
}

/// The node's interface addresses (every interface of the daemon's network namespace),
/// re-read with `getifaddrs` when the last read is older than [`NODE_ADDRESS_TTL`], so an
/// address added to an interface is refused within that time.
pub fn node_addresses() -> Result<Arc<Vec<IpAddr>>, nix::Error> {
    static CACHE: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>> = Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((read, addrs)) = cache.as_ref()
        && read.elapsed() < NODE_ADDRESS_TTL
    {
        return Ok(addrs.clone());
    }
    let mut addrs = Vec::new();
    for ifaddr in nix::ifaddrs::getifaddrs()? {
        let Some(address) = ifaddr.address else {
            continue;
        };
        if let Some(v4) = address.as_sockaddr_in() {
            addrs.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            addrs.push(IpAddr::V6(v6.ip()));
        }
    }
    let addrs = Arc::new(addrs);
    *cache = Some((Instant::now(), addrs.clone()));
    Ok(addrs)
}

fn classify_v4(v4: Ipv4Addr) -> Option<Internal> {
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
        || (a == 198 && (b & 0xfe) == 18)
    {
        Some(Internal::Unroutable)
    } else {
        None
    }
}

fn classify_v6(v6: Ipv6Addr) -> Option<Internal> {
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if v6.is_loopback() {
        Some(Internal::Loopback)
    } else if v6.is_unspecified() || v6.is_multicast() || s[..4] == [0x100, 0, 0, 0] {
        Some(Internal::Unroutable)
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique-local, and the deprecated site-local fec0::/10.
        Some(Internal::Private)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Internal::LinkLocal)
    } else if s[..6] == [0; 6] {
        // IPv4-compatible ::a.b.c.d (deprecated): judge the IPv4 address.
        classify_v4(embedded(s[6], s[7])).or(Some(Internal::Unroutable))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
        // NAT64: always refused; name the embedded address's class when it is internal.
        Some(classify_v4(embedded(s[6], s[7])).unwrap_or(Internal::Nat64))
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address of the relay's far end is bits 16..48.
        classify_v4(embedded(s[1], s[2]))
    } else if s[..2] == [0x2001, 0] {
        Some(Internal::Teredo)
    } else {
        None
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
            ("198.18.0.1", Some(Internal::Unroutable)),
            ("198.19.255.254", Some(Internal::Unroutable)),
            ("198.20.0.1", None),
            ("198.17.255.255", None),
            ("64:ff9b::198.51.100.10", Some(Internal::Nat64)),
            ("64:ff9b::127.0.0.1", Some(Internal::Loopback)),
            ("64:ff9b::169.254.169.254", Some(Internal::LinkLocal)),
            ("64:ff9b:1::10.0.0.1", Some(Internal::Private)),
            ("64:ff9b:1:2::c633:640a", Some(Internal::Nat64)),
            ("64:ff9c::1", None),
            ("fec0::1", Some(Internal::Private)),
            ("feff::1", Some(Internal::Private)),
            ("2002:c0a8:0101::1", Some(Internal::Private)),
            ("2002:7f00:0001::1", Some(Internal::Loopback)),
            ("2002:a9fe:a9fe::1", Some(Internal::LinkLocal)),
            ("2002:cb00:710a::1", None),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some(Internal::Teredo),
            ),
            ("2001:db8:1::10", None),
            ("::10.0.0.1", Some(Internal::Private)),
            ("::198.51.100.10", Some(Internal::Unroutable)),
            ("100::1", Some(Internal::Unroutable)),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn node_addresses_are_internal() {
        let node: Vec<IpAddr> = vec![
            "198.51.100.1".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
        ];
        let cases: &[(&str, Option<Internal>)] = &[
            ("198.51.100.1", Some(Internal::Node)),
            ("::ffff:198.51.100.1", Some(Internal::Node)),
            ("2001:db8:1::1", Some(Internal::Node)),
            ("198.51.100.2", None),
            ("127.0.0.1", Some(Internal::Loopback)),
        ];
        for (ip, want) in cases {
            assert_eq!(classify_with(ip.parse().unwrap(), &node), *want, "{ip}");
        }
        // The live list holds at least loopback, and a dial to it is refused.
        let live = node_addresses().unwrap();
        assert!(live.iter().any(|a| a.is_loopback()), "{live:?}");
        assert_eq!(
            classify_dialled("127.0.0.1".parse().unwrap()),
            Some(Internal::Loopback)
        );
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
