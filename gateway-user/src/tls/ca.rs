//! Sluice's certificate authority: created on first run, reused across restarts, rotated
//! before it expires; or a CA the operator brings.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

mod facts;
mod files;

use facts::{CertFacts, cert_parse, hex, pem_encode_cert};

/// File name of the CA certificate in the state directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (PKCS#8 PEM, mode 0600) in the state directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Suffix of the previous CA's files after a rotation (`ca.pem.old`, `ca-key.pem.old`).
pub const OLD_SUFFIX: &str = ".old";

/// How long a generated CA lives and when it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaSettings {
    /// Validity of a newly generated CA. Default is 365 days.
    pub validity: Duration,
    /// A CA whose `not_after` is this close (or closer) is rotated on load. Default is 7 days.
    pub rotate_within: Duration,
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            validity: Duration::days(365),
            rotate_within: Duration::days(7),
        }
    }
}

/// Where the CA in memory came from; the daemon logs it and, on `Rotated`, tells operators
/// that sandboxes must pick up the new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    /// No CA existed in the state directory; a new one was generated.
    Created,
    /// The CA in the state directory was loaded and is still valid long enough.
    Loaded,
    /// The previous CA was moved to `*.old` and a new one was generated.
    Rotated,
    /// Loaded from operator-provided files ([`CertificateAuthority::from_files`]).
    Provided,
}

/// Errors of loading, creating or rotating the CA.
///
/// # Security
/// No variant carries key material; key parse failures name only the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file operation on the CA state failed.
    #[error(
        "CA: cannot {action} {}: {source} (check that the state directory is writable by the daemon)",
        path.display()
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file grants permissions to group or others.
    #[error(
        "CA: key file {} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Only one of the certificate and the key exists.
    #[error(
        "CA: {} exists but {} is missing; restore it, or remove {} to generate a new CA \
         (sandboxes must then trust the new certificate)",
        present.display(),
        missing.display(),
        present.display()
    )]
    IncompleteState {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The certificate file does not hold a parsable certificate.
    #[error(
        "CA: {} does not hold a PEM X.509 certificate ({reason}); point it at the CA certificate",
        path.display()
    )]
    CertParse {
        /// The certificate file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file does not hold a usable private key.
    #[error(
        "CA: {} does not hold a PKCS#8 PEM private key (BEGIN PRIVATE KEY: ECDSA P-256/P-384, \
         Ed25519 or RSA); convert it with `openssl pkcs8 -topk8 -nocrypt -in OLD -out {}`",
        path.display(),
        path.display()
    )]
    KeyParse {
        /// The key file.
        path: PathBuf,
    },
    /// The certificate may not issue certificates.
    #[error(
        "CA: {} is not a CA certificate (needs basic constraints CA:TRUE and, if key usage is \
         present, keyCertSign); use a CA certificate or let Sluice generate one",
        path.display()
    )]
    NotCa {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key does not belong to the certificate.
    #[error(
        "CA: key {} does not match certificate {}; use the matching key, or run \
         `sluice ca rotate` to generate a new pair",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Key generation or self-signing failed (a crypto backend failure).
    #[error("CA: generating a new CA certificate failed: {0}")]
    Generate(#[source] rcgen::Error),
}

/// The CA that signs interception leaves.
///
/// # Security
/// Holds the CA private key in memory. `Debug` prints only public facts (subject,
/// fingerprint, validity); the key is never formatted, and no error carries it.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    facts: CertFacts,
    fingerprint: String,
    origin: CaOrigin,
}

impl CertificateAuthority {
    /// Loads the CA from `state_dir`, creating it on first run and rotating it when it
    /// expires within 7 days of `now`, with the default [`CaSettings`].
    pub fn load_or_create(state_dir: &Path, now: OffsetDateTime) -> Result<Self, CaError> {
        Self::load_or_create_with(state_dir, now, &CaSettings::default())
    }

    /// [`Self::load_or_create`] with explicit settings.
    ///
    /// # Security
    /// Refuses a key file that group or others may access, and a certificate/key pair that
    /// do not match; broken state is reported, never silently replaced.
    pub fn load_or_create_with(
        state_dir: &Path,
        now: OffsetDateTime,
        settings: &CaSettings,
    ) -> Result<Self, CaError> {
        let cert = cert_path(state_dir);
        let key = key_path(state_dir);
        match (files::exists(&cert)?, files::exists(&key)?) {
            (false, false) => Self::create(state_dir, now, settings, CaOrigin::Created),
            (true, true) => {
                let mut ca = Self::from_files(&cert, &key)?;
                if now + settings.rotate_within >= ca.facts.not_after {
                    return Self::rotate(state_dir, now, settings);
                }
                ca.origin = CaOrigin::Loaded;
                Ok(ca)
            }
            (true, false) => Err(CaError::IncompleteState {
                present: cert,
                missing: key,
            }),
            (false, true) => Err(CaError::IncompleteState {
                present: key,
                missing: cert,
            }),
        }
    }

    /// Moves the current CA files (if any) to `*.old` and generates a new CA in `state_dir`.
    ///
    /// Sandboxes trusting the old certificate must be given the new one.
    pub fn rotate(
        state_dir: &Path,
        now: OffsetDateTime,
        settings: &CaSettings,
    ) -> Result<Self, CaError> {
        files::ensure_private_dir(state_dir)?;
        for path in [cert_path(state_dir), key_path(state_dir)] {
            let mut old = path.clone().into_os_string();
            old.push(OLD_SUFFIX);
            files::move_aside(&path, Path::new(&old))?;
        }
        Self::create(state_dir, now, settings, CaOrigin::Rotated)
    }

    /// Loads an operator-provided CA ("bring your own"): a PEM certificate (the first one in
    /// the file is used) and its PKCS#8 PEM private key.
    ///
    /// # Security
    /// Checks that the certificate is a CA, that the key matches it, and that the key file is
    /// not accessible by group or others. Expiry is not checked here: see [`Self::not_after`].
    pub fn from_files(cert_file: &Path, key_file: &Path) -> Result<Self, CaError> {
        let cert_text = files::read_public(cert_file)?;
        let cert_der = CertificateDer::from_pem_slice(cert_text.as_bytes())
            .map_err(|e| cert_parse(cert_file, e.to_string()))?;
        let facts = CertFacts::parse(&cert_der, cert_file)?;
        if !facts.is_ca {
            return Err(CaError::NotCa {
                path: cert_file.to_path_buf(),
            });
        }
        let key_text = files::read_private(key_file)?;
        let key = KeyPair::from_pem(&key_text).map_err(|_| CaError::KeyParse {
            path: key_file.to_path_buf(),
        })?;
        drop(key_text);
        if key.public_key_raw() != facts.public_key.as_slice() {
            return Err(CaError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| cert_parse(cert_file, e.to_string()))?;
        Ok(Self::assemble(issuer, cert_der, facts, CaOrigin::Provided))
    }

    /// The CA certificate as PEM (what sandboxes add to their trust store).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as DER (the last element of every leaf chain).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The subject common name, e.g. `Sluice CA 1a2b3c4d`.
    pub fn common_name(&self) -> &str {
        &self.facts.common_name
    }

    /// Start of the CA's validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.facts.not_before
    }

    /// End of the CA's validity; no leaf outlives it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.facts.not_after
    }

    /// SHA-256 of the DER certificate, uppercase hex pairs joined by `:` (the format of
    /// `openssl x509 -noout -fingerprint -sha256`), for `sluice ca show`.
    pub fn fingerprint_sha256(&self) -> &str {
        &self.fingerprint
    }

    /// How this CA came to be loaded.
    pub fn origin(&self) -> CaOrigin {
        self.origin
    }

    /// The signer used to mint leaves.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    fn create(
        state_dir: &Path,
        now: OffsetDateTime,
        settings: &CaSettings,
        origin: CaOrigin,
    ) -> Result<Self, CaError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
        let id: [u8; 4] = rand::random();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("Sluice CA {}", hex(&id, "")));
        name.push(DnType::OrganizationName, "Sluice");
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + settings.validity;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;

        let cert_file = cert_path(state_dir);
        let facts = CertFacts::parse(cert.der(), &cert_file)?;
        files::ensure_private_dir(state_dir)?;
        files::write_atomic(
            &key_path(state_dir),
            key.serialize_pem().as_bytes(),
            files::PRIVATE_MODE,
        )?;
        let cert_der = cert.der().clone();
        let ca = Self::assemble(Issuer::new(params, key), cert_der, facts, origin);
        files::write_atomic(&cert_file, ca.cert_pem.as_bytes(), files::PUBLIC_MODE)?;
        Ok(ca)
    }

    fn assemble(
        issuer: Issuer<'static, KeyPair>,
        cert_der: CertificateDer<'static>,
        facts: CertFacts,
        origin: CaOrigin,
    ) -> Self {
        Self {
            issuer,
            cert_pem: pem_encode_cert(&cert_der),
            fingerprint: hex(&Sha256::digest(&cert_der), ":").to_uppercase(),
            cert_der,
            facts,
            origin,
        }
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("common_name", &self.facts.common_name)
            .field("fingerprint_sha256", &self.fingerprint)
            .field("not_before", &self.facts.not_before)
            .field("not_after", &self.facts.not_after)
            .field("origin", &self.origin)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Path of the CA certificate inside `state_dir`.
pub fn cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CA_CERT_FILE)
}

/// Path of the CA key inside `state_dir`.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CA_KEY_FILE)
}

/// A fresh random, positive, 16-byte serial number (never reused across certificates).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and with a non-zero leading byte, so the DER INTEGER is exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}
