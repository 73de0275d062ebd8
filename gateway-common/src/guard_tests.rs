//! Table tests of the guard decisions (run on the host).

use super::*;

const CFG: GatewayConfig = GatewayConfig {
    proxy_port: 15001,
    dns_port: 15053,
    flags: crate::CONFIG_READY,
    control_port: 3000,
    explicit_proxy_port: 3128,
    conn_cap: 0,
};

fn v4(ihl_byte: u8, frag: [u8; 2], proto: u8, src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = ihl_byte;
    h[6] = frag[0];
    h[7] = frag[1];
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h
}

fn v6(next: u8, src: &str, dst: &str) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[6] = next;
    let s: std::net::Ipv6Addr = src.parse().unwrap();
    let d: std::net::Ipv6Addr = dst.parse().unwrap();
    h[8..24].copy_from_slice(&s.octets());
    h[24..40].copy_from_slice(&d.octets());
    h
}

fn ports(src: u16, dst: u16) -> [u8; 4] {
    let (s, d) = (src.to_be_bytes(), dst.to_be_bytes());
    [s[0], s[1], d[0], d[1]]
}

const LO: [u8; 4] = [127, 0, 0, 1];
const NET: [u8; 4] = [198, 51, 100, 7];

#[test]
fn ipv4_egress_table() {
    use Direction::Egress as E;
    let ok = |h, p| check_ipv4(&CFG, E, &h, &p).map(|f| (f.protocol, f.local_port));
    for (hdr, p, want) in [
        (
            v4(0x45, [0, 0], 6, LO, LO),
            ports(40000, 15001),
            Ok((6, 40000)),
        ),
        (
            v4(0x45, [0x40, 0], 17, LO, LO),
            ports(40001, 15053),
            Ok((17, 40001)),
        ),
        // DNS port over TCP, proxy port over UDP: wrong listener.
        (
            v4(0x45, [0, 0], 6, LO, LO),
            ports(1, 15053),
            Err(PacketDrop::Port),
        ),
        (
            v4(0x45, [0, 0], 17, LO, LO),
            ports(1, 15001),
            Err(PacketDrop::Port),
        ),
        (
            v4(0x45, [0, 0], 6, LO, LO),
            ports(1, 3000),
            Err(PacketDrop::Port),
        ),
        (
            v4(0x45, [0, 0], 6, LO, NET),
            ports(1, 15001),
            Err(PacketDrop::NotLoopback),
        ),
        (
            v4(0x45, [0, 0], 6, LO, [127, 0, 0, 2]),
            ports(1, 15001),
            Err(PacketDrop::NotLoopback),
        ),
        (
            v4(0x46, [0, 0], 6, LO, LO),
            ports(1, 15001),
            Err(PacketDrop::IpOptions),
        ),
        (
            v4(0x4f, [0, 0], 17, LO, LO),
            ports(1, 15053),
            Err(PacketDrop::IpOptions),
        ),
        (
            v4(0x45, [0x20, 0], 17, LO, LO),
            ports(1, 15053),
            Err(PacketDrop::Fragment),
        ),
        (
            v4(0x45, [0, 1], 17, LO, LO),
            ports(1, 15053),
            Err(PacketDrop::Fragment),
        ),
        (
            v4(0x45, [0, 0], 1, LO, LO),
            ports(1, 15001),
            Err(PacketDrop::Protocol),
        ),
        (
            v4(0x45, [0, 0], 2, LO, LO),
            ports(1, 15001),
            Err(PacketDrop::Protocol),
        ),
        (
            v4(0x65, [0, 0], 6, LO, LO),
            ports(1, 15001),
            Err(PacketDrop::NotIp),
        ),
    ] {
        assert_eq!(ok(hdr, p), want, "{hdr:?} {p:?}");
    }
}

#[test]
fn ipv4_ingress_checks_the_source() {
    let reply = v4(0x45, [0, 0], 6, LO, LO);
    let flow = check_ipv4(&CFG, Direction::Ingress, &reply, &ports(15001, 40000)).unwrap();
    assert_eq!(flow.local_port, 40000);
    assert_eq!(
        check_ipv4(&CFG, Direction::Ingress, &reply, &ports(40000, 15001)),
        Err(PacketDrop::Port)
    );
    let from_net = v4(0x45, [0, 0], 6, NET, LO);
    assert_eq!(
        check_ipv4(&CFG, Direction::Ingress, &from_net, &ports(15001, 40000)),
        Err(PacketDrop::NotLoopback)
    );
}

#[test]
fn ipv6_table() {
    use Direction::{Egress as E, Ingress as I};
    for (dir, hdr, p, want) in [
        (E, v6(6, "::1", "::1"), ports(40000, 15001), Ok(40000)),
        (E, v6(17, "::1", "::1"), ports(40000, 15053), Ok(40000)),
        (I, v6(17, "::1", "::1"), ports(15053, 40000), Ok(40000)),
        (
            E,
            v6(43, "::1", "::1"),
            ports(40000, 15053),
            Err(PacketDrop::Protocol),
        ),
        (
            E,
            v6(0, "::1", "::1"),
            ports(40000, 15053),
            Err(PacketDrop::Protocol),
        ),
        (
            E,
            v6(60, "::1", "::1"),
            ports(40000, 15053),
            Err(PacketDrop::Protocol),
        ),
        (
            E,
            v6(44, "::1", "::1"),
            ports(40000, 15053),
            Err(PacketDrop::Protocol),
        ),
        (
            E,
            v6(58, "::1", "::1"),
            ports(40000, 15053),
            Err(PacketDrop::Protocol),
        ),
        (
            E,
            v6(17, "::1", "2001:db8::53"),
            ports(1, 15053),
            Err(PacketDrop::NotLoopback),
        ),
        (
            E,
            v6(17, "::1", "::ffff:127.0.0.1"),
            ports(1, 15053),
            Err(PacketDrop::NotLoopback),
        ),
        (
            E,
            v6(17, "::1", "ff02::1"),
            ports(1, 15053),
            Err(PacketDrop::NotLoopback),
        ),
        (
            I,
            v6(6, "2001:db8::1", "::1"),
            ports(15001, 1),
            Err(PacketDrop::NotLoopback),
        ),
        (E, v6(6, "::1", "::1"), ports(1, 53), Err(PacketDrop::Port)),
    ] {
        let got = check_ipv6(&CFG, dir, &hdr, &p).map(|f| f.local_port);
        assert_eq!(got, want, "{dir:?} {hdr:?} {p:?}");
    }
    let mut bad = v6(6, "::1", "::1");
    bad[0] = 0x45;
    assert_eq!(
        check_ipv6(&CFG, E, &bad, &ports(1, 15001)),
        Err(PacketDrop::NotIp)
    );
}

#[test]
fn unconfigured_ports_allow_nothing() {
    let cfg = GatewayConfig::default();
    let h = v4(0x45, [0, 0], 6, LO, LO);
    assert_eq!(
        check_ipv4(&cfg, Direction::Egress, &h, &ports(1, 0)),
        Err(PacketDrop::Port)
    );
}

#[test]
fn setsockopt_table() {
    for (level, opt, refused) in [
        (SOL_IP, 4, true),      // IP_OPTIONS
        (SOL_IP, 7, true),      // IP_RETOPTS
        (SOL_IP, 35, true),     // IP_ADD_MEMBERSHIP
        (SOL_IP, 36, false),    // IP_DROP_MEMBERSHIP
        (SOL_IP, 39, true),     // IP_ADD_SOURCE_MEMBERSHIP
        (SOL_IP, 42, true),     // MCAST_JOIN_GROUP
        (SOL_IP, 45, false),    // MCAST_LEAVE_GROUP
        (SOL_IP, 46, true),     // MCAST_JOIN_SOURCE_GROUP
        (SOL_IP, 1, false),     // IP_TOS
        (SOL_IP, 2, false),     // IP_TTL
        (SOL_IPV6, 57, true),   // IPV6_RTHDR
        (SOL_IPV6, 5, true),    // IPV6_2292RTHDR
        (SOL_IPV6, 54, true),   // IPV6_HOPOPTS
        (SOL_IPV6, 59, true),   // IPV6_DSTOPTS
        (SOL_IPV6, 55, true),   // IPV6_RTHDRDSTOPTS
        (SOL_IPV6, 3, true),    // IPV6_2292HOPOPTS
        (SOL_IPV6, 4, true),    // IPV6_2292DSTOPTS
        (SOL_IPV6, 6, true),    // IPV6_2292PKTOPTIONS
        (SOL_IPV6, 20, true),   // IPV6_ADD_MEMBERSHIP
        (SOL_IPV6, 21, false),  // IPV6_DROP_MEMBERSHIP
        (SOL_IPV6, 27, true),   // IPV6_JOIN_ANYCAST
        (SOL_IPV6, 42, true),   // MCAST_JOIN_GROUP
        (SOL_IPV6, 26, false),  // IPV6_V6ONLY
        (SOL_IP, 50, true),     // IP_UNICAST_IF
        (SOL_IPV6, 76, true),   // IPV6_UNICAST_IF
        (SOL_SOCKET, 25, true), // SO_BINDTODEVICE
        (SOL_SOCKET, 62, true), // SO_BINDTOIFINDEX
        (SOL_SOCKET, 4, false), // SO_TYPE-ish: other socket options pass
        (6, 57, false),         // SOL_TCP
    ] {
        assert_eq!(setsockopt_refused(level, opt), refused, "{level} {opt}");
    }
}

#[test]
fn only_loopback_is_crossed() {
    assert!(on_loopback(1));
    for ifindex in [0, 2, 6, u32::MAX] {
        assert!(!on_loopback(ifindex), "{ifindex}");
    }
}

#[test]
fn conn_cap_table() {
    let three = GatewayConfig { conn_cap: 3, ..CFG };
    for (cfg, live, over) in [
        (&three, 0, false),
        (&three, 2, false),
        (&three, 3, true),
        (&three, 4, true),
        (&three, -1, false),
        (&CFG, 16_383, false),
        (&CFG, 16_384, true),
    ] {
        assert_eq!(over_conn_cap(cfg, live), over, "{} {live}", cfg.conn_cap);
    }
}

#[test]
fn bind_table() {
    let lo6: [u8; 16] = "::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mapped = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    assert!(is_loopback6_bind(&lo6));
    assert!(is_loopback6_bind(&mapped("::ffff:127.0.0.1")));
    assert!(is_loopback6_bind(&mapped("::ffff:127.9.8.7")));
    assert!(!is_loopback6_bind(&mapped("::")));
    assert!(!is_loopback6_bind(&mapped("::ffff:0.0.0.0")));
    assert!(!is_loopback6_bind(&mapped("::ffff:198.51.100.1")));
    assert!(!is_loopback6_bind(&mapped("2001:db8::1")));
    assert!(!is_loopback6_bind(&mapped("::2")));
    assert!(!is_loopback6_bind(&mapped("::127.0.0.1")));
    assert!(is_loopback4([127, 0, 0, 1]) && is_loopback4([127, 1, 2, 3]));
    assert!(!is_loopback4([0, 0, 0, 0]) && !is_loopback4([198, 51, 100, 1]));
    use BindAddr::{Loopback, Other, Wildcard};
    use BindVerdict::{Allow, Refuse, ToLoopback};
    for (addr, port, want) in [
        (Loopback, 0, Allow),
        (Loopback, 8080, Allow),
        (Wildcard, 0, ToLoopback),
        (Wildcard, 8080, Refuse),
        (Other, 0, Refuse),
        (Other, 8080, Refuse),
        (Loopback, 15001, Refuse),
        (Loopback, 15053, Refuse),
        (Loopback, 3000, Refuse),
        (Loopback, 3128, Refuse),
        (Wildcard, 15001, Refuse),
    ] {
        assert_eq!(bind_verdict(&CFG, addr, port), want, "{addr:?} {port}");
    }
    let no_extra = GatewayConfig {
        control_port: 0,
        explicit_proxy_port: 0,
        ..CFG
    };
    assert_eq!(bind_verdict(&no_extra, Loopback, 3000), Allow);
    for (text, want) in [
        ("::", Wildcard),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:0.0.0.0", Other),
        ("2001:db8::1", Other),
    ] {
        assert_eq!(bind_addr6(&mapped(text)), want, "{text}");
    }
    assert_eq!(bind_addr4([0, 0, 0, 0]), Wildcard);
    assert_eq!(bind_addr4([127, 0, 0, 9]), Loopback);
    assert_eq!(bind_addr4([198, 51, 100, 1]), Other);
}
