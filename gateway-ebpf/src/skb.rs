//! `cgroup_skb/egress` and `cgroup_skb/ingress`: the backstop under every other hook. A
//! sandbox socket may only exchange plain TCP with the proxy listener and plain UDP with the
//! DNS listener, on loopback: no IP options, no IPv6 extension headers (a routing header set
//! by `setsockopt` or by `sendmsg` ancillary data is dropped here), no other destination.
//!
//! Egress also records who sent each DNS datagram (`SLUICE_DNS_CLIENTS`): the daemon's DNS
//! socket cannot tell sandboxes apart by itself.

use core::{
    ffi::c_void,
    ptr::{addr_of, from_ref, null_mut, read_volatile},
};

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{bpf_sk_fullsock, bpf_sk_storage_get, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use aya_log_ebpf::debug;
use gateway_common::{
    ConnKey, ConnRecord, PROTO_UDP,
    guard::{self, Direction, Flow, IPPROTO_UDP},
};

use crate::{SLUICE_DNS_CLIENTS, SLUICE_SOCK_ORIG, sandbox};

/// `skb->protocol` values (host order).
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Why a packet was dropped (logged at debug level only); values above 16 are
/// [`guard::PacketDrop`] + 16.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Drop {
    /// The daemon has not written its configuration.
    NotReady = 1,
    /// Neither IPv4 nor IPv6.
    Family = 2,
    /// The headers could not be read (a truncated packet).
    Short = 3,
    /// A DNS datagram whose sender could not be recorded.
    Unrecorded = 4,
    /// The packet crosses an interface other than loopback.
    Interface = 5,
}

#[cgroup_skb(egress)]
pub fn sl_egress(ctx: SkBuffContext) -> i32 {
    verdict(&ctx, "egress", try_egress(&ctx))
}

#[cgroup_skb(ingress)]
pub fn sl_ingress(ctx: SkBuffContext) -> i32 {
    verdict(
        &ctx,
        "ingress",
        try_check(&ctx, Direction::Ingress).map(|_| ()),
    )
}

#[inline(always)]
fn verdict(ctx: &SkBuffContext, hook: &str, result: Result<(), u8>) -> i32 {
    match result {
        Ok(()) => 1,
        Err(reason) => {
            debug!(ctx, "sluice {}: dropped, reason {}", hook, reason);
            0
        }
    }
}

#[inline(always)]
fn try_egress(ctx: &SkBuffContext) -> Result<(), u8> {
    let flow = try_check(ctx, Direction::Egress)?;
    if flow.protocol == IPPROTO_UDP {
        record_dns_client(ctx, &flow).map_err(|d| d as u8)?;
    }
    Ok(())
}

/// Load the IP header and the 4 port bytes after it at fixed offsets, and check them.
#[inline(always)]
fn try_check(ctx: &SkBuffContext, dir: Direction) -> Result<Flow, u8> {
    let cfg = sandbox::config().map_err(|_| Drop::NotReady as u8)?;
    // SAFETY: a cgroup_skb context; `ifindex` is loaded at its fixed offset.
    let ifindex = unsafe { read_volatile(addr_of!((*ctx.skb.skb).ifindex)) };
    if !guard::on_loopback(ifindex) {
        return Err(Drop::Interface as u8);
    }
    // SAFETY: a cgroup_skb context; `protocol` is loaded at its fixed offset.
    let proto = unsafe { read_volatile(addr_of!((*ctx.skb.skb).protocol)) };
    let proto = u16::from_be(proto as u16);
    let checked = if proto == ETH_P_IP {
        let mut hdr = [0u8; 20];
        let mut ports = [0u8; 4];
        load(ctx, 0, &mut hdr)?;
        load(ctx, 20, &mut ports)?;
        guard::check_ipv4(&cfg, dir, &hdr, &ports)
    } else if proto == ETH_P_IPV6 {
        let mut hdr = [0u8; 40];
        let mut ports = [0u8; 4];
        load(ctx, 0, &mut hdr)?;
        load(ctx, 40, &mut ports)?;
        guard::check_ipv6(&cfg, dir, &hdr, &ports)
    } else {
        return Err(Drop::Family as u8);
    };
    checked.map_err(|d| d as u8 + 16)
}

/// Copy `N` bytes at `offset` of the packet (from the network header) into `buf`.
#[inline(always)]
fn load<const N: usize>(ctx: &SkBuffContext, offset: u32, buf: &mut [u8; N]) -> Result<(), u8> {
    // SAFETY: `buf` is a writable buffer of exactly N bytes; the helper bounds-checks the packet.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            offset,
            buf.as_mut_ptr().cast::<c_void>(),
            N as u32,
        )
    };
    if rc < 0 {
        Err(Drop::Short as u8)
    } else {
        Ok(())
    }
}

/// Publish the sender of a DNS datagram under (netns cookie, sandbox socket address and port):
/// the record connect4/6 or sendmsg4/6 stored on the socket when they redirected it. A socket
/// without a record (it dialled the DNS listener itself) is not published: the daemon's lookup
/// misses and the query is refused.
#[inline(always)]
fn record_dns_client(ctx: &SkBuffContext, flow: &Flow) -> Result<(), Drop> {
    // SAFETY: `sk` of a cgroup_skb context, checked for null before use.
    let sk = unsafe { read_volatile(addr_of!((*ctx.skb.skb).__bindgen_anon_2.sk)) };
    if sk.is_null() {
        return Err(Drop::Unrecorded);
    }
    // SAFETY: a non-null `bpf_sock` of this skb.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return Err(Drop::Unrecorded);
    }
    let map: *mut c_void = from_ref(&SLUICE_SOCK_ORIG).cast_mut().cast();
    // SAFETY: a lookup without the create flag in this full socket's storage.
    let slot = unsafe { bpf_sk_storage_get(map, full.cast(), null_mut(), 0) }.cast::<ConnRecord>();
    if slot.is_null() {
        return Ok(());
    }
    // SAFETY: non-null pointer to this socket's storage.
    let rec = unsafe { *slot };
    if rec.protocol != PROTO_UDP {
        return Ok(());
    }
    let key = ConnKey {
        netns_cookie: rec.netns_cookie,
        client_addr: flow.local_addr,
        proxy_addr: [0; 16],
        client_port: flow.local_port,
        proxy_port: 0,
        _pad: 0,
    };
    SLUICE_DNS_CLIENTS
        .insert(&key, &rec, 0)
        .map_err(|_| Drop::Unrecorded)
}
