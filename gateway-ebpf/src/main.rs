//! Sluice kernel programs.
//!
//! Attached to the parent cgroup of all sandboxes (and to extra enrolled cgroups), they steer
//! every socket of an enrolled sandbox to the gateway: TCP connects go to the transparent
//! proxy, DNS to the DNS listener, everything else is refused. See
//! `shared/design/ARCHITECTURE.md` §2.
//!
//! Every program is a thin entry function plus a `try_` function; decisions fail closed (an
//! unknown sandbox or an unconfigured gateway refuses the operation).
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic add on a map value: see sandbox::atomic_add"
)]

mod addr;
mod bind;
mod connect;
mod peername;
mod sandbox;
mod skb;
mod sock_create;
mod sockaddr;
mod sockops;
mod sockopt;
mod udp;

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap},
};
use gateway_common::{
    ConnKey, ConnRecord, GatewayConfig, MAX_CONNS, MAX_DNS_CLIENTS, MAX_SANDBOXES, SandboxEntry,
};

/// Enrolled sandboxes by cgroup id; written by the daemon.
#[map(name = "SLUICE_SANDBOXES")]
static SLUICE_SANDBOXES: HashMap<u64, SandboxEntry> = HashMap::with_max_entries(MAX_SANDBOXES, 0);

/// The gateway's listener ports; one entry, written by the daemon.
#[map(name = "SLUICE_CONFIG")]
static SLUICE_CONFIG: Array<GatewayConfig> = Array::with_max_entries(1, 0);

/// Live redirected TCP connections, keyed as the proxy sees them on accept.
#[map(name = "SLUICE_CONNS")]
static SLUICE_CONNS: LruHashMap<ConnKey, ConnRecord> = LruHashMap::with_max_entries(MAX_CONNS, 0);

/// Who sent each DNS datagram, keyed by netns cookie and the sandbox socket's address and
/// port (`proxy_*` zero); written by `cgroup_skb/egress`, read by the daemon's DNS listener.
#[map(name = "SLUICE_DNS_CLIENTS")]
static SLUICE_DNS_CLIENTS: LruHashMap<ConnKey, ConnRecord> =
    LruHashMap::with_max_entries(MAX_DNS_CLIENTS, 0);

/// Live redirected TCP connections per sandbox cgroup id (sockops counts, connect4/6 check).
#[map(name = "SLUICE_SANDBOX_CONNS")]
static SLUICE_SANDBOX_CONNS: HashMap<u64, i64> = HashMap::with_max_entries(MAX_SANDBOXES, 0);

/// The original destination of each redirected socket, freed with the socket.
#[btf_map(name = "SLUICE_SOCK_ORIG")]
static SLUICE_SOCK_ORIG: SkStorage<ConnRecord> = SkStorage::new();

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The kernel only lets GPL programs call some of the helpers used here.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
