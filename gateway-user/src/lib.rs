//! Sluice: an egress gateway for sandboxed AI agents.
//!
//! The kernel side (`gateway-ebpf`) steers every socket of an enrolled sandbox to this
//! daemon; the daemon identifies the sandbox, decides per connection (pass through,
//! intercept, refuse), and writes one audit record for each.

pub mod api;
pub mod audit;
pub mod capture;
pub mod cli;
pub mod config;
pub mod conn;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod detect;
pub mod dns;
pub mod drain;
pub mod gate;
pub mod host;
pub mod intercept;
pub mod io;
pub mod live;
pub mod net;
pub mod oci;
pub mod pii;
pub mod policy;
pub mod proxy;
pub mod route;
pub mod sandbox;
pub mod session;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tls;
pub mod upstream;
pub mod workers;
