//! The daemon's handles on the pinned maps.

use std::sync::{Mutex, MutexGuard};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use gateway_common::{CONFIG_READY, ConnKey, ConnRecord, GatewayConfig, SandboxEntry, map_names};

use super::{CaptureError, pins::PinLayout};

/// Open handles on the maps shared with the kernel programs.
///
/// Lookups in the connection map take `&self` and never serialize; only writes to the
/// sandbox and config maps go through a mutex (aya wants `&mut` for them).
pub(crate) struct Maps {
    sandboxes: Mutex<HashMap<MapData, u64, SandboxEntry>>,
    sandbox_conns: Mutex<HashMap<MapData, u64, i64>>,
    config: Mutex<Array<MapData, GatewayConfig>>,
    conns: HashMap<MapData, ConnKey, ConnRecord>,
    dns_clients: HashMap<MapData, ConnKey, ConnRecord>,
}

impl Maps {
    /// Open the pinned maps of an installation.
    pub(crate) fn open(layout: &PinLayout) -> Result<Self, CaptureError> {
        let sandboxes = open_pinned(layout, map_names::SANDBOXES)?;
        let config = open_pinned(layout, map_names::CONFIG)?;
        let conns = open_pinned(layout, map_names::CONNS)?;
        let dns_clients = open_pinned(layout, map_names::DNS_CLIENTS)?;
        let sandbox_conns = open_pinned(layout, map_names::SANDBOX_CONNS)?;
        Ok(Self {
            sandboxes: Mutex::new(
                HashMap::try_from(sandboxes)
                    .map_err(CaptureError::map(map_names::SANDBOXES, "open"))?,
            ),
            sandbox_conns: Mutex::new(
                HashMap::try_from(sandbox_conns)
                    .map_err(CaptureError::map(map_names::SANDBOX_CONNS, "open"))?,
            ),
            config: Mutex::new(
                Array::try_from(config).map_err(CaptureError::map(map_names::CONFIG, "open"))?,
            ),
            conns: HashMap::try_from(conns).map_err(CaptureError::map(map_names::CONNS, "open"))?,
            dns_clients: HashMap::try_from(dns_clients)
                .map_err(CaptureError::map(map_names::DNS_CLIENTS, "open"))?,
        })
    }

    /// Write the listener ports and mark the configuration ready: from now on sandbox
    /// sockets are redirected instead of refused.
    pub(crate) fn write_config(&self, mut cfg: GatewayConfig) -> Result<(), CaptureError> {
        cfg.flags |= CONFIG_READY;
        lock(&self.config)
            .set(0, cfg, 0)
            .map_err(CaptureError::map(map_names::CONFIG, "write"))
    }

    pub(crate) fn register(&self, cgroup_id: u64, entry: SandboxEntry) -> Result<(), CaptureError> {
        lock(&self.sandboxes)
            .insert(cgroup_id, entry, 0)
            .map_err(CaptureError::map(map_names::SANDBOXES, "insert"))
    }

    /// Remove a sandbox (and its live connection count); removing an absent one is not an
    /// error.
    pub(crate) fn unregister(&self, cgroup_id: u64) -> Result<(), CaptureError> {
        match lock(&self.sandboxes).remove(&cgroup_id) {
            Err(err) if is_not_found(&err) => Ok(()),
            other => other.map_err(CaptureError::map(map_names::SANDBOXES, "remove")),
        }?;
        match lock(&self.sandbox_conns).remove(&cgroup_id) {
            Err(err) if is_not_found(&err) => Ok(()),
            other => other.map_err(CaptureError::map(map_names::SANDBOX_CONNS, "remove")),
        }
    }

    /// The live redirected TCP connections the kernel counts for a sandbox.
    pub(crate) fn sandbox_conns(&self, cgroup_id: u64) -> Result<i64, CaptureError> {
        match lock(&self.sandbox_conns).get(&cgroup_id, 0) {
            Ok(n) => Ok(n),
            Err(err) if is_not_found(&err) => Ok(0),
            Err(err) => Err(CaptureError::map(map_names::SANDBOX_CONNS, "lookup")(err)),
        }
    }

    pub(crate) fn sandboxes(&self) -> Result<Vec<(u64, SandboxEntry)>, CaptureError> {
        lock(&self.sandboxes)
            .iter()
            .collect::<Result<_, _>>()
            .map_err(CaptureError::map(map_names::SANDBOXES, "list"))
    }

    pub(crate) fn lookup(&self, key: &ConnKey) -> Result<Option<ConnRecord>, CaptureError> {
        match self.conns.get(key, 0) {
            Ok(rec) => Ok(Some(rec)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(CaptureError::map(map_names::CONNS, "lookup")(err)),
        }
    }

    /// The sender of a DNS datagram, by `(netns cookie, client address and port)`.
    pub(crate) fn lookup_dns(&self, key: &ConnKey) -> Result<Option<ConnRecord>, CaptureError> {
        match self.dns_clients.get(key, 0) {
            Ok(rec) => Ok(Some(rec)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(CaptureError::map(map_names::DNS_CLIENTS, "lookup")(err)),
        }
    }

    pub(crate) fn conn_count(&self) -> Result<usize, CaptureError> {
        let mut n = 0;
        for key in self.conns.keys() {
            match key {
                Ok(_) => n += 1,
                // An entry deleted between two steps of the walk is simply not counted.
                Err(err) if is_not_found(&err) => {}
                Err(err) => return Err(CaptureError::map(map_names::CONNS, "count")(err)),
            }
        }
        Ok(n)
    }
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").finish_non_exhaustive()
    }
}

/// Fail if the pinned config map exists with another value size than this build's (pins left
/// by another version): checked before anything is replaced, so enforcement never lapses.
pub(crate) fn check_pinned_config(layout: &PinLayout) -> Result<(), CaptureError> {
    let path = layout.map(map_names::CONFIG);
    if !path.exists() {
        return Ok(());
    }
    let info = aya::maps::MapInfo::from_pin(&path)
        .map_err(CaptureError::map(map_names::CONFIG, "inspect pin"))?;
    let want = std::mem::size_of::<GatewayConfig>() as u32;
    let found = info.value_size();
    if found == want {
        Ok(())
    } else {
        Err(CaptureError::IncompatiblePin { path, found, want })
    }
}

fn open_pinned(layout: &PinLayout, name: &'static str) -> Result<Map, CaptureError> {
    let path = layout.map(name);
    if !path.exists() {
        return Err(CaptureError::NotInstalled(layout.root().to_path_buf()));
    }
    let data = MapData::from_pin(&path).map_err(CaptureError::map(name, "open pin"))?;
    Map::from_map_data(data).map_err(CaptureError::map(name, "open pin"))
}

/// The maps stay consistent even if a holder panicked: a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn is_not_found(err: &MapError) -> bool {
    match err {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}
