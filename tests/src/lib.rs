//! The end-to-end test lab for Sluice (needs root).
//!
//! - [`netlab`]: a "node" network namespace (daemon + sandboxes) and a "net" namespace (test
//!   hosts) joined by a veth, no default route anywhere; addresses in [`addrs`].
//! - [`certs`]: a per-run test CA (ECDSA P-256) issuing upstream certificates, plus a rogue CA.
//! - [`upstream`]: fake HTTP(S)/h2/SSE/gRPC-trailers/WebSocket/TCP servers that run inside the
//!   net namespace, record what they receive, and stop on drop.
//! - [`cgroup`]: test cgroups that kill their processes and disappear on drop.
//! - [`squid`]: a real Squid in the net namespace (Basic auth, HTTPS listener) for proxy chaining.
//!
//! Everything cleans up on drop (also when a test panics) and uses unique names, so tests run
//! in parallel. Test traffic only ever targets 198.51.100.0/24, 203.0.113.0/24 and
//! 2001:db8::/32 inside the lab; 192.0.2.0/24 (the machine's own network) is refused.
//!
//! # Example
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use tests::{TestCa, TestCgroup, addrs, netlab::NetLab, upstream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lab = NetLab::new("sl")?;
//! let ca = TestCa::new()?;
//! let api = upstream::https(&ca)
//!     .route("/", "ok")
//!     .echo()
//!     .start(&lab, SocketAddr::new(addrs::FAR_HOST.into(), 443))?;
//!
//! // A "sandbox": curl in its own cgroup, inside the node namespace.
//! let sandbox = TestCgroup::unique("sl-sandbox")?;
//! let ca_file = ca.pem_file()?;
//! let mut curl = lab.exec_in_node("curl");
//! curl.args(["-sS", "--cacert"]).arg(&*ca_file).arg(api.url("/"));
//! let out = sandbox.wrap(&curl).output()?;
//! assert_eq!(out.stdout, b"ok");
//! assert_eq!(api.requests().len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Notes
//! - Each fake runs on its own thread and runtime, so tests may block (run `curl`, sleep)
//!   from plain `#[test]`s or `#[tokio::test]`s without starving it.
//! - Commands enter namespaces with `nsenter --net=` (not `ip netns exec`, which remounts
//!   `/sys` and hides the cgroup2 and bpffs mounts the daemon needs).
//! - In-process clients: [`NetLab::connect_from_node`] / [`NetLab::node_tcp_socket`]; an
//!   in-process daemon: [`NetLab::spawn_in_node`] (threads it spawns stay in the namespace).

pub mod addrs;
pub mod api_lab;
pub mod certs;
pub mod cgroup;
pub mod netlab;
pub mod podman;
pub mod sluice;
pub mod sniffer;
pub mod squid;
pub mod upstream;

pub use certs::TestCa;
pub use cgroup::TestCgroup;
pub use netlab::NetLab;

/// Sends every temporary file the tests make (`tempfile`) to `/run/sluice-e2e` instead of
/// `/tmp`: a `sluice exec` sandbox gets a private `/tmp`, so files a test shares with one
/// (test CA files, scripts) must live elsewhere. Idempotent.
pub fn share_temp_files_with_sandboxes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::path::Path::new("/run/sluice-e2e");
        let made = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)));
        if made.is_ok() {
            let _ = tempfile::env::override_temp_dir(dir);
        }
    });
}
