//! Nothing leaves a sandbox except through Sluice: sockets the kernel refuses, datagrams and
//! listeners the kernel guards stop, destinations the daemon refuses. Each attack also checks
//! the wire on the test hosts' side.

use std::net::{IpAddr, SocketAddr};

use tests::{addrs, upstream};

use super::range::{ALL_MODES, EXEC_MODES, Mode, Range};

const EPERM: u64 = 1;
/// The sink: a test host that records every connection it gets.
const SINK: &str = "198.51.100.12";

fn sink(range: &Range, port: u16) -> upstream::RunningTcp {
    let addr = SocketAddr::new(addrs::HOST_C.into(), port);
    upstream::tcp_recorder(4096)
        .start(&range.lab, addr)
        .unwrap()
}

#[test]
fn raw_packet_icmp_and_vsock_sockets_are_refused() {
    let range = Range::plain();
    let sockets = [
        ("raw", ["2", "3", "1"]),       // AF_INET, SOCK_RAW, ICMP
        ("icmp", ["2", "2", "1"]),      // AF_INET, SOCK_DGRAM, ICMP (ping socket)
        ("packet", ["17", "3", "768"]), // AF_PACKET, SOCK_RAW, ETH_P_ALL
        ("vsock", ["40", "1", "0"]),    // AF_VSOCK, SOCK_STREAM
        ("sctp", ["2", "1", "132"]),    // AF_INET, SOCK_STREAM, SCTP
    ];
    for mode in EXEC_MODES {
        for (what, args) in sockets {
            range.fire(mode, &[], "socket", &args).assert_refused(what);
        }
    }
    // An enrolled cgroup gets no seccomp filter (that is its runtime's job), but the kernel
    // refuses raw and ICMP inet sockets for it too.
    for (what, args) in &sockets[..2] {
        range
            .fire(Mode::Enrolled, &[], "socket", args)
            .assert_refused(what);
    }
}

#[test]
fn udp_other_than_dns_is_refused_and_never_leaves() {
    let range = Range::plain();
    for mode in ALL_MODES {
        let shot = range.fire(mode, &[], "udp", &[SINK, "9999"]);
        shot.assert_refused("UDP to a chosen port");
        assert_eq!(shot.errno(), Some(EPERM), "{}", shot.got);
        range.nothing_left(&shot);
    }
}

#[test]
fn tcp_fast_open_is_captured_too() {
    let range = Range::plain();
    let sink = sink(&range, 7);
    for mode in ALL_MODES {
        let shot = range.fire(mode, &[], "tfo", &[SINK, "7"]);
        range.nothing_left(&shot);
    }
    assert!(
        sink.connections().is_empty(),
        "opaque TCP needs a tcp_allow rule"
    );
}

#[test]
fn internal_destinations_are_refused() {
    let range = Range::plain();
    let targets = [
        ("127.0.0.1", "3000"),        // the control API
        ("::ffff:127.0.0.1", "3000"), // the same, IPv4-mapped
        ("::1", "3000"),
        ("169.254.169.254", "80"), // cloud metadata
        ("0.0.0.0", "80"),
        ("198.51.100.1", "80"),    // the node's own address on the lab veth
        ("198.18.0.1", "80"),      // benchmarking range
        ("64:ff9b::7f00:1", "80"), // NAT64 of 127.0.0.1
        ("2002:7f00:1::1", "80"),  // 6to4 of 127.0.0.1
        ("fec0::1", "80"),         // site-local
    ];
    for mode in ALL_MODES {
        for (ip, port) in targets {
            let shot = range.fire(mode, &[], "tcp", &[ip, port]);
            let text = shot.got["detail"].as_str().unwrap_or_default();
            assert!(
                !text.contains("HTTP/1.1 200") && !text.contains("\"status\""),
                "{mode:?}: {ip}:{port} answered: {}",
                shot.got
            );
            range.nothing_left(&shot);
        }
    }
    // Every attempt, in every mode, is refused by the daemon and audited as such (an
    // IPv4-mapped destination is audited in its IPv4 form).
    let dests: Vec<String> = targets
        .iter()
        .map(|(ip, port)| {
            let ip = ip.parse::<IpAddr>().unwrap().to_canonical();
            SocketAddr::new(ip, port.parse().unwrap()).to_string()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let records = range.sluice.audit();
        let missing: Vec<&String> = dests
            .iter()
            .filter(|dest| {
                let expected = dests.iter().filter(|d| d == dest).count() * ALL_MODES.len();
                let denied = records
                    .iter()
                    .filter(|r| r["decision"] == "deny" && r["destination"] == dest.as_str())
                    .count();
                denied < expected
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every attempt was refused and audited: {missing:?}\n{records:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn request_smuggling_is_refused() {
    let range = Range::plain();
    let web = upstream::http()
        .route("/", "ok")
        .start(&range.lab, SocketAddr::new(addrs::HOST_A.into(), 80))
        .unwrap();
    for mode in ALL_MODES {
        let shot = range.fire(mode, &[], "smuggle", &["198.51.100.10", "80"]);
        let text = shot.got["detail"].as_str().unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 400"), "{mode:?}: {}", shot.got);
        assert!(
            web.requests()
                .iter()
                .all(|r| !r.uri.to_string().contains(&shot.marker)),
            "the smuggled request never reached the host"
        );
    }
}

#[test]
fn a_listener_is_refused_on_anything_but_loopback() {
    let range = Range::plain();
    for mode in [Mode::Shared, Mode::Enrolled] {
        for addr in ["0.0.0.0", "198.51.100.1", "::"] {
            let shot = range.fire(mode, &[], "bind", &[addr, "8080"]);
            shot.assert_refused("listening on the network");
        }
        let local = range.fire(mode, &[], "bind", &["127.0.0.1", "0"]);
        assert!(
            !local.refused(),
            "loopback listeners still work: {}",
            local.got
        );
    }
}

#[test]
fn a_dead_daemons_ports_cannot_be_taken() {
    let mut range = Range::plain();
    range.sluice.kill9();
    for port in ["15001", "15053", "3000"] {
        let shot = range.fire(Mode::Enrolled, &[], "bind", &["127.0.0.1", port]);
        shot.assert_refused("binding a port of Sluice");
        assert_eq!(shot.errno(), Some(EPERM), "{port}: {}", shot.got);
    }
}

#[test]
fn ipv4_source_routing_is_refused() {
    let range = Range::plain();
    for mode in ALL_MODES {
        let shot = range.fire(mode, &[], "ip-options", &[SINK]);
        shot.assert_refused("IP_OPTIONS");
        range.nothing_left(&shot);
    }
}

#[test]
fn an_ipv6_routing_header_never_reaches_the_wire() {
    let range = Range::plain();
    for mode in ALL_MODES {
        let shot = range.fire(mode, &[], "rthdr", &["2001:db8:1::12"]);
        shot.assert_refused("IPV6_RTHDR");
        range.nothing_left(&shot);
        // The same header as ancillary data: sendmsg may accept it, the wire must not see it.
        let shot = range.fire(mode, &[], "rthdr-cmsg", &["2001:db8:1::12"]);
        range.nothing_left(&shot);
    }
    let to_segment: IpAddr = "2001:db8:1::12".parse().unwrap();
    assert!(range.sniffer.to(to_segment).is_empty());
}

#[test]
fn multicast_joins_are_refused_and_no_igmp_leaves() {
    let range = Range::plain();
    for mode in ALL_MODES {
        range
            .fire(mode, &[], "multicast", &["239.1.2.3"])
            .assert_refused("IP_ADD_MEMBERSHIP");
        range
            .fire(mode, &[], "multicast6", &["ff05::1:3"])
            .assert_refused("IPV6_JOIN_GROUP");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    const IGMP: u8 = 2;
    assert!(
        range.sniffer.protocol(IGMP).is_empty(),
        "no IGMP report left"
    );
    let joined: IpAddr = "239.1.2.3".parse().unwrap();
    assert!(range.sniffer.to(joined).is_empty());
}

#[test]
fn datagrams_pinned_to_a_real_interface_never_leave() {
    let range = Range::plain();
    // Only sandboxes in the node's namespace see the lab's veth.
    for mode in [Mode::Shared, Mode::Enrolled] {
        for step in ["pktinfo", "unicast-if", "bindtodevice"] {
            let shot = range.fire(
                mode,
                &[],
                step,
                &[tests::netlab::NODE_VETH, "198.51.100.10"],
            );
            shot.assert_refused(step);
            range.nothing_left(&shot);
        }
    }
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        range.sniffer.to(loopback).is_empty(),
        "nothing for 127.0.0.1 crossed the veth"
    );
}
