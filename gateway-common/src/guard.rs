//! The pure decisions of the guard programs (`cgroup/bind4/6`, `cgroup/setsockopt`,
//! `cgroup_skb/egress` and `ingress`). The kernel programs only load the fields at fixed
//! offsets and call these; living here, they are tested on the host as tables.
//!
//! # Security
//! Each function answers "allowed?" and everything it does not recognise is refused, except
//! [`setsockopt_refused`], which names the options that are refused (every other option is
//! the kernel's to handle, as for any process).

use crate::GatewayConfig;

/// `IPPROTO_TCP` as it appears in an IP header.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP` as it appears in an IP header.
pub const IPPROTO_UDP: u8 = 17;

/// Socket option levels.
pub const SOL_IP: i32 = 0;
/// Socket option level of IPv6 options.
pub const SOL_IPV6: i32 = 41;
/// Socket option level of generic socket options.
pub const SOL_SOCKET: i32 = 1;

/// The loopback interface's index, the same in every network namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// `SOL_SOCKET` options a sandbox may not set: binding a socket to an interface (a packet to
/// the daemon's loopback address would then leave through that interface instead).
pub const REFUSED_SOCKET: [i32; 2] = [
    25, // SO_BINDTODEVICE
    62, // SO_BINDTOIFINDEX
];

/// `SOL_IP` options a sandbox may not set: IP options (source routing: `IP_OPTIONS`,
/// `IP_RETOPTS`) and everything that joins a multicast group or changes a membership's source
/// filter (the kernel sends IGMP reports for those without the socket, past the packet filter).
pub const REFUSED_IP: [i32; 13] = [
    4,  // IP_OPTIONS
    7,  // IP_RETOPTS
    35, // IP_ADD_MEMBERSHIP
    37, // IP_UNBLOCK_SOURCE
    38, // IP_BLOCK_SOURCE
    39, // IP_ADD_SOURCE_MEMBERSHIP
    41, // IP_MSFILTER
    42, // MCAST_JOIN_GROUP
    43, // MCAST_BLOCK_SOURCE
    44, // MCAST_UNBLOCK_SOURCE
    46, // MCAST_JOIN_SOURCE_GROUP
    48, // MCAST_MSFILTER
    50, // IP_UNICAST_IF (pins the output interface: see REFUSED_SOCKET)
];

/// `SOL_IPV6` options a sandbox may not set: every extension header (routing, hop-by-hop,
/// destination options, in both the RFC 3542 and the RFC 2292 form) and every group join
/// (MLD reports, like IGMP ones, are sent without the socket).
pub const REFUSED_IPV6: [i32; 16] = [
    3,  // IPV6_2292HOPOPTS
    4,  // IPV6_2292DSTOPTS
    5,  // IPV6_2292RTHDR
    6,  // IPV6_2292PKTOPTIONS
    20, // IPV6_ADD_MEMBERSHIP (IPV6_JOIN_GROUP)
    27, // IPV6_JOIN_ANYCAST
    42, // MCAST_JOIN_GROUP
    43, // MCAST_BLOCK_SOURCE
    44, // MCAST_UNBLOCK_SOURCE
    46, // MCAST_JOIN_SOURCE_GROUP
    48, // MCAST_MSFILTER
    54, // IPV6_HOPOPTS
    55, // IPV6_RTHDRDSTOPTS
    57, // IPV6_RTHDR
    59, // IPV6_DSTOPTS
    76, // IPV6_UNICAST_IF
];

/// Must `setsockopt(level, optname)` from a sandbox be refused (EPERM)?
#[inline(always)]
pub fn setsockopt_refused(level: i32, optname: i32) -> bool {
    let list: &[i32] = match level {
        SOL_IP => &REFUSED_IP,
        SOL_IPV6 => &REFUSED_IPV6,
        SOL_SOCKET => &REFUSED_SOCKET,
        _ => return false,
    };
    let mut i = 0;
    while i < list.len() {
        if list[i] == optname {
            return true;
        }
        i += 1;
    }
    false
}

/// May a sandbox packet cross the interface `ifindex` (of the packet's output device on
/// egress, input device on ingress)? Only loopback: an interface-pinned socket
/// (`IP_PKTINFO` ancillary data, `IP_UNICAST_IF`, `SO_BINDTODEVICE`) would otherwise send a
/// datagram addressed to the daemon's loopback listener out of a real interface.
#[inline(always)]
pub fn on_loopback(ifindex: u32) -> bool {
    ifindex == LOOPBACK_IFINDEX
}

/// Must a new TCP connect from a sandbox holding `live` redirected connections be refused?
#[inline(always)]
pub fn over_conn_cap(cfg: &GatewayConfig, live: i64) -> bool {
    let cap = if cfg.conn_cap == 0 {
        crate::MAX_CONNS_PER_SANDBOX
    } else {
        cfg.conn_cap
    };
    live >= i64::from(cap)
}

/// Is `port` one of the daemon's own ports (0 never is: it asks for an ephemeral port)?
#[inline(always)]
pub fn is_gateway_port(cfg: &GatewayConfig, port: u16) -> bool {
    port != 0
        && (port == cfg.proxy_port
            || port == cfg.dns_port
            || port == cfg.control_port
            || port == cfg.explicit_proxy_port)
}

/// The kind of address a sandbox asks to bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindAddr {
    /// `127.0.0.0/8`, `::1` or `::ffff:127.0.0.0/104`.
    Loopback,
    /// `0.0.0.0` or `::`.
    Wildcard,
    /// Anything else.
    Other,
}

/// The bind guard's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindVerdict {
    /// Bind as asked.
    Allow,
    /// Bind to the loopback address of the same family instead (same port, 0).
    ToLoopback,
    /// Refuse with EPERM.
    Refuse,
}

/// May a sandbox bind `addr:port`? Loopback only, never a port of the daemon (with the
/// daemon dead, a sandbox must not take its place). A wildcard with port 0 is how clients
/// pick an ephemeral source port before connecting (`dig`, BIND's resolver library): it is
/// narrowed to loopback instead of refused. A wildcard with a fixed port is a listener meant
/// for the network: refused.
#[inline(always)]
pub fn bind_verdict(cfg: &GatewayConfig, addr: BindAddr, port: u16) -> BindVerdict {
    if is_gateway_port(cfg, port) {
        return BindVerdict::Refuse;
    }
    match addr {
        BindAddr::Loopback => BindVerdict::Allow,
        BindAddr::Wildcard if port == 0 => BindVerdict::ToLoopback,
        BindAddr::Wildcard | BindAddr::Other => BindVerdict::Refuse,
    }
}

/// Classify an IPv4 bind address (its 4 bytes in network order).
#[inline(always)]
pub fn bind_addr4(addr: [u8; 4]) -> BindAddr {
    if is_loopback4(addr) {
        BindAddr::Loopback
    } else if addr == [0, 0, 0, 0] {
        BindAddr::Wildcard
    } else {
        BindAddr::Other
    }
}

/// Classify an IPv6 bind address.
#[inline(always)]
pub fn bind_addr6(addr: &[u8; 16]) -> BindAddr {
    if is_loopback6_bind(addr) {
        return BindAddr::Loopback;
    }
    let mut i = 0;
    while i < 16 {
        if addr[i] != 0 {
            return BindAddr::Other;
        }
        i += 1;
    }
    BindAddr::Wildcard
}

/// Is the IPv4 address (its 4 bytes in network order) in `127.0.0.0/8`?
#[inline(always)]
pub fn is_loopback4(addr: [u8; 4]) -> bool {
    addr[0] == 127
}

/// Is the IPv6 address `::1` or IPv4-mapped loopback (`::ffff:127.0.0.0/104`)?
#[inline(always)]
pub fn is_loopback6_bind(addr: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    if addr[10] == 0 && addr[11] == 0 {
        addr[12] == 0 && addr[13] == 0 && addr[14] == 0 && addr[15] == 1
    } else {
        addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127
    }
}

/// Which way a packet crosses the sandbox socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the sandbox socket: the remote end is the destination.
    Egress,
    /// Delivered to the sandbox socket: the remote end is the source.
    Ingress,
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketDrop {
    /// The version nibble does not match the packet's protocol.
    NotIp = 1,
    /// An IPv4 header with options (IHL is not 5).
    IpOptions = 2,
    /// An IPv4 fragment.
    Fragment = 3,
    /// Not TCP or UDP directly after the IP header (for IPv6: any extension header).
    Protocol = 4,
    /// The remote end is not the daemon's loopback listener address.
    NotLoopback = 5,
    /// The remote port is not the daemon's listener for that protocol.
    Port = 6,
}

/// An allowed packet, seen from the sandbox socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// The sandbox socket's address, IPv4-mapped for IPv4.
    pub local_addr: [u8; 16],
    /// The sandbox socket's port, host order.
    pub local_port: u16,
}

/// Check an IPv4 packet: `hdr` is its first 20 bytes, `ports` the 4 bytes after them.
///
/// Allowed only: no options, no fragment, TCP to/from `127.0.0.1:proxy_port` or UDP
/// to/from `127.0.0.1:dns_port` (the remote end being the destination on egress and the
/// source on ingress).
#[inline(always)]
pub fn check_ipv4(
    cfg: &GatewayConfig,
    dir: Direction,
    hdr: &[u8; 20],
    ports: &[u8; 4],
) -> Result<Flow, PacketDrop> {
    if hdr[0] >> 4 != 4 {
        return Err(PacketDrop::NotIp);
    }
    if hdr[0] & 0x0f != 5 {
        return Err(PacketDrop::IpOptions);
    }
    // More-fragments flag and fragment offset; DF is fine.
    if hdr[6] & 0x3f != 0 || hdr[7] != 0 {
        return Err(PacketDrop::Fragment);
    }
    let src = [hdr[12], hdr[13], hdr[14], hdr[15]];
    let dst = [hdr[16], hdr[17], hdr[18], hdr[19]];
    let (local, remote) = match dir {
        Direction::Egress => (src, dst),
        Direction::Ingress => (dst, src),
    };
    if remote != [127, 0, 0, 1] {
        return Err(PacketDrop::NotLoopback);
    }
    let local_port = check_ports(cfg, dir, hdr[9], ports)?;
    let mut local_addr = [0u8; 16];
    local_addr[10] = 0xff;
    local_addr[11] = 0xff;
    local_addr[12] = local[0];
    local_addr[13] = local[1];
    local_addr[14] = local[2];
    local_addr[15] = local[3];
    Ok(Flow {
        protocol: hdr[9],
        local_addr,
        local_port,
    })
}

/// Check an IPv6 packet: `hdr` is its 40-byte fixed header, `ports` the 4 bytes after it.
///
/// Allowed only: TCP or UDP as the very next header (no extension header at all: routing,
/// hop-by-hop, destination options, fragment), to/from `[::1]` on the listener port of that
/// protocol.
#[inline(always)]
pub fn check_ipv6(
    cfg: &GatewayConfig,
    dir: Direction,
    hdr: &[u8; 40],
    ports: &[u8; 4],
) -> Result<Flow, PacketDrop> {
    if hdr[0] >> 4 != 6 {
        return Err(PacketDrop::NotIp);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        src[i] = hdr[8 + i];
        dst[i] = hdr[24 + i];
        i += 1;
    }
    let (local_addr, remote) = match dir {
        Direction::Egress => (src, dst),
        Direction::Ingress => (dst, src),
    };
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    if remote != loopback {
        return Err(PacketDrop::NotLoopback);
    }
    let local_port = check_ports(cfg, dir, hdr[6], ports)?;
    Ok(Flow {
        protocol: hdr[6],
        local_addr,
        local_port,
    })
}

/// The protocol must be TCP or UDP and the remote port its listener's; returns the local port.
#[inline(always)]
fn check_ports(
    cfg: &GatewayConfig,
    dir: Direction,
    protocol: u8,
    ports: &[u8; 4],
) -> Result<u16, PacketDrop> {
    let listener = match protocol {
        IPPROTO_TCP => cfg.proxy_port,
        IPPROTO_UDP => cfg.dns_port,
        _ => return Err(PacketDrop::Protocol),
    };
    let src = u16::from_be_bytes([ports[0], ports[1]]);
    let dst = u16::from_be_bytes([ports[2], ports[3]]);
    let (local, remote) = match dir {
        Direction::Egress => (src, dst),
        Direction::Ingress => (dst, src),
    };
    if listener == 0 || remote != listener {
        return Err(PacketDrop::Port);
    }
    Ok(local)
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
