//! The attack suite: a hostile workload, root inside its sandbox, tries to get out around
//! Sluice or at a real credential, in every kind of sandbox (`sluice exec`, `sluice exec
//! --share-netns`, an enrolled cgroup where the attack applies). Each test asserts that the
//! attack fails *and*, with a packet sniffer on the test hosts' side and the hosts' own logs,
//! that nothing reached the other side. Needs root (run by `cargo xtask test`).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

#[path = "attacks/confinement.rs"]
mod confinement;
#[path = "attacks/gate.rs"]
mod gate;
#[path = "attacks/network.rs"]
mod network;
#[path = "attacks/range.rs"]
mod range;
