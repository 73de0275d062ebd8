//! Sluice: an egress gateway for sandboxed AI agents.
//!
//! The kernel side (`gateway-ebpf`) steers every socket of an enrolled sandbox to this
//! daemon; the daemon identifies the sandbox, decides per connection (pass through,
//! intercept, refuse), and writes one audit record for each.

pub mod capture;
pub mod detect;
pub mod dns;
pub mod tls;
