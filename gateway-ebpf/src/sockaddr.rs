//! Fixed-offset access to `bpf_sock_addr`.
//!
//! Every field is loaded unconditionally with its own 4-byte volatile access: the verifier
//! rejects variable context offsets (which LLVM creates when it merges loads across branches)
//! and 8-byte stores to `user_ip6`.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::bindings::bpf_sock_addr;

use crate::addr::{host_port, user_port};

/// The address part of an IPv4 sock_addr context.
pub struct Sa4 {
    pub ip: u32,
    pub port: u16,
    pub ty: u32,
    pub protocol: u32,
}

/// The address part of an IPv6 sock_addr context.
pub struct Sa6 {
    pub ip: [u32; 4],
    pub port: u16,
    pub ty: u32,
    pub protocol: u32,
}

/// Read `user_ip4`, `user_port`, `type` and `protocol`.
///
/// # Safety
/// `sa` must be the context of an IPv4 sock_addr program.
#[inline(always)]
pub unsafe fn read4(sa: *mut bpf_sock_addr) -> Sa4 {
    unsafe {
        Sa4 {
            ip: read_volatile(addr_of!((*sa).user_ip4)),
            port: host_port(read_volatile(addr_of!((*sa).user_port))),
            ty: read_volatile(addr_of!((*sa).type_)),
            protocol: read_volatile(addr_of!((*sa).protocol)),
        }
    }
}

/// Read `user_ip6`, `user_port`, `type` and `protocol`.
///
/// # Safety
/// `sa` must be the context of an IPv6 sock_addr program.
#[inline(always)]
pub unsafe fn read6(sa: *mut bpf_sock_addr) -> Sa6 {
    unsafe {
        Sa6 {
            ip: [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ],
            port: host_port(read_volatile(addr_of!((*sa).user_port))),
            ty: read_volatile(addr_of!((*sa).type_)),
            protocol: read_volatile(addr_of!((*sa).protocol)),
        }
    }
}

/// Rewrite the IPv4 address and port.
///
/// # Safety
/// `sa` must be the context of an IPv4 sock_addr program that may write them.
#[inline(always)]
pub unsafe fn write4(sa: *mut bpf_sock_addr, ip: u32, port: u16) {
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip4), ip);
        write_volatile(addr_of_mut!((*sa).user_port), user_port(port));
    }
}

/// Rewrite the IPv6 address and port.
///
/// # Safety
/// `sa` must be the context of an IPv6 sock_addr program that may write them.
#[inline(always)]
pub unsafe fn write6(sa: *mut bpf_sock_addr, ip: &[u32; 4], port: u16) {
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip6[0]), ip[0]);
        write_volatile(addr_of_mut!((*sa).user_ip6[1]), ip[1]);
        write_volatile(addr_of_mut!((*sa).user_ip6[2]), ip[2]);
        write_volatile(addr_of_mut!((*sa).user_ip6[3]), ip[3]);
        write_volatile(addr_of_mut!((*sa).user_port), user_port(port));
    }
}
