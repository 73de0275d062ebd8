//! The upstream TLS client configurations: webpki roots plus operator-supplied PEM roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use super::UpstreamError;

/// Builds the two client configurations (ALPN `h2`+`http/1.1`, and `http/1.1` only for
/// upgrades) trusting webpki-roots plus every certificate in the `extra` PEM files.
///
/// # Security
/// Certificates are verified for the request's host (rustls's webpki verifier); there is
/// no option to skip verification.
pub fn client_configs(
    extra: &[PathBuf],
) -> Result<(Arc<ClientConfig>, Arc<ClientConfig>), UpstreamError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra {
        add_pem_roots(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut h1 = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), Arc::new(h1)))
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), UpstreamError> {
    let fail = |reason: String| UpstreamError::Roots {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(fail("no CERTIFICATE block".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [empty, missing] {
            let err = client_configs(std::slice::from_ref(&path)).unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let (both, h1) = client_configs(&[]).unwrap();
        assert_eq!(both.alpn_protocols.len(), 2);
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
