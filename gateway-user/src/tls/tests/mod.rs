//! Tests of the CA, leaf minting and the interception server configs; all in memory.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{ServerName, UnixTime};
use tempfile::TempDir;
use time::OffsetDateTime;

use super::{CertificateAuthority, root_store_with};

mod ca;
mod handshake;
mod leaf;

/// The current time, as the daemon would pass it.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A fresh CA in its own temporary state directory.
fn test_ca() -> (TempDir, Arc<CertificateAuthority>) {
    let dir = TempDir::new().unwrap();
    let ca = CertificateAuthority::load_or_create(&state(&dir), now()).unwrap();
    (dir, Arc::new(ca))
}

/// The state directory inside a test's temporary directory (not created yet).
fn state(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("state")
}

/// Verifies a leaf chain for `name` the way a client trusting only `ca` would.
fn verify(ca: &CertificateAuthority, key: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
    let roots = Arc::new(root_store_with(ca.cert_der()).unwrap());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(
            &key.cert[0],
            &key.cert[1..],
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

/// Mode bits of a file.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o7777
}
