//! rustls server configurations for intercepted connections: one per mirrored ALPN set,
//! shared by every connection, resolving the leaf by SNI from the [`LeafMinter`] cache.
//!
//! rustls resolves certificates synchronously, so the proxy first awaits
//! [`ServerConfigCache::server_config_for`], which mints the leaf (single-flight) and then
//! hands out the shared config whose resolver finds that leaf in the cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

use super::leaf::{LeafError, LeafHost, LeafMinter};
use super::lock;

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// Protocols the interception server can speak, in the server's order of preference.
const SUPPORTED_ALPN: [&[u8]; 2] = [ALPN_H2, ALPN_HTTP11];
/// An ALPN protocol list, as rustls holds it.
type AlpnList = Vec<Vec<u8>>;
/// Server-side TLS session cache size (shared by all configs).
const SESSION_CACHE_SIZE: usize = 256;
/// Bound on configs for IP-address hosts (clients send no SNI to an IP); cleared when full.
const IP_CONFIG_CAPACITY: usize = 1024;

/// Errors of building server configurations or trust stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The leaf for the host could not be minted.
    #[error(transparent)]
    Leaf(#[from] LeafError),
    /// rustls refused the configuration (gateway side; a bug or crypto backend failure).
    #[error("TLS: building the interception server configuration failed: {0}")]
    Build(#[source] rustls::Error),
    /// The CA certificate is not usable as a trust anchor.
    #[error("TLS: the CA certificate cannot be used as a trust anchor: {0}; check the CA file")]
    TrustAnchor(#[source] rustls::Error),
}

/// The ALPN list the interception server offers for a client's offer: the protocols Sluice
/// speaks that the client offered, in the order `h2`, `http/1.1`. Empty if the client
/// offered none of them (then no ALPN is negotiated).
pub fn mirrored_alpn(client_offer: &[Vec<u8>]) -> AlpnList {
    SUPPORTED_ALPN
        .iter()
        .filter(|p| client_offer.iter().any(|o| o.as_slice() == **p))
        .map(|p| p.to_vec())
        .collect()
}

/// A root store trusting only `ca_der` (for tests and for checking an exported CA).
pub fn root_store_with(ca_der: &CertificateDer<'_>) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der.clone().into_owned())
        .map_err(TlsConfigError::TrustAnchor)?;
    Ok(roots)
}

/// The shared interception [`ServerConfig`]s (at most one per ALPN set for named hosts).
///
/// # Security
/// The resolver only returns leaves already minted for an approved host; an unknown SNI
/// gets no certificate and the handshake fails (fail closed). Such misses are counted.
pub struct ServerConfigCache {
    minter: Arc<LeafMinter>,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    misses: Arc<AtomicU64>,
    by_alpn: Mutex<HashMap<AlpnList, Arc<ServerConfig>>>,
    by_ip: Mutex<HashMap<(AlpnList, IpAddr), Arc<ServerConfig>>>,
}

impl ServerConfigCache {
    /// Configs serving leaves from `minter`, with the ring provider, TLS 1.2 and 1.3, and
    /// session resumption (stateful cache and TLS 1.3 tickets) shared across configs.
    pub fn new(minter: Arc<LeafMinter>) -> Result<Self, TlsConfigError> {
        Ok(Self {
            minter,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            ticketer: rustls::crypto::ring::Ticketer::new().map_err(TlsConfigError::Build)?,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            misses: Arc::new(AtomicU64::new(0)),
            by_alpn: Mutex::new(HashMap::new()),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// The server config to accept a connection for `host` whose ClientHello offered
    /// `client_alpn`: the leaf is minted (or found cached) first, then the shared config for
    /// [`mirrored_alpn`]`(client_alpn)` is returned.
    ///
    /// A DNS host is resolved from the SNI at handshake time. An IP host gets a config that
    /// falls back to that IP's leaf when the ClientHello carries no SNI (clients never send
    /// an IP address as SNI).
    pub async fn server_config_for(
        &self,
        host: &LeafHost,
        client_alpn: &[Vec<u8>],
    ) -> Result<Arc<ServerConfig>, TlsConfigError> {
        self.minter.certified_key(host).await?;
        let alpn = mirrored_alpn(client_alpn);
        match host {
            LeafHost::Dns(_) => {
                let mut configs = lock(&self.by_alpn);
                if let Some(config) = configs.get(&alpn) {
                    return Ok(Arc::clone(config));
                }
                let config = self.build(alpn.clone(), None)?;
                configs.insert(alpn, Arc::clone(&config));
                Ok(config)
            }
            LeafHost::Ip(ip) => {
                let key = (alpn, *ip);
                let mut configs = lock(&self.by_ip);
                if let Some(config) = configs.get(&key) {
                    return Ok(Arc::clone(config));
                }
                if configs.len() >= IP_CONFIG_CAPACITY {
                    configs.clear();
                }
                let config = self.build(key.0.clone(), Some(host.clone()))?;
                configs.insert(key, Arc::clone(&config));
                Ok(config)
            }
        }
    }

    /// The leaf minter behind these configs.
    pub fn minter(&self) -> &Arc<LeafMinter> {
        &self.minter
    }

    /// Handshakes whose SNI (or IP fallback) had no cached leaf (a metric; each failed).
    pub fn resolver_misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn build(
        &self,
        alpn: AlpnList,
        fallback: Option<LeafHost>,
    ) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let resolver = CacheResolver {
            minter: Arc::clone(&self.minter),
            fallback,
            misses: Arc::clone(&self.misses),
        };
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Build)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn;
        config.ticketer = Arc::clone(&self.ticketer);
        config.session_storage = Arc::clone(&self.sessions);
        Ok(Arc::new(config))
    }
}

impl std::fmt::Debug for ServerConfigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfigCache")
            .field("minter", &self.minter)
            .field("alpn_configs", &lock(&self.by_alpn).len())
            .field("ip_configs", &lock(&self.by_ip).len())
            .field("resolver_misses", &self.resolver_misses())
            .finish_non_exhaustive()
    }
}

/// Picks the cached leaf by SNI, or the fixed IP host when there is no SNI.
#[derive(Debug)]
struct CacheResolver {
    minter: Arc<LeafMinter>,
    fallback: Option<LeafHost>,
    misses: Arc<AtomicU64>,
}

impl ResolvesServerCert for CacheResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = match client_hello.server_name() {
            Some(sni) => LeafHost::parse(sni)
                .ok()
                .and_then(|host| self.minter.cached(&host)),
            None => self.fallback.as_ref().and_then(|h| self.minter.cached(h)),
        };
        if found.is_none() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
}
