//! What every program asks first: is the gateway configured, and which enrolled sandbox is
//! the current task in? Plus the per-socket record of the original destination.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_netns_cookie,
        },
    },
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use gateway_common::{CONFIG_READY, ConnRecord, GatewayConfig, MAX_CGROUP_DEPTH};

use crate::{SLUICE_CONFIG, SLUICE_SANDBOX_CONNS, SLUICE_SANDBOXES, SLUICE_SOCK_ORIG};

/// Why a program refused an operation (logged at debug level only).
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Refusal {
    /// The daemon has not marked the configuration ready.
    NotReady = 1,
    /// The task is in no enrolled sandbox.
    UnknownSandbox = 2,
    /// The socket kind or destination is not allowed (non-DNS UDP, raw, ...).
    Denied = 3,
    /// The per-socket record could not be stored.
    NoStorage = 4,
    /// The sandbox holds as many live TCP connections as it may.
    TooManyConns = 5,
}

/// The daemon's configuration, if it is ready.
#[inline(always)]
pub fn config() -> Result<GatewayConfig, Refusal> {
    match SLUICE_CONFIG.get(0) {
        Some(cfg) if cfg.flags & CONFIG_READY != 0 => Ok(*cfg),
        _ => Err(Refusal::NotReady),
    }
}

/// The cgroup id of the enrolled sandbox containing the current task: the outermost ancestor
/// (searching from the top of the hierarchy down) present in `SLUICE_SANDBOXES`.
#[inline(always)]
pub fn sandbox() -> Result<u64, Refusal> {
    let mut level: u32 = 1;
    while level <= MAX_CGROUP_DEPTH {
        // SAFETY: a helper call with a plain integer argument.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        if SLUICE_SANDBOXES.get_ptr(id).is_some() {
            return Ok(id);
        }
        level += 1;
    }
    Err(Refusal::UnknownSandbox)
}

/// Refuse a new TCP connect when the sandbox already holds its cap of live connections, so
/// one sandbox cannot evict the others' records from the shared LRU connection map.
#[inline(always)]
pub fn check_conn_cap(cfg: &GatewayConfig, sandbox: u64) -> Result<(), Refusal> {
    let live = match SLUICE_SANDBOX_CONNS.get_ptr(sandbox) {
        // SAFETY: a pointer to a live map value, read once.
        Some(p) => unsafe { core::ptr::read_volatile(p) },
        None => 0,
    };
    if gateway_common::guard::over_conn_cap(cfg, live) {
        Err(Refusal::TooManyConns)
    } else {
        Ok(())
    }
}

/// Add `delta` to the sandbox's live connection count (atomically).
#[inline(always)]
pub fn count_conn(sandbox: u64, delta: i64) {
    if let Some(p) = SLUICE_SANDBOX_CONNS.get_ptr_mut(sandbox) {
        atomic_add(p, delta);
        return;
    }
    if delta <= 0 {
        return;
    }
    // BPF_NOEXIST: if another CPU created the entry meanwhile, add to it instead.
    if SLUICE_SANDBOX_CONNS.insert(sandbox, delta, 1).is_err() {
        if let Some(p) = SLUICE_SANDBOX_CONNS.get_ptr_mut(sandbox) {
            atomic_add(p, delta);
        }
    }
}

/// `lock *p += delta`. The BPF target has no `AtomicI64::fetch_add` (no CAS); the intrinsic
/// with its result unused lowers to the BPF atomic add every kernel supports.
#[inline(always)]
fn atomic_add(p: *mut i64, delta: i64) {
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    // SAFETY: `p` points to a live, 8-byte aligned map value.
    let _ = unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(p, delta) };
}

/// Both gates: a ready configuration and a known sandbox.
#[inline(always)]
pub fn gate() -> Result<(GatewayConfig, u64), Refusal> {
    let cfg = config()?;
    let sandbox = sandbox()?;
    Ok((cfg, sandbox))
}

/// A record of a redirect made by the current task.
#[inline(always)]
pub fn new_record(
    ctx: &SockAddrContext,
    sandbox: u64,
    orig_addr: [u8; 16],
    orig_port: u16,
    family: u16,
    protocol: u8,
) -> ConnRecord {
    // SAFETY: helper calls; `ctx` is the program's context pointer.
    let (cgroup_id, netns_cookie) = unsafe {
        (
            bpf_get_current_cgroup_id(),
            bpf_get_netns_cookie(ctx.as_ptr()),
        )
    };
    ConnRecord {
        orig_addr,
        orig_port,
        family,
        protocol,
        _pad0: [0; 3],
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        _pad1: 0,
        cgroup_id,
        sandbox_cgroup_id: sandbox,
        netns_cookie,
    }
}

/// Store `rec` as the socket's original destination (replacing an earlier one).
#[inline(always)]
pub fn remember(ctx: &SockAddrContext, rec: &ConnRecord) -> Result<(), Refusal> {
    // SAFETY: `ctx` is a sock_addr context, whose `sk` the helper accepts.
    let slot = unsafe { SLUICE_SOCK_ORIG.get_or_insert_ptr_mut(ctx, None) };
    if slot.is_null() {
        return Err(Refusal::NoStorage);
    }
    // SAFETY: non-null pointer to this socket's storage, sized for a `ConnRecord`.
    unsafe { *slot = *rec };
    Ok(())
}

/// The socket's recorded original destination, if it was redirected.
#[inline(always)]
pub fn recorded(ctx: &SockAddrContext) -> Option<ConnRecord> {
    // SAFETY: as in `remember`; without the create flag nothing is allocated.
    let slot = unsafe { SLUICE_SOCK_ORIG.get_ptr_mut(ctx) };
    if slot.is_null() {
        None
    } else {
        // SAFETY: non-null pointer to this socket's storage.
        Some(unsafe { *slot })
    }
}

/// The return value of an allow/deny program: 1 allows, 0 refuses (EPERM).
#[inline(always)]
pub fn verdict<C: aya_ebpf::EbpfContext>(ctx: &C, hook: &str, result: Result<(), Refusal>) -> i32 {
    match result {
        Ok(()) => 1,
        Err(reason) => {
            debug!(ctx, "sluice {}: refused, reason {}", hook, reason as u8);
            0
        }
    }
}
