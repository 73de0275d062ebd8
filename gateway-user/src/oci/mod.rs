//! Capturing OCI containers from birth: what the runtime wrapper
//! ([`crate::cli::runtime`]) reads of a runtime's command line and a container's bundle.
//!
//! - [`args`]: the runtime command line (global options, command, bundle, container id);
//! - [`annotations`]: what a container's `sluice.dev/*` annotations ask for.

pub mod annotations;
pub mod args;
