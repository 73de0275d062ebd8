//! The lab's fixed addresses, and the check that keeps tests on documentation ranges.
//!
//! Every lab uses the same addresses: each lab lives in its own pair of network namespaces,
//! so parallel tests never collide. Test hosts use only 198.51.100.0/24, 203.0.113.0/24 and
//! 2001:db8::/32 (documentation ranges). 192.0.2.0/24 is the machine's own network here and is
//! refused everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Node side of the veth (where the daemon and sandboxes run): 198.51.100.1/24.
pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Net side of the veth (the "internet" of test hosts): 198.51.100.2/24.
pub const NET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Node side IPv6 address: 2001:db8:1::1/64.
pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// Net side IPv6 address: 2001:db8:1::2/64.
pub const NET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

/// Test host A, on the veth subnet: 198.51.100.10.
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// Test host B, on the veth subnet: 198.51.100.11.
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// Test host C, on the veth subnet: 198.51.100.12.
pub const HOST_C: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
/// A "far" test host, reached through a route via [`NET_V4`]: 203.0.113.10.
pub const FAR_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Test host A over IPv6: 2001:db8:1::10.
pub const HOST_V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// Test host B over IPv6: 2001:db8:1::11.
pub const HOST_V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
/// A "far" IPv6 test host, reached through a route via [`NET_V6`]: 2001:db8:2::10.
pub const FAR_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);

/// Routed to the net namespace but owned by nobody there: packets are silently dropped
/// (no RST, no ICMP), so connects to it time out. Use it for connect-timeout tests.
pub const BLACKHOLE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);

/// The extra test-host addresses the lab adds on the net side of the veth.
pub const TEST_HOSTS: [IpAddr; 7] = [
    IpAddr::V4(HOST_A),
    IpAddr::V4(HOST_B),
    IpAddr::V4(HOST_C),
    IpAddr::V4(FAR_HOST),
    IpAddr::V6(HOST_V6_A),
    IpAddr::V6(HOST_V6_B),
    IpAddr::V6(FAR_HOST_V6),
];

/// Whether `ip` lies in a range tests may use: 198.51.100.0/24, 203.0.113.0/24 or
/// 2001:db8::/32.
///
/// # Security
/// Everything that adds an address or binds a fake server checks this first and refuses
/// anything else, 192.0.2.0/24 (the machine's own network) in particular.
pub fn is_test_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (198, 51, 100) | (203, 0, 113))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ranges_table() {
        let cases: &[(&str, bool)] = &[
            ("198.51.100.1", true),
            ("198.51.100.255", true),
            ("203.0.113.10", true),
            ("2001:db8:1::10", true),
            ("2001:db8:ffff::1", true),
            ("192.0.2.1", false),
            ("192.0.2.2", false),
            ("198.51.101.1", false),
            ("203.0.114.1", false),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("::", false),
            ("::1", false),
            ("2001:db9::1", false),
            ("::ffff:192.0.2.1", false),
        ];
        for (ip, want) in cases {
            let parsed: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert_eq!(is_test_address(parsed), *want, "{ip}");
        }
    }

    #[test]
    fn lab_addresses_are_test_addresses() {
        let fixed = [NODE_V4, NET_V4, BLACKHOLE_V4].map(IpAddr::V4);
        let fixed6 = [NODE_V6, NET_V6].map(IpAddr::V6);
        for ip in TEST_HOSTS.iter().chain(&fixed).chain(&fixed6) {
            assert!(is_test_address(*ip), "{ip}");
        }
    }
}
