//! Leaf certificates for intercepted hosts: one shared key, a per-host cache, and
//! single-flight minting (concurrent misses for one host mint once).
//!
//! The cache is bounded: when full, the least recently used host is evicted (LRU), so a
//! sandbox that connects to ever new names cannot grow the daemon, and the names in use stay
//! cached. A refreshed entry (re-minted a day before its leaf expires) counts as a use.
//! Hits, misses and evictions are counted for `/metrics`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use tokio::sync::OnceCell;

use super::ca::{CertificateAuthority, random_serial};
use super::lock;

/// How long a leaf is valid after it is minted (capped by the CA's `not_after`).
pub const LEAF_VALIDITY: Duration = Duration::days(30);
/// How far a leaf's `not_before` lies in the past, to tolerate client clock skew.
pub const LEAF_BACKDATE: Duration = Duration::hours(1);
/// Default number of hosts whose leaves are kept (`tls.leaf_cache_size`).
pub const DEFAULT_LEAF_CACHE_SIZE: usize = 10_000;
/// A cached leaf is re-minted this long before it expires.
const REFRESH_BEFORE: Duration = Duration::days(1);
/// X.509 upper bound on a common name; longer host names go only into the SAN.
const MAX_COMMON_NAME: usize = 64;

/// The name a leaf is minted for: a DNS name (lowercase, no trailing dot) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeafHost {
    /// A DNS name; the leaf carries a `dNSName` SAN.
    Dns(String),
    /// An IP address; the leaf carries an `iPAddress` SAN.
    Ip(IpAddr),
}

impl LeafHost {
    /// Parses an SNI value or a host (without port): `Example.COM.`, `198.51.100.7`,
    /// `2001:db8::1` or `[2001:db8::1]`.
    ///
    /// # Security
    /// Wildcards and anything that is not a valid DNS name or IP address are refused, so a
    /// client cannot make Sluice mint a certificate for a pattern.
    pub fn parse(host: &str) -> Result<Self, LeafError> {
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Self::Ip(IpAddr::V6(ip)))
                .map_err(|_| invalid_host(host));
        }
        let trimmed = host.strip_suffix('.').unwrap_or(host);
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = trimmed.to_ascii_lowercase();
        if name.is_empty() || name.contains('*') || DnsName::try_from(name.as_str()).is_err() {
            return Err(invalid_host(host));
        }
        Ok(Self::Dns(name))
    }

    fn san(&self) -> Result<SanType, LeafError> {
        match self {
            Self::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            Self::Dns(name) => name
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| invalid_host(name)),
        }
    }
}

impl fmt::Display for LeafHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Errors of minting a leaf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeafError {
    /// The client-supplied name cannot be put in a certificate.
    #[error(
        "leaf: client sent {host:?}, which is neither a DNS name nor an IP address; refusing to mint"
    )]
    InvalidHost {
        /// The offending name (truncated).
        host: String,
    },
    /// The CA has expired; no valid leaf can be minted.
    #[error(
        "leaf: the CA expired at {not_after}; run `sluice ca rotate` (or replace the provided CA) and restart"
    )]
    CaExpired {
        /// The CA's `not_after`.
        not_after: OffsetDateTime,
    },
    /// Signing the leaf with the CA key failed (gateway side).
    #[error("leaf: signing with the CA key failed: {0}")]
    Sign(#[source] rcgen::Error),
    /// The shared leaf key could not be created or loaded into rustls (gateway side).
    #[error("leaf: creating the shared leaf key failed: {0}")]
    Key(String),
}

/// Mints and caches leaf certificates signed by one CA.
///
/// Create one per loaded CA (a rotated CA needs a new minter) and share it behind an `Arc`.
///
/// # Security
/// All leaves share one P-256 key generated in memory at construction (never written to
/// disk); every leaf has its own random serial. `Debug` never prints the key.
pub struct LeafMinter {
    ca: Arc<CertificateAuthority>,
    key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    cache: Mutex<LruCache<LeafHost, Arc<OnceCell<Minted>>>>,
    counters: CacheCounters,
    minted: AtomicU64,
    /// Time spent signing leaves, in nanoseconds (with `minted`, the mean cost of a miss).
    mint_nanos: AtomicU64,
}

impl LeafMinter {
    /// A minter for `ca` caching up to [`DEFAULT_LEAF_CACHE_SIZE`] hosts.
    pub fn new(ca: Arc<CertificateAuthority>) -> Result<Self, LeafError> {
        Self::with_capacity(ca, DEFAULT_LEAF_CACHE_SIZE)
    }

    /// A minter for `ca` caching up to `capacity` hosts (at least one), evicting the least
    /// recently used host when full.
    pub fn with_capacity(
        ca: Arc<CertificateAuthority>,
        capacity: usize,
    ) -> Result<Self, LeafError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| LeafError::Key(e.to_string()))?;
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = rustls::crypto::ring::sign::any_ecdsa_type(&pkcs8)
            .map_err(|e| LeafError::Key(e.to_string()))?;
        Ok(Self {
            ca,
            key,
            signing_key,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            counters: CacheCounters::default(),
            minted: AtomicU64::new(0),
            mint_nanos: AtomicU64::new(0),
        })
    }

    /// The certificate chain `[leaf, CA]` and shared key for `host`, minted on first use.
    ///
    /// Concurrent calls for the same host wait for one mint. No lock is held while minting.
    pub async fn certified_key(&self, host: &LeafHost) -> Result<Arc<CertifiedKey>, LeafError> {
        self.certified_key_at(host, OffsetDateTime::now_utc()).await
    }

    /// The cached leaf for `host`, if one has been minted (used by the synchronous rustls
    /// certificate resolver after [`Self::certified_key`] made sure it exists; not counted
    /// as a hit, since that call already counted).
    ///
    /// `None` if the host was evicted in between (a cache smaller than the hosts being
    /// handshaken at once): the handshake then fails, it is never served another leaf.
    pub fn cached(&self, host: &LeafHost) -> Option<Arc<CertifiedKey>> {
        let mut cache = lock(&self.cache);
        cache.get(host)?.get().map(|m| Arc::clone(&m.key))
    }

    /// How many leaves this minter has signed (a metric; cache hits do not count).
    pub fn minted_count(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// Total time spent minting leaves so far (a metric: divided by [`Self::minted_count`],
    /// the cost a cache miss adds to a handshake).
    pub fn mint_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.mint_nanos.load(Ordering::Relaxed))
    }

    /// The cache's size, bound and counters (for `/metrics`).
    pub fn cache_stats(&self) -> CacheStats {
        let (entries, capacity) = {
            let cache = lock(&self.cache);
            (cache.len(), cache.cap().get())
        };
        CacheStats {
            entries,
            capacity,
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
        }
    }

    /// The CA this minter signs with.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// [`Self::certified_key`] at a given time (tests drive the clock through this).
    pub(crate) async fn certified_key_at(
        &self,
        host: &LeafHost,
        now: OffsetDateTime,
    ) -> Result<Arc<CertifiedKey>, LeafError> {
        let cell = self.cell_for(host, now);
        let mut minted_here = false;
        let minted = cell
            .get_or_try_init(|| async {
                minted_here = true;
                let started = std::time::Instant::now();
                let minted = self.mint(host, now);
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.mint_nanos.fetch_add(nanos, Ordering::Relaxed);
                minted
            })
            .await;
        // A miss is a lookup that had to mint (also the retry after a failed mint); joining
        // a mint in flight or finding the leaf is a hit.
        let counter = if minted_here {
            &self.counters.misses
        } else {
            &self.counters.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::clone(&minted?.key))
    }

    /// The cache slot for `host`, marked most recently used: existing (also while another
    /// caller is still minting it), or new — which also replaces a leaf due for refresh and
    /// evicts the least recently used host when the cache is full.
    fn cell_for(&self, host: &LeafHost, now: OffsetDateTime) -> Arc<OnceCell<Minted>> {
        let mut cache = lock(&self.cache);
        if let Some(cell) = cache.get(host)
            && cell.get().is_none_or(|m| now < m.refresh_at)
        {
            return Arc::clone(cell);
        }
        let fresh = Arc::new(OnceCell::new());
        // `push` hands back the evicted entry, or the replaced one under the same host.
        if let Some((evicted, _)) = cache.push(host.clone(), Arc::clone(&fresh))
            && evicted != *host
        {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        fresh
    }

    fn mint(&self, host: &LeafHost, now: OffsetDateTime) -> Result<Minted, LeafError> {
        let ca_end = self.ca.not_after();
        let not_after = (now + LEAF_VALIDITY).min(ca_end);
        if not_after <= now {
            return Err(LeafError::CaExpired { not_after: ca_end });
        }
        let name = host.to_string();
        let mut subject = DistinguishedName::new();
        if name.len() <= MAX_COMMON_NAME {
            subject.push(DnType::CommonName, name);
        } else {
            subject.push(DnType::CommonName, "Sluice intercepted host");
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = vec![host.san()?];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.key, self.ca.issuer())
            .map_err(LeafError::Sign)?;
        let chain = vec![cert.der().clone(), self.ca.cert_der().clone()];
        self.minted.fetch_add(1, Ordering::Relaxed);
        // A leaf capped by the CA cannot be improved by re-minting: keep it until the CA ends.
        let refresh_at = if not_after < ca_end {
            not_after - REFRESH_BEFORE
        } else {
            ca_end
        };
        Ok(Minted {
            key: Arc::new(CertifiedKey::new(chain, Arc::clone(&self.signing_key))),
            refresh_at,
        })
    }
}

impl fmt::Debug for LeafMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafMinter")
            .field("ca", &self.ca)
            .field("cache", &self.cache_stats())
            .field("minted", &self.minted_count())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A minted leaf and when to replace it.
struct Minted {
    key: Arc<CertifiedKey>,
    refresh_at: OffsetDateTime,
}

/// The leaf cache's size, bound and counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Hosts in the cache (minted or being minted).
    pub entries: usize,
    /// The most hosts kept.
    pub capacity: usize,
    /// Lookups answered from the cache (or joining a mint in flight).
    pub hits: u64,
    /// Lookups that minted (new host, evicted host, leaf due for refresh, or a retry after
    /// a failed mint).
    pub misses: u64,
    /// Hosts evicted to make room.
    pub evictions: u64,
}

#[derive(Default)]
struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

fn invalid_host(host: &str) -> LeafError {
    LeafError::InvalidHost {
        host: host.chars().take(256).collect(),
    }
}
