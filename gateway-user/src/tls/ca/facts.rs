//! What Sluice reads from a certificate, and small encoders for showing it.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::CaError;

/// The facts Sluice needs from a certificate.
#[derive(Debug)]
pub(super) struct CertFacts {
    pub(super) common_name: String,
    pub(super) not_before: OffsetDateTime,
    pub(super) not_after: OffsetDateTime,
    pub(super) is_ca: bool,
    /// The subjectPublicKey bit string contents (compared with the key's public half).
    pub(super) public_key: Vec<u8>,
}

impl CertFacts {
    pub(super) fn parse(der: &CertificateDer<'_>, path: &Path) -> Result<Self, CaError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| cert_parse(path, e.to_string()))?;
        let basic = cert
            .basic_constraints()
            .map_err(|e| cert_parse(path, e.to_string()))?;
        let usage = cert
            .key_usage()
            .map_err(|e| cert_parse(path, e.to_string()))?;
        let is_ca =
            basic.is_some_and(|b| b.value.ca) && usage.is_none_or(|u| u.value.key_cert_sign());
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            common_name,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }
}

pub(super) fn cert_parse(path: &Path, reason: String) -> CaError {
    CaError::CertParse {
        path: path.to_path_buf(),
        reason,
    }
}

pub(super) fn pem_encode_cert(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

pub(super) fn hex(bytes: &[u8], separator: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(separator)
}
