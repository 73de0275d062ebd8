//! `cgroup/sendmsg4/6` and `cgroup/recvmsg4/6`: unconnected UDP. DNS is redirected to the
//! DNS listener and replies appear to come from the resolver the application asked; any
//! other datagram is refused.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use gateway_common::PROTO_UDP;

use crate::{
    addr::{LOOPBACK4, bytes_to_words, is_loopback6},
    connect::{steer4, steer6},
    sandbox, sockaddr,
};

#[cgroup_sock_addr(sendmsg4)]
pub fn sl_sendmsg4(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "sendmsg4", steer4(&ctx))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sl_sendmsg6(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "sendmsg6", steer6(&ctx))
}

/// recvmsg programs cannot refuse: they always return 1.
#[cgroup_sock_addr(recvmsg4)]
pub fn sl_recvmsg4(ctx: SockAddrContext) -> i32 {
    try_recvmsg4(&ctx);
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn sl_recvmsg6(ctx: SockAddrContext) -> i32 {
    try_recvmsg6(&ctx);
    1
}

/// A reply from the DNS listener gets the original resolver as its source.
#[inline(always)]
fn try_recvmsg4(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: an IPv4 sock_addr program's context.
    let sa = unsafe { sockaddr::read4(ctx.sock_addr) };
    let cfg = sandbox::config().ok()?;
    if sa.ip != LOOPBACK4 || sa.port != cfg.dns_port {
        return None;
    }
    let rec = sandbox::recorded(ctx)?;
    if rec.protocol != PROTO_UDP {
        return None;
    }
    let orig = bytes_to_words(&rec.orig_addr);
    // SAFETY: recvmsg4 may rewrite the source address.
    unsafe { sockaddr::write4(ctx.sock_addr, orig[3], rec.orig_port) };
    Some(())
}

#[inline(always)]
fn try_recvmsg6(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: an IPv6 sock_addr program's context.
    let sa = unsafe { sockaddr::read6(ctx.sock_addr) };
    let cfg = sandbox::config().ok()?;
    if !is_loopback6(&sa.ip) || sa.port != cfg.dns_port {
        return None;
    }
    let rec = sandbox::recorded(ctx)?;
    if rec.protocol != PROTO_UDP {
        return None;
    }
    // SAFETY: recvmsg6 may rewrite the source address.
    unsafe {
        sockaddr::write6(
            ctx.sock_addr,
            &bytes_to_words(&rec.orig_addr),
            rec.orig_port,
        )
    };
    Some(())
}
