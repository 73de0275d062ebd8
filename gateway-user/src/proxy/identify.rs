//! Who is connecting, and where they meant to go: the kernel's record of a captured connect
//! in production ([`KernelIdentify`]), a plain table in tests ([`TableIdentify`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;

use crate::audit::{Side, Sided, Who};
use crate::capture::{self, Capture};
use crate::sandbox::{Registry, Sandbox};
use gateway_common::ConnRecord;

/// A captured connection, identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Who made it.
    pub who: Who,
    /// The destination the application asked for.
    pub destination: SocketAddr,
    /// The sandbox's upstream proxy override (`none`, an id), if it has one.
    pub proxy: Option<String>,
}

/// Why a connection is closed before anything is read from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No record: the connection did not come through the redirect.
    #[error("gateway: no capture record for this connection (not redirected by the kernel)")]
    NoRecord,
    /// The record names a cgroup that is not (or no longer) enrolled.
    #[error("gateway: sandbox cgroup {0} is not enrolled")]
    UnknownSandbox(u64),
    /// Reading the record failed.
    #[error("gateway: capture lookup failed: {0}")]
    Lookup(String),
}

impl Sided for Refusal {
    fn side(&self) -> Side {
        Side::Gateway
    }
}

/// Identifies accepted connections.
///
/// # Security
/// Every miss is a refusal: a connection nobody can vouch for is never served.
pub trait Identify: Send + Sync + Debug {
    /// Who made `stream`, and where it was going.
    fn identify(&self, stream: &TcpStream) -> Result<Identity, Refusal>;
}

/// The kernel's connection records and the enrolled sandboxes.
#[derive(Debug)]
pub struct KernelIdentify {
    /// The kernel's connection records.
    pub capture: Arc<Capture>,
    /// Enrolled sandboxes.
    pub sandboxes: Arc<Registry>,
}

impl Identify for KernelIdentify {
    fn identify(&self, stream: &TcpStream) -> Result<Identity, Refusal> {
        let lookup = |e: std::io::Error| Refusal::Lookup(e.to_string());
        let peer = stream.peer_addr().map_err(lookup)?;
        let local = stream.local_addr().map_err(lookup)?;
        let key = capture::conn_key(stream, peer, local).map_err(lookup)?;
        let record = self
            .capture
            .lookup(&key)
            .map_err(|e| Refusal::Lookup(e.to_string()))?
            .ok_or(Refusal::NoRecord)?;
        let sandbox = self
            .sandboxes
            .by_cgroup(record.sandbox_cgroup_id)
            .ok_or(Refusal::UnknownSandbox(record.sandbox_cgroup_id))?;
        Ok(Identity {
            who: who_of(&sandbox, &record),
            destination: capture::original_destination(&record),
            proxy: sandbox.upstream_proxy.clone(),
        })
    }
}

/// The audit view of the process the kernel recorded in `record`, in `sandbox`.
pub fn who_of(sandbox: &Sandbox, record: &ConnRecord) -> Who {
    Who {
        sandbox: sandbox.id,
        session: sandbox.session.clone(),
        pid: record.tgid,
        uid: record.uid,
        cgroup: record.cgroup_id,
        executable: executable_of(record.tgid),
    }
}

/// The executable of process `pid` (root PID namespace), as its mount namespace names it.
pub fn executable_of(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    let path: std::path::PathBuf = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(path.to_string_lossy().into_owned())
}

/// Identities by the client's address, with an optional one for every other client: the
/// data path without the kernel (in-process tests).
#[derive(Debug, Default)]
pub struct TableIdentify {
    by_peer: Mutex<HashMap<SocketAddr, Identity>>,
    others: Option<Identity>,
}

impl TableIdentify {
    /// Every connection is `identity`.
    pub fn every(identity: Identity) -> TableIdentify {
        TableIdentify {
            by_peer: Mutex::default(),
            others: Some(identity),
        }
    }

    /// Connections from `peer` are `identity`.
    pub fn insert(&self, peer: SocketAddr, identity: Identity) {
        self.by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, identity);
    }
}

impl Identify for TableIdentify {
    fn identify(&self, stream: &TcpStream) -> Result<Identity, Refusal> {
        let peer = stream
            .peer_addr()
            .map_err(|e| Refusal::Lookup(e.to_string()))?;
        let found = self
            .by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .cloned();
        found
            .or_else(|| self.others.clone())
            .ok_or(Refusal::NoRecord)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_from_proc() {
        let me = executable_of(std::process::id()).unwrap();
        assert!(std::path::Path::new(&me).is_absolute(), "{me}");
        assert_eq!(executable_of(0), None);
    }
}
