//! `cgroup/sock_create`: a sandbox may create only the socket kinds the gateway can steer.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{macros::cgroup_sock, programs::SockContext};

use crate::{
    addr::{
        AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, NETLINK_ROUTE,
        SOCK_DGRAM, SOCK_STREAM,
    },
    sandbox::{self, Refusal},
};

#[cgroup_sock(sock_create)]
pub fn sl_sock_create(ctx: SockContext) -> i32 {
    sandbox::verdict(&ctx, "sock_create", try_sock_create(&ctx))
}

#[inline(always)]
fn try_sock_create(ctx: &SockContext) -> Result<(), Refusal> {
    // SAFETY: a sock_create program's context; fields loaded at fixed offsets.
    let (family, ty, protocol) = unsafe {
        (
            read_volatile(addr_of!((*ctx.sock).family)),
            read_volatile(addr_of!((*ctx.sock).type_)),
            read_volatile(addr_of!((*ctx.sock).protocol)),
        )
    };
    // Local IPC is not egress: allowed even before the sandbox is registered.
    if family == AF_UNIX {
        return Ok(());
    }
    sandbox::gate()?;
    if allowed(family, ty, protocol) {
        Ok(())
    } else {
        Err(Refusal::Denied)
    }
}

/// The socket kinds a sandbox may create besides `AF_UNIX`: TCP and UDP over IPv4/IPv6 (the
/// kernel has already resolved protocol 0 to TCP or UDP), and route netlink (glibc's
/// `getaddrinfo` needs it). Raw, packet, ICMP, SCTP, MPTCP, UDP-Lite, vsock... are refused.
#[inline(always)]
pub fn allowed(family: u32, ty: u32, protocol: u32) -> bool {
    match family {
        AF_INET | AF_INET6 => {
            (ty == SOCK_STREAM && protocol == IPPROTO_TCP)
                || (ty == SOCK_DGRAM && protocol == IPPROTO_UDP)
        }
        AF_NETLINK => protocol == NETLINK_ROUTE,
        _ => false,
    }
}
