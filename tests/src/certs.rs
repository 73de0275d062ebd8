//! A per-run test CA (ECDSA P-256) that issues upstream server certificates, and a "rogue"
//! CA for negative tests (untrusted issuer, wrong name, expired).
//!
//! Keys here are throwaway test keys generated at run time; they are never written anywhere
//! except temp files the tests ask for.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors from generating or using test certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters (bad host name?) or failed to sign.
    #[error("certs: generate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected a certificate, key or configuration.
    #[error("certs: rustls config: {0}")]
    Rustls(#[from] rustls::Error),
    /// Writing a PEM file failed.
    #[error("certs: write PEM file: {0}")]
    Write(#[from] std::io::Error),
}

/// A certificate authority generated for this test run. Cheap to clone (shared).
#[derive(Clone)]
pub struct TestCa {
    inner: Arc<CaInner>,
}

struct CaInner {
    name: String,
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

/// Options for [`TestCa::issue_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeafOptions {
    /// Validity ended in 2021: clients must reject it. Default is false.
    pub expired: bool,
}

/// A leaf certificate (chain without the root) and its private key.
#[derive(Clone)]
pub struct IssuedCert {
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl TestCa {
    /// A fresh CA named `Sluice test CA <pid>-<n>`.
    pub fn new() -> Result<TestCa, CertError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestCa::named(&format!("Sluice test CA {}-{n}", std::process::id()))
    }

    /// A fresh CA that nothing trusts, for "unknown issuer" tests.
    pub fn rogue() -> Result<TestCa, CertError> {
        TestCa::named(&format!("Rogue test CA {}", std::process::id()))
    }

    /// A fresh CA with the given common name.
    pub fn named(common_name: &str) -> Result<TestCa, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let inner = CaInner {
            name: common_name.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok(TestCa {
            inner: Arc::new(inner),
        })
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The CA certificate in PEM (what `curl --cacert` and Sluice's extra roots take).
    pub fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.inner.cert_der
    }

    /// Writes the CA PEM to a temp file that is deleted when the returned path drops.
    pub fn pem_file(&self) -> Result<tempfile::TempPath, CertError> {
        crate::share_temp_files_with_sandboxes();
        let mut file = tempfile::Builder::new()
            .prefix("sl-test-ca-")
            .suffix(".pem")
            .tempfile()?;
        file.write_all(self.inner.cert_pem.as_bytes())?;
        file.flush()?;
        // A certificate is public: sandboxes (unprivileged ids on the node) read it too.
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        Ok(file.into_temp_path())
    }

    /// Writes the CA PEM to `dir/<file_name>` and returns the path.
    pub fn write_pem(&self, dir: &Path, file_name: &str) -> Result<PathBuf, CertError> {
        let path = dir.join(file_name);
        std::fs::write(&path, &self.inner.cert_pem)?;
        Ok(path)
    }

    /// A root store trusting only this CA.
    pub fn root_store(&self) -> Result<rustls::RootCertStore, CertError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.inner.cert_der.clone())?;
        Ok(roots)
    }

    /// A rustls client config trusting only this CA, offering `alpn` (e.g. `&[b"h2"]`).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, CertError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store()?)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Issues a server certificate for `hosts` (DNS names or IP addresses, which become IP
    /// SANs). The first host is also the subject CN.
    pub fn issue(&self, hosts: &[&str]) -> Result<IssuedCert, CertError> {
        self.issue_with(hosts, LeafOptions::default())
    }

    /// Issues a server certificate for `hosts` that expired in 2021.
    pub fn issue_expired(&self, hosts: &[&str]) -> Result<IssuedCert, CertError> {
        self.issue_with(hosts, LeafOptions { expired: true })
    }

    /// Issues a server certificate for `hosts` with `options`.
    pub fn issue_with(
        &self,
        hosts: &[&str],
        options: LeafOptions,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("test upstream"),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if options.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.inner.issuer)?;
        Ok(IssuedCert {
            chain: vec![cert.der().clone()],
            chain_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// The chain (leaf only; the root is not sent) in DER.
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The chain in PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key in DER (PKCS#8).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The private key in PEM (PKCS#8). A throwaway test key.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A rustls server config presenting this certificate and offering `alpn`
    /// (e.g. `&[b"h2", b"http/1.1"]`). Build it once per server, not per connection.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key_der())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_cert_builds_server_config() {
        let ca = TestCa::new().unwrap();
        let leaf = ca
            .issue(&["api.example.test", "203.0.113.10", "2001:db8:1::10"])
            .unwrap();
        assert_eq!(leaf.chain_der().len(), 1);
        assert!(leaf.chain_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        leaf.server_config(&[b"h2"]).unwrap();
        ca.client_config(&[]).unwrap();
    }

    #[test]
    fn pem_file_holds_the_ca() {
        let ca = TestCa::rogue().unwrap();
        let path = ca.pem_file().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ca.cert_pem());
    }
}
