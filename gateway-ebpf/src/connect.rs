//! `cgroup/connect4` and `cgroup/connect6`: TCP to the proxy, DNS to the DNS listener, other
//! UDP refused. The shared `steer4`/`steer6` also serve unconnected UDP (`sendmsg`).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use gateway_common::{GatewayConfig, PROTO_TCP, PROTO_UDP};

use crate::{
    addr::{
        AF_INET, AF_INET6, DNS_PORT, IPPROTO_TCP, IPPROTO_UDP, LOOPBACK4, LOOPBACK6,
        MAPPED_LOOPBACK6, SOCK_DGRAM, SOCK_STREAM, is_loopback6, is_mapped, mapped_bytes,
        words_to_bytes,
    },
    sandbox::{self, Refusal},
    sockaddr,
};

#[cgroup_sock_addr(connect4)]
pub fn sl_connect4(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "connect4", steer4(&ctx))
}

#[cgroup_sock_addr(connect6)]
pub fn sl_connect6(ctx: SockAddrContext) -> i32 {
    sandbox::verdict(&ctx, "connect6", steer6(&ctx))
}

/// Where a sandbox socket may go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Already addressed to a gateway listener (a second copy of these programs ran first,
    /// or the sandbox dialled the listener itself): leave it untouched.
    Untouched,
    /// Rewrite to this gateway listener port, recording the original with this protocol.
    Redirect { port: u16, protocol: u8 },
}

/// The pure decision for a socket of `ty`/`protocol` heading to `port` (`to_loopback` says
/// whether the address is the gateway's loopback).
#[inline(always)]
pub fn route(
    cfg: &GatewayConfig,
    ty: u32,
    protocol: u32,
    to_loopback: bool,
    port: u16,
) -> Result<Route, Refusal> {
    if ty == SOCK_STREAM && protocol == IPPROTO_TCP {
        if to_loopback && port == cfg.proxy_port {
            return Ok(Route::Untouched);
        }
        return Ok(Route::Redirect {
            port: cfg.proxy_port,
            protocol: PROTO_TCP,
        });
    }
    if ty == SOCK_DGRAM && protocol == IPPROTO_UDP {
        if to_loopback && port == cfg.dns_port {
            return Ok(Route::Untouched);
        }
        if port == DNS_PORT {
            return Ok(Route::Redirect {
                port: cfg.dns_port,
                protocol: PROTO_UDP,
            });
        }
    }
    Err(Refusal::Denied)
}

/// Apply [`route`] to an IPv4 sock_addr context (connect4 or sendmsg4).
#[inline(always)]
pub fn steer4(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: an IPv4 sock_addr program's context.
    let sa = unsafe { sockaddr::read4(ctx.sock_addr) };
    let (cfg, sandbox) = sandbox::gate()?;
    match route(&cfg, sa.ty, sa.protocol, sa.ip == LOOPBACK4, sa.port)? {
        Route::Untouched => Ok(()),
        Route::Redirect { port, protocol } => {
            if protocol == PROTO_TCP {
                sandbox::check_conn_cap(&cfg, sandbox)?;
            }
            let rec = sandbox::new_record(
                ctx,
                sandbox,
                mapped_bytes(sa.ip),
                sa.port,
                AF_INET as u16,
                protocol,
            );
            sandbox::remember(ctx, &rec)?;
            // SAFETY: connect4/sendmsg4 may rewrite the destination.
            unsafe { sockaddr::write4(ctx.sock_addr, LOOPBACK4, port) };
            Ok(())
        }
    }
}

/// Apply [`route`] to an IPv6 sock_addr context (connect6 or sendmsg6). IPv4-mapped
/// destinations go to `::ffff:127.0.0.1`, native IPv6 to `::1`.
#[inline(always)]
pub fn steer6(ctx: &SockAddrContext) -> Result<(), Refusal> {
    // SAFETY: an IPv6 sock_addr program's context.
    let sa = unsafe { sockaddr::read6(ctx.sock_addr) };
    let (cfg, sandbox) = sandbox::gate()?;
    match route(&cfg, sa.ty, sa.protocol, is_loopback6(&sa.ip), sa.port)? {
        Route::Untouched => Ok(()),
        Route::Redirect { port, protocol } => {
            if protocol == PROTO_TCP {
                sandbox::check_conn_cap(&cfg, sandbox)?;
            }
            let rec = sandbox::new_record(
                ctx,
                sandbox,
                words_to_bytes(&sa.ip),
                sa.port,
                AF_INET6 as u16,
                protocol,
            );
            sandbox::remember(ctx, &rec)?;
            let target = if is_mapped(&sa.ip) {
                &MAPPED_LOOPBACK6
            } else {
                &LOOPBACK6
            };
            // SAFETY: connect6/sendmsg6 may rewrite the destination.
            unsafe { sockaddr::write6(ctx.sock_addr, target, port) };
            Ok(())
        }
    }
}
