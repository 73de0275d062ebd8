//! Who is connecting, and where they meant to go: the kernel's record of a captured connect.

use std::net::SocketAddr;
use std::sync::Arc;

use gateway_common::ConnRecord;
use tokio::net::TcpStream;

use super::ProxyContext;
use crate::audit::Who;
use crate::capture;
use crate::net::{Cidr, classify_dialled};
use crate::sandbox::Sandbox;

/// A captured connection, identified.
#[derive(Debug)]
pub struct Identity {
    /// The sandbox it came from.
    pub sandbox: Arc<Sandbox>,
    /// The kernel's record.
    pub record: ConnRecord,
    /// The destination the application asked for.
    pub destination: SocketAddr,
}

impl Identity {
    /// The audit view of who made the connection.
    pub fn who(&self) -> Who {
        who_of(&self.sandbox, &self.record)
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
    }
}

/// Why a connection is closed before anything is relayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel has no record: the connection did not come through the redirect.
    #[error("gateway: no capture record for this connection (not redirected by the kernel)")]
    NoRecord,
    /// The record names a cgroup that is not (or no longer) enrolled.
    #[error("gateway: sandbox cgroup {0} is not enrolled")]
    UnknownSandbox(u64),
    /// Reading the kernel map failed.
    #[error("gateway: capture lookup failed: {0}")]
    Lookup(String),
    /// The destination is internal to the node or its network.
    #[error("policy: destination {destination} is a {what}; internal destinations are refused")]
    Internal {
        /// The destination.
        destination: SocketAddr,
        /// What kind of internal address.
        what: String,
    },
}

/// Looks up the kernel's record for an accepted connection. Every miss is a refusal.
pub fn identify(ctx: &ProxyContext, stream: &TcpStream) -> Result<Identity, Refusal> {
    let lookup = |e: std::io::Error| Refusal::Lookup(e.to_string());
    let peer = stream.peer_addr().map_err(lookup)?;
    let local = stream.local_addr().map_err(lookup)?;
    let key = capture::conn_key(stream, peer, local).map_err(lookup)?;
    let record = ctx
        .capture
        .lookup(&key)
        .map_err(|e| Refusal::Lookup(e.to_string()))?
        .ok_or(Refusal::NoRecord)?;
    let sandbox = ctx
        .sandboxes
        .by_cgroup(record.sandbox_cgroup_id)
        .ok_or(Refusal::UnknownSandbox(record.sandbox_cgroup_id))?;
    let destination = capture::original_destination(&record);
    Ok(Identity {
        sandbox,
        record,
        destination,
    })
}

/// Refuses destinations internal to the node or its network (including the node's own
/// interface addresses) unless a configured range allows them. The address checked must be
/// the address that will be dialled.
///
/// # Security
/// Called on the address dialled on every path: the transparent listener and the explicit
/// proxy check the original (or resolved) destination before the pipeline runs, and the
/// relay checks again right before it dials (passthrough and `tcp_allow`).
pub fn check_destination(destination: SocketAddr, allow: &[Cidr]) -> Result<(), Refusal> {
    match classify_dialled(destination.ip()) {
        Some(what) if !allow.iter().any(|c| c.contains(destination.ip())) => {
            Err(Refusal::Internal {
                destination,
                what: what.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_table() {
        let allow = [Cidr::parse("10.9.0.0/16").unwrap()];
        let cases = [
            ("198.51.100.10:443", true),
            ("[2001:db8::10]:80", true),
            ("127.0.0.1:3000", false),
            ("[::ffff:127.0.0.1]:3000", false),
            ("[::1]:22", false),
            ("169.254.169.254:80", false),
            ("10.1.0.1:80", false),
            ("10.9.3.4:80", true),
            ("[64:ff9b::a09:304]:80", false),
            ("[64:ff9b::c633:640a]:80", false),
            ("198.18.0.5:80", false),
        ];
        for (dest, ok) in cases {
            let dest: SocketAddr = dest.parse().unwrap();
            assert_eq!(check_destination(dest, &allow).is_ok(), ok, "{dest}");
        }
        let msg = check_destination("127.0.0.1:3000".parse().unwrap(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("127.0.0.1:3000") && msg.contains("loopback"),
            "{msg}"
        );
    }
}
