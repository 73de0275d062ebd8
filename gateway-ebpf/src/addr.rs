//! Address constants and conversions. `bpf_sock_addr` and `bpf_sock_ops` hold IPv4 addresses
//! and IPv6 words in network byte order, read as native `u32`s.

/// Address families as the kernel numbers them.
pub const AF_UNIX: u32 = 1;
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;
pub const AF_NETLINK: u32 = 16;

/// Socket types and protocols.
pub const SOCK_STREAM: u32 = 1;
pub const SOCK_DGRAM: u32 = 2;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
pub const NETLINK_ROUTE: u32 = 0;

/// The DNS port, host order.
pub const DNS_PORT: u16 = 53;

/// `127.0.0.1` as it sits in `user_ip4`.
pub const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// Third word of an IPv4-mapped IPv6 address (`::ffff:0:0/96`).
pub const MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
/// `::1`.
pub const LOOPBACK6: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
/// `::ffff:127.0.0.1`.
pub const MAPPED_LOOPBACK6: [u32; 4] = [0, 0, MAPPED_WORD, LOOPBACK4];

/// Is `ip6` an IPv4-mapped address?
#[inline(always)]
pub fn is_mapped(ip6: &[u32; 4]) -> bool {
    ip6[0] == 0 && ip6[1] == 0 && ip6[2] == MAPPED_WORD
}

/// Is `ip6` a loopback the gateway listens on (`::1` or `::ffff:127.0.0.1`)?
#[inline(always)]
pub fn is_loopback6(ip6: &[u32; 4]) -> bool {
    (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0 && ip6[3] == LOOPBACK6[3])
        || (is_mapped(ip6) && ip6[3] == LOOPBACK4)
}

/// The 16-byte form of an IPv4 address: `::ffff:a.b.c.d`.
#[inline(always)]
pub fn mapped_bytes(ip4: u32) -> [u8; 16] {
    words_to_bytes(&[0, 0, MAPPED_WORD, ip4])
}

/// The 16 bytes of an address held as four network-order words.
#[inline(always)]
pub fn words_to_bytes(ip6: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let w = ip6[i].to_ne_bytes();
        out[i * 4] = w[0];
        out[i * 4 + 1] = w[1];
        out[i * 4 + 2] = w[2];
        out[i * 4 + 3] = w[3];
        i += 1;
    }
    out
}

/// The four network-order words of a 16-byte address.
#[inline(always)]
pub fn bytes_to_words(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// A host-order port as `bpf_sock_addr.user_port` wants it (network-order u16 in a u32).
#[inline(always)]
pub fn user_port(port: u16) -> u32 {
    u32::from(port.to_be())
}

/// The host-order port held in `bpf_sock_addr.user_port`.
#[inline(always)]
pub fn host_port(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}
