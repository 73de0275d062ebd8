//! `sockops`: publish each redirected TCP connection under the key the proxy will see on
//! accept, and remove it when the socket closes.
//!
//! The function must not be named `sockops` (it would clash with the section symbol).

use core::{
    ffi::c_void,
    ptr::{addr_of, from_ref, null_mut, read_volatile},
};

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE, bpf_sock_ops,
    },
    helpers::generated::bpf_sk_storage_get,
    macros::sock_ops,
    programs::SockOpsContext,
};
use gateway_common::{ConnKey, ConnRecord, PROTO_TCP};

use crate::{
    SLUICE_CONNS, SLUICE_SOCK_ORIG,
    addr::{AF_INET, mapped_bytes, words_to_bytes},
    sandbox,
};

/// sockops programs return 1; the value carries no verdict for these callbacks.
#[sock_ops]
pub fn sl_sockops(ctx: SockOpsContext) -> u32 {
    let _ = try_sockops(&ctx);
    1
}

#[inline(always)]
fn try_sockops(ctx: &SockOpsContext) -> Option<()> {
    let op = ctx.op();
    if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        let rec = record(ctx.ops)?;
        let key = conn_key(ctx.ops, &rec);
        // Counted only once the close callback is armed: every count has its close.
        let flags = ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG;
        ctx.set_cb_flags(flags as i32).ok()?;
        sandbox::count_conn(rec.sandbox_cgroup_id, 1);
        // A failed insert leaves the connection unrecorded: the proxy's lookup misses and
        // closes it.
        SLUICE_CONNS.insert(key, rec, 0).ok()?;
    } else if op == BPF_SOCK_OPS_STATE_CB && ctx.arg(1) == BPF_TCP_CLOSE {
        let rec = record(ctx.ops)?;
        let key = conn_key(ctx.ops, &rec);
        let _ = SLUICE_CONNS.remove(key);
        sandbox::count_conn(rec.sandbox_cgroup_id, -1);
    }
    Some(())
}

/// The socket's redirect record, if connect4/6 redirected it.
#[inline(always)]
fn record(ops: *mut bpf_sock_ops) -> Option<ConnRecord> {
    // SAFETY: `sk` of a sockops context, checked for null before use.
    let sk = unsafe { (*ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let map: *mut c_void = from_ref(&SLUICE_SOCK_ORIG).cast_mut().cast();
    // SAFETY: a lookup without the create flag in this socket's storage.
    let slot = unsafe { bpf_sk_storage_get(map, sk.cast(), null_mut(), 0) }.cast::<ConnRecord>();
    if slot.is_null() {
        return None;
    }
    // SAFETY: non-null pointer to this socket's storage.
    let rec = unsafe { *slot };
    (rec.protocol == PROTO_TCP).then_some(rec)
}

/// The key the proxy derives on accept: the sandbox socket's local side is the proxy's
/// peer, its remote side the proxy's listener. IPv4 is IPv4-mapped, ports host order.
#[inline(always)]
fn conn_key(ops: *mut bpf_sock_ops, rec: &ConnRecord) -> ConnKey {
    // SAFETY: every field loaded unconditionally at its fixed offset (see KERNEL.md).
    let (family, remote4, local4, remote6, local6, remote_port, local_port) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)),
            read_volatile(addr_of!((*ops).remote_ip4)),
            read_volatile(addr_of!((*ops).local_ip4)),
            [
                read_volatile(addr_of!((*ops).remote_ip6[0])),
                read_volatile(addr_of!((*ops).remote_ip6[1])),
                read_volatile(addr_of!((*ops).remote_ip6[2])),
                read_volatile(addr_of!((*ops).remote_ip6[3])),
            ],
            [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            read_volatile(addr_of!((*ops).remote_port)),
            read_volatile(addr_of!((*ops).local_port)),
        )
    };
    let (client_addr, proxy_addr) = if family == AF_INET {
        (mapped_bytes(local4), mapped_bytes(remote4))
    } else {
        (words_to_bytes(&local6), words_to_bytes(&remote6))
    };
    ConnKey {
        netns_cookie: rec.netns_cookie,
        client_addr,
        proxy_addr,
        // local_port is host order; remote_port is a network-order u16 in the upper half.
        client_port: local_port as u16,
        proxy_port: u16::from_be((remote_port >> 16) as u16),
        _pad: 0,
    }
}
