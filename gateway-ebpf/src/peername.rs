//! `cgroup/getpeername4/6`: a redirected socket reports its original peer, not the gateway.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use gateway_common::{ConnRecord, GatewayConfig, PROTO_TCP};

use crate::{
    addr::{LOOPBACK4, bytes_to_words, is_loopback6},
    sandbox, sockaddr,
};

/// getpeername programs cannot refuse: they always return 1.
#[cgroup_sock_addr(getpeername4)]
pub fn sl_getpeer4(ctx: SockAddrContext) -> i32 {
    try_getpeer4(&ctx);
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn sl_getpeer6(ctx: SockAddrContext) -> i32 {
    try_getpeer6(&ctx);
    1
}

/// Is the socket's current peer port the gateway listener its record points at?
#[inline(always)]
fn is_listener(cfg: &GatewayConfig, rec: &ConnRecord, port: u16) -> bool {
    let listener = if rec.protocol == PROTO_TCP {
        cfg.proxy_port
    } else {
        cfg.dns_port
    };
    port == listener
}

#[inline(always)]
fn try_getpeer4(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: an IPv4 sock_addr program's context.
    let sa = unsafe { sockaddr::read4(ctx.sock_addr) };
    let cfg = sandbox::config().ok()?;
    if sa.ip != LOOPBACK4 {
        return None;
    }
    let rec = sandbox::recorded(ctx)?;
    if !is_listener(&cfg, &rec, sa.port) {
        return None;
    }
    let orig = bytes_to_words(&rec.orig_addr);
    // SAFETY: getpeername4 may rewrite the reported address.
    unsafe { sockaddr::write4(ctx.sock_addr, orig[3], rec.orig_port) };
    Some(())
}

#[inline(always)]
fn try_getpeer6(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: an IPv6 sock_addr program's context.
    let sa = unsafe { sockaddr::read6(ctx.sock_addr) };
    let cfg = sandbox::config().ok()?;
    if !is_loopback6(&sa.ip) {
        return None;
    }
    let rec = sandbox::recorded(ctx)?;
    if !is_listener(&cfg, &rec, sa.port) {
        return None;
    }
    // SAFETY: getpeername6 may rewrite the reported address.
    unsafe {
        sockaddr::write6(
            ctx.sock_addr,
            &bytes_to_words(&rec.orig_addr),
            rec.orig_port,
        )
    };
    Some(())
}
