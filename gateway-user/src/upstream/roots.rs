//! The upstream TLS client configurations: which roots an upstream certificate may chain
//! to — the node's own trust store, the webpki roots, and operator-supplied PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::UpstreamError;

/// The built-in root sets an upstream certificate may chain to (`[upstream] roots`);
/// `extra_roots` are trusted in every case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Roots {
    /// The node's trust store (the OS bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR` in the
    /// daemon's environment) and the webpki roots. The default: a private CA the node
    /// trusts, or a TLS-inspecting corporate proxy's, works without configuration.
    #[default]
    #[serde(rename = "system+webpki")]
    SystemAndWebpki,
    /// The node's trust store only.
    #[serde(rename = "system")]
    System,
    /// The webpki roots only (Mozilla's list, built in).
    #[serde(rename = "webpki")]
    Webpki,
}

impl Roots {
    fn system(self) -> bool {
        matches!(self, Roots::SystemAndWebpki | Roots::System)
    }

    fn webpki(self) -> bool {
        matches!(self, Roots::SystemAndWebpki | Roots::Webpki)
    }
}

/// What went into a root store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RootCounts {
    /// Roots from the node's trust store.
    pub system: usize,
    /// Certificates of the node's trust store that did not parse as roots (skipped).
    pub skipped: usize,
    /// webpki roots.
    pub webpki: usize,
    /// Roots from `extra_roots` files.
    pub extra: usize,
}

/// Builds the two client configurations (ALPN `h2`+`http/1.1`, and `http/1.1` only for
/// upgrades) trusting `roots` plus every certificate in the `extra` PEM files.
///
/// # Security
/// Certificates are verified for the request's host (rustls's webpki verifier); there is
/// no option to skip verification. `own_ca` (Sluice's CA) is never a trusted upstream root:
/// it is dropped from the node's trust store, and an `extra_roots` file holding it is
/// refused — otherwise a leaf Sluice minted would pass for the real upstream.
pub fn client_configs(
    roots: Roots,
    extra: &[PathBuf],
    own_ca: Option<&CertificateDer<'_>>,
) -> Result<(Arc<ClientConfig>, Arc<ClientConfig>, RootCounts), UpstreamError> {
    let mut store = RootCertStore::empty();
    let mut counts = RootCounts::default();
    if roots.system() {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "upstream: part of the node's trust store could not be read");
        }
        (counts.system, counts.skipped) = add_system(&mut store, found.certs, own_ca);
    }
    if roots.webpki() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        counts.webpki = webpki_roots::TLS_SERVER_ROOTS.len();
    }
    for path in extra {
        counts.extra += add_pem_roots(&mut store, path, own_ca)?;
    }
    if store.is_empty() {
        return Err(UpstreamError::NoRoots { roots });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Config)?
        .with_root_certificates(store)
        .with_no_client_auth();
    let mut h1 = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), Arc::new(h1), counts))
}

/// Adds the node's trust store, skipping (and counting) what does not parse and Sluice's
/// own CA. Returns (added, skipped).
fn add_system(
    store: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    own_ca: Option<&CertificateDer<'_>>,
) -> (usize, usize) {
    let (own, others): (Vec<_>, Vec<_>) = certs
        .into_iter()
        .partition(|cert| own_ca.is_some_and(|own| own.as_ref() == cert.as_ref()));
    if !own.is_empty() {
        tracing::warn!(
            "upstream: the node's trust store holds Sluice's own CA; it is not trusted upstream"
        );
    }
    store.add_parsable_certificates(others)
}

fn add_pem_roots(
    store: &mut RootCertStore,
    path: &Path,
    own_ca: Option<&CertificateDer<'_>>,
) -> Result<usize, UpstreamError> {
    let fail = |reason: String| UpstreamError::Roots {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
        if own_ca.is_some_and(|own| own.as_ref() == cert.as_ref()) {
            return Err(fail(
                "holds Sluice's own CA, which is never trusted upstream".to_owned(),
            ));
        }
        store.add(cert).map_err(|e| fail(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(fail("no CERTIFICATE block".to_owned()));
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (CertificateDer<'static>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), cert.pem())
    }

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [empty, missing] {
            let err = client_configs(Roots::Webpki, std::slice::from_ref(&path), None).unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let (both, h1, counts) = client_configs(Roots::Webpki, &[], None).unwrap();
        assert_eq!(both.alpn_protocols.len(), 2);
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(counts.webpki > 100 && counts.system == 0, "{counts:?}");
    }

    #[test]
    fn the_own_ca_is_never_an_upstream_root() {
        let (own, own_pem) = self_signed("Sluice CA");
        let (other, _) = self_signed("Corp CA");
        let mut store = RootCertStore::empty();
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let (added, skipped) = add_system(&mut store, vec![own.clone(), other, junk], Some(&own));
        assert_eq!(
            (added, skipped),
            (1, 1),
            "the own CA is dropped, junk skipped"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle.pem");
        std::fs::write(&file, own_pem).unwrap();
        let err = client_configs(Roots::Webpki, &[file], Some(&own)).unwrap_err();
        assert!(err.to_string().contains("own CA"), "{err}");
    }

    #[test]
    fn roots_parse_from_the_configuration_names() {
        #[derive(Deserialize)]
        struct T {
            roots: Roots,
        }
        for (text, want) in [
            ("system+webpki", Roots::SystemAndWebpki),
            ("system", Roots::System),
            ("webpki", Roots::Webpki),
        ] {
            let t: T = toml::from_str(&format!("roots = {text:?}")).unwrap();
            assert_eq!(t.roots, want);
        }
        assert!(toml::from_str::<T>("roots = \"none\"").is_err());
    }
}
