//! `cgroup/bind4` and `cgroup/bind6`: a sandbox may bind only to loopback, and never to one
//! of the daemon's ports (with the daemon dead, a sandbox must not take its place). A
//! wildcard bind to port 0 (a client choosing an ephemeral source port) is narrowed to
//! loopback; see `gateway_common::guard::bind_verdict`.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use gateway_common::guard::{self, BindVerdict};

use crate::{
    addr::{LOOPBACK4, LOOPBACK6, words_to_bytes},
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
    match guard::bind_verdict(&cfg, guard::bind_addr4(sa.ip.to_ne_bytes()), sa.port) {
        BindVerdict::Allow => Ok(()),
        BindVerdict::ToLoopback => {
            // SAFETY: bind4 may rewrite the address.
            unsafe { sockaddr::write4(ctx.sock_addr, LOOPBACK4, sa.port) };
            Ok(())
        }
        BindVerdict::Refuse => Err(Refusal::Denied),
    }
}

#[inline(always)]
fn try_bind6(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: an IPv6 sock_addr program's context.
    let sa = unsafe { sockaddr::read6(ctx.sock_addr) };
    let (cfg, _) = sandbox::gate()?;
    match guard::bind_verdict(&cfg, guard::bind_addr6(&words_to_bytes(&sa.ip)), sa.port) {
        BindVerdict::Allow => Ok(()),
        BindVerdict::ToLoopback => {
            // SAFETY: bind6 may rewrite the address.
            unsafe { sockaddr::write6(ctx.sock_addr, &LOOPBACK6, sa.port) };
            Ok(())
        }
        BindVerdict::Refuse => Err(Refusal::Denied),
    }
}
