//! TLS for interception: Sluice's certificate authority and the leaves it mints.
//!
//! - [`ca`]: the CA, kept in the state directory (key at mode 0600), reused across restarts,
//!   rotated 7 days before it expires; or provided by the operator.
//! - [`leaf`]: per-host leaves signed by the CA with one shared key, cached, minted once per
//!   host even under concurrent misses.
//! - [`server_config`]: the shared rustls `ServerConfig`s (one per mirrored ALPN set) whose
//!   resolver picks the cached leaf by SNI.
//! - [`pkcs12`]: the Java trust store (`cacerts`) sandboxes get.
//! - [`trust`]: what makes a sandbox trust the CA: the merged bundle, the hashed directory,
//!   and the variables runtimes read.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod ca;
pub mod clients;
pub mod leaf;
pub mod pkcs12;
pub mod server_config;
pub mod trust;

pub use ca::{CaError, CaOrigin, CaSettings, CertificateAuthority};
pub use leaf::{CacheStats, DEFAULT_LEAF_CACHE_SIZE, LeafError, LeafHost, LeafMinter};
pub use server_config::{ServerConfigCache, TlsConfigError, mirrored_alpn, root_store_with};

/// Locks `mutex`, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
