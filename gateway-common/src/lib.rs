//! Map keys and values shared by the kernel programs (`gateway-ebpf`) and the daemon
//! (`gateway-user`).
//!
//! Every type is `#[repr(C)]` with explicit padding and a compile-time size assert, so the
//! two sides can never disagree on a layout. Addresses are always 16 bytes: IPv4 is stored
//! IPv4-mapped (`::ffff:a.b.c.d`), the same form the daemon derives from an accepted socket.
#![cfg_attr(not(test), no_std)]

pub mod guard;

/// Names of the maps, as pinned under the pin directory.
pub mod map_names {
    /// `HashMap<u64 cgroup id, SandboxEntry>`: the enrolled sandboxes.
    pub const SANDBOXES: &str = "SLUICE_SANDBOXES";
    /// `Array<GatewayConfig>` with one entry: written by the daemon at start.
    pub const CONFIG: &str = "SLUICE_CONFIG";
    /// `LruHashMap<ConnKey, ConnRecord>`: one entry per live redirected TCP connection.
    pub const CONNS: &str = "SLUICE_CONNS";
    /// `LruHashMap<ConnKey, ConnRecord>`: who sent each DNS datagram the DNS listener
    /// receives. Keyed by netns cookie and the sandbox socket's address and port; the
    /// `proxy_*` fields of the key are always zero.
    pub const DNS_CLIENTS: &str = "SLUICE_DNS_CLIENTS";
    /// `HashMap<u64 sandbox cgroup id, i64>`: live redirected TCP connections per sandbox
    /// (counted by sockops, checked by connect4/6 against [`GatewayConfig::conn_cap`]).
    pub const SANDBOX_CONNS: &str = "SLUICE_SANDBOX_CONNS";
}

/// Capacity of the connection map. An LRU map: the oldest entry is evicted when full.
pub const MAX_CONNS: u32 = 65_536;
/// Capacity of the DNS client map (LRU: the oldest sender is forgotten first; a query whose
/// sender was forgotten before the DNS listener read it is a lookup miss, refused).
pub const MAX_DNS_CLIENTS: u32 = 16_384;
/// Most live redirected TCP connections one sandbox may hold; connect4/6 refuse beyond it, so
/// one sandbox cannot evict another's records from the shared connection map.
pub const MAX_CONNS_PER_SANDBOX: u32 = 16_384;
/// Capacity of the sandbox map.
pub const MAX_SANDBOXES: u32 = 4_096;
/// Deepest cgroup level searched for a sandbox ancestor.
pub const MAX_CGROUP_DEPTH: u32 = 16;

/// `GatewayConfig::flags`: the daemon has written its configuration.
pub const CONFIG_READY: u32 = 1;

/// Transport protocol of a captured connection (`ConnRecord::protocol`).
pub const PROTO_TCP: u8 = 6;
/// Transport protocol of a captured datagram flow.
pub const PROTO_UDP: u8 = 17;

/// Where redirected traffic goes, and the ports only the daemon may bind; one entry, written
/// by the daemon.
///
/// Until `flags` has [`CONFIG_READY`], every sandbox connect, bind and packet is refused
/// (fail closed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Transparent proxy listener port, host byte order.
    pub proxy_port: u16,
    /// DNS listener port, host byte order.
    pub dns_port: u16,
    /// [`CONFIG_READY`] once the daemon has configured the node.
    pub flags: u32,
    /// Control API port, host byte order; 0 when there is none. Sandboxes may not bind it.
    pub control_port: u16,
    /// Explicit proxy (`HTTPS_PROXY`) port, host byte order; 0 when there is none.
    /// Sandboxes may not bind it.
    pub explicit_proxy_port: u16,
    /// Most live redirected TCP connections one sandbox may hold; 0 means
    /// [`MAX_CONNS_PER_SANDBOX`].
    pub conn_cap: u32,
}
const _: () = assert!(core::mem::size_of::<GatewayConfig>() == 16);

/// One enrolled sandbox, keyed by its cgroup id (the cgroup directory's inode number).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxEntry {
    /// The daemon's id for the sandbox; the session is found from it in userspace.
    pub sandbox_id: u64,
    /// Reserved for per-sandbox kernel flags; zero today.
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SandboxEntry>() == 16);

/// Identifies a redirected connection as the proxy sees it on accept.
///
/// `client_*` is the sandbox socket's local address (the proxy's peer) and `proxy_*` the
/// listener address the connect was rewritten to. Ports are host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Cookie of the network namespace the sandbox socket lives in (`SO_NETNS_COOKIE`).
    pub netns_cookie: u64,
    /// Sandbox socket address, IPv4-mapped for IPv4.
    pub client_addr: [u8; 16],
    /// Proxy listener address, IPv4-mapped for IPv4.
    pub proxy_addr: [u8; 16],
    /// Sandbox socket port.
    pub client_port: u16,
    /// Proxy listener port.
    pub proxy_port: u16,
    /// Explicit padding, always zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ConnKey>() == 48);

/// What the kernel recorded about a redirected connect: the original destination and who made it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnRecord {
    /// Original destination address, IPv4-mapped for IPv4.
    pub orig_addr: [u8; 16],
    /// Original destination port, host byte order.
    pub orig_port: u16,
    /// Address family the application used (`AF_INET` = 2 or `AF_INET6` = 10).
    pub family: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    /// Explicit padding.
    pub _pad0: [u8; 3],
    /// Thread group id (the pid as userspace sees it in the root pid namespace).
    pub tgid: u32,
    /// Real uid of the connecting process.
    pub uid: u32,
    /// Explicit padding.
    pub _pad1: u32,
    /// The cgroup the connecting process was in.
    pub cgroup_id: u64,
    /// The enrolled sandbox cgroup that contains it (itself or an ancestor).
    pub sandbox_cgroup_id: u64,
    /// Cookie of the socket's network namespace.
    pub netns_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<ConnRecord>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four types are `#[repr(C)]`, `Copy`, made only of integers and byte
    // arrays with explicit padding fields, so every bit pattern is a valid value.
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::GatewayConfig {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::SandboxEntry {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::ConnKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::ConnRecord {}
}
