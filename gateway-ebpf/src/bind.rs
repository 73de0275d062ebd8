//! `cgroup/bind4` and `cgroup/bind6`: a sandbox may bind only to loopback, and never to one
//! of the daemon's ports (with the daemon dead, a sandbox must not take its place).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use gateway_common::guard;

use crate::{
    addr::words_to_bytes,
    sandbox::{self, Refusal},
    sockaddr,
};

#[cgroup_sock_addr(bind4)]
pub fn sl_bind4(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "bind4", try_bind4(&ctx))
}

#[cgroup_sock_addr(bind6)]
pub fn sl_bind6(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "bind6", try_bind6(&ctx))
}

#[inline(always)]
fn try_bind4(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: an IPv4 sock_addr program's context.
    let sa = unsafe { sockaddr::read4(ctx.sock_addr) };
    let (cfg, _) = sandbox::gate()?;
    let loopback = guard::is_loopback4(sa.ip.to_ne_bytes());
    if guard::bind_allowed(&cfg, loopback, sa.port) {
        Ok(())
    } else {
        Err(Refusal::Denied)
    }
}

#[inline(always)]
fn try_bind6(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: an IPv6 sock_addr program's context.
    let sa = unsafe { sockaddr::read6(ctx.sock_addr) };
    let (cfg, _) = sandbox::gate()?;
    let loopback = guard::is_loopback6_bind(&words_to_bytes(&sa.ip));
    if guard::bind_allowed(&cfg, loopback, sa.port) {
        Ok(())
    } else {
        Err(Refusal::Denied)
    }
}
