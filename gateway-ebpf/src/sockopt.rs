//! `cgroup/setsockopt`: refuse the options that put sandbox-chosen bytes on the wire past the
//! packet filter (IP options, IPv6 extension headers) or make the kernel send on the
//! sandbox's behalf without its socket (multicast joins: IGMP/MLD reports). Every other option
//! is left to the kernel unchanged.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{macros::cgroup_sockopt, programs::SockoptContext};
use aya_log_ebpf::debug;
use gateway_common::guard;

/// Returning 1 hands the call to the kernel with the caller's optval and optlen untouched
/// (`optlen` is left as is, so options larger than a page pass too); 0 fails it with EPERM.
#[cgroup_sockopt(setsockopt)]
pub fn sl_setsockopt(ctx: SockoptContext) -> i32 {
    // SAFETY: a sockopt program's context; both fields loaded at fixed offsets.
    let (level, optname) = unsafe {
        (
            read_volatile(addr_of!((*ctx.sockopt).level)),
            read_volatile(addr_of!((*ctx.sockopt).optname)),
        )
    };
    if guard::setsockopt_refused(level, optname) {
        debug!(
            &ctx,
            "sluice setsockopt: refused level {} option {}", level, optname
        );
        0
    } else {
        1
    }
}
