//! What makes a sandbox trust Sluice's CA: the trust-store files its clients read, and the
//! variables that point runtimes with their own rules at them.
//!
//! Written to the state directory whenever the CA is loaded ([`write`]):
//! - `ca-bundle.pem`: the node's roots followed by the CA (clients whose variable
//!   *replaces* their roots get this);
//! - `wgetrc`: a wget configuration naming the bundle (`WGETRC`);
//! - `ca.pem`: the CA alone (variables that *add* to the defaults, `NODE_EXTRA_CA_CERTS`);
//! - `certs/`: an OpenSSL-style hashed directory holding the CA as `<subject-hash>.0`
//!   (`SSL_CERT_DIR`), and the bundle as `ca-certificates.crt` (what `sluice exec` lays over
//!   the sandbox's `/etc/ssl/certs`).
//!
//! `sluice exec` lays the bundle over the distributions' trust-store files and adds the
//! hashed CA to `/etc/ssl/certs` in the sandbox's own mount namespace
//! ([`crate::sandbox::mounts`]); nothing on the node changes.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::digest;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pkcs12::{self, tlv};

/// The merged bundle's file name in the state directory.
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";
/// The Java trust store, under the hashed directory (so it lands on `/etc/ssl/certs/java/
/// cacerts`, Debian's, in the sandbox's overlay).
pub const JAVA_STORE: &str = "java/cacerts";
/// Where other distributions and JDKs keep their `cacerts` (the overlay binds the store over
/// those that are files on the node).
pub const JAVA_STORES: &[&str] = &["/etc/pki/ca-trust/extracted/java/cacerts"];
/// Where JDKs are installed, each with `lib/security/cacerts`.
pub const JVM_DIR: &str = "/usr/lib/jvm";
/// The wget configuration's name in the state directory.
pub const WGETRC_FILE: &str = "wgetrc";
/// The hashed directory's name in the state directory.
pub const CERTS_DIR: &str = "certs";

/// The trust-store bundle files of the common distributions, where a sandbox's clients
/// look for roots: Debian/Ubuntu, Fedora/RHEL (and their extracted forms), Alpine, and the
/// `cert.pem` OpenSSL builds (macOS-style, LibreSSL) read.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The OpenSSL hashed directory of the common distributions.
pub const SYSTEM_CERTS_DIR: &str = "/etc/ssl/certs";
/// The bundle's name in [`SYSTEM_CERTS_DIR`] (Debian, Ubuntu, Alpine).
pub const DEBIAN_BUNDLE_NAME: &str = "ca-certificates.crt";

/// Where each kind of variable points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Points {
    /// The merged bundle: the variable replaces the runtime's roots.
    Bundle,
    /// The CA alone: the variable adds to the runtime's roots.
    Ca,
    /// The hashed directory.
    Dir,
    /// A wget configuration naming the bundle (GnuTLS builds of wget read no CA variable).
    Wgetrc,
    /// Java's options naming the PKCS #12 trust store.
    JavaOptions,
    /// A fixed value.
    Value(&'static str),
}

impl Points {
    /// Whether the variable holds a path (a trust file), nothing else.
    pub fn is_path(self) -> bool {
        matches!(
            self,
            Points::Bundle | Points::Ca | Points::Dir | Points::Wgetrc
        )
    }
}

/// Every variable a runtime reads to find its roots, and where it points. The sandbox
/// environment passes each of these through.
pub const TRUST_VARS: &[(&str, Points)] = &[
    // OpenSSL (curl, wget, Python's ssl, Ruby, git, PHP), Go, uv, Rust's native-certs.
    ("SSL_CERT_FILE", Points::Bundle),
    ("SSL_CERT_DIR", Points::Dir),
    ("CURL_CA_BUNDLE", Points::Bundle),
    ("GIT_SSL_CAINFO", Points::Bundle),
    ("CARGO_HTTP_CAINFO", Points::Bundle),
    // Python: requests (and pip's vendored copy), httplib2, pip itself.
    ("REQUESTS_CA_BUNDLE", Points::Bundle),
    ("HTTPLIB2_CA_CERTS", Points::Bundle),
    ("PIP_CERT", Points::Bundle),
    // uv: its bundled roots unless told to use the platform's (uv 0.13 renamed the older
    // `UV_NATIVE_TLS`, now deprecated with a warning); it also reads `SSL_CERT_FILE`.
    ("UV_SYSTEM_CERTS", Points::Value("true")),
    // Node and Bun add to their bundled roots; npm and yarn replace theirs.
    ("NODE_EXTRA_CA_CERTS", Points::Ca),
    ("NPM_CONFIG_CAFILE", Points::Bundle),
    ("YARN_CAFILE", Points::Bundle),
    // Java reads no CA variable: its options name the trust store.
    ("JAVA_TOOL_OPTIONS", Points::JavaOptions),
    // wget (GnuTLS builds read only their configuration).
    ("WGETRC", Points::Wgetrc),
    // Deno, AWS SDKs and CLI, gRPC, Nix, Google Cloud SDK.
    ("DENO_CERT", Points::Bundle),
    ("AWS_CA_BUNDLE", Points::Bundle),
    ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", Points::Bundle),
    ("NIX_SSL_CERT_FILE", Points::Bundle),
    ("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", Points::Bundle),
];

/// Variables `sluice exec` sets under its trust overlay (unless the caller gives them): the
/// runtimes that never read the system trust store the overlay replaces.
pub const OVERLAY_VARS: &[(&str, Points)] = &[
    // Node and Bun: bundled roots, plus this file.
    ("NODE_EXTRA_CA_CERTS", Points::Ca),
    // uv: bundled roots unless told to read the platform's.
    ("UV_SYSTEM_CERTS", Points::Value("true")),
    // Deno: bundled roots unless told to read the platform's.
    ("DENO_TLS_CA_STORE", Points::Value("system")),
];

/// Variables the proxy mode adds beside `HTTPS_PROXY` and friends: Node (22.13+ / 23.5+)
/// honours the proxy variables only when told to.
pub const PROXY_MODE_VARS: &[(&str, &str)] = &[("NODE_USE_ENV_PROXY", "1")];

/// The trust files of one state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFiles {
    /// The node's roots and the CA.
    pub bundle: PathBuf,
    /// The CA alone.
    pub ca: PathBuf,
    /// The hashed directory.
    pub dir: PathBuf,
    /// The CA's name in the hashed directory (`<subject-hash>.0`).
    pub hashed: PathBuf,
    /// A wget configuration whose `ca_certificate` is the bundle.
    pub wgetrc: PathBuf,
    /// The Java trust store (PKCS #12, no password): the node's roots and the CA.
    pub java: PathBuf,
}

impl TrustFiles {
    /// The value a [`Points`] gives.
    pub fn value(&self, points: Points) -> String {
        match points {
            Points::Bundle => self.bundle.display().to_string(),
            Points::Ca => self.ca.display().to_string(),
            Points::Dir => self.dir.display().to_string(),
            Points::Wgetrc => self.wgetrc.display().to_string(),
            Points::JavaOptions => format!(
                "-Djavax.net.ssl.trustStore={} -Djavax.net.ssl.trustStoreType=PKCS12",
                self.java.display()
            ),
            Points::Value(v) => v.to_owned(),
        }
    }
}

/// Why the trust files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA certificate did not parse.
    #[error("ca: the CA certificate does not parse: {0}")]
    Certificate(String),
    /// A file could not be read or written.
    #[error("ca: {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The node's roots: the first of [`SYSTEM_BUNDLES`] that can be read (empty when none
/// can: the bundle then holds the CA alone).
pub fn node_roots() -> String {
    SYSTEM_BUNDLES
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok().filter(|t| !t.is_empty()))
        .unwrap_or_default()
}

/// Writes the trust files for the CA (`ca_pem`, `ca_der`) into `state_dir`: the merged
/// bundle, and the hashed directory. (`ca.pem` is the CA's own file.)
pub fn write(state_dir: &Path, ca_pem: &str, ca_der: &[u8]) -> Result<TrustFiles, TrustError> {
    let files = files(state_dir, ca_der)?;
    let mut bundle = node_roots();
    let bundle_roots = bundle.clone();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(ca_pem);
    replace(&files.bundle, bundle.as_bytes())?;
    let wgetrc = format!("ca_certificate = {}\n", files.bundle.display());
    replace(&files.wgetrc, wgetrc.as_bytes())?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TrustError::Io { path, source }
    };
    // Files are replaced in place (running sandboxes see `certs/` through their overlay):
    // the directory is never removed, only hash files of an earlier CA.
    let java_dir = files.java.parent().unwrap_or(&files.dir);
    for dir in [&files.dir, java_dir] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io(dir))?;
    }
    replace(&files.hashed, ca_pem.as_bytes())?;
    replace(&files.dir.join(DEBIAN_BUNDLE_NAME), bundle.as_bytes())?;
    replace(&files.java, &java_store(&bundle_roots, ca_der))?;
    let stale = std::fs::read_dir(&files.dir)
        .map_err(io(&files.dir))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "0") && *p != files.hashed);
    for path in stale {
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(files)
}

/// The Java trust store: every certificate of `roots` (PEM) that parses, and the CA.
fn java_store(roots: &str, ca_der: &[u8]) -> Vec<u8> {
    let roots: Vec<Vec<u8>> = rustls_pemfile::certs(&mut roots.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    let aliases: Vec<String> = (0..roots.len()).map(|i| format!("node-root-{i}")).collect();
    let entries = aliases
        .iter()
        .map(String::as_str)
        .zip(roots.iter().map(Vec::as_slice))
        .chain([("sluice-ca", ca_der)]);
    pkcs12::trust_store(entries)
}

/// The trust file paths of `state_dir`, for the CA in its `ca.pem`.
pub fn files_in(state_dir: &Path) -> Result<TrustFiles, TrustError> {
    let path = crate::tls::ca::cert_path(state_dir);
    let pem = std::fs::read(&path).map_err(|source| TrustError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            TrustError::Certificate(format!("{} holds no certificate", path.display()))
        })?;
    files(state_dir, &der)
}

/// The trust file paths of `state_dir` for the CA `ca_der`.
pub fn files(state_dir: &Path, ca_der: &[u8]) -> Result<TrustFiles, TrustError> {
    let dir = state_dir.join(CERTS_DIR);
    Ok(TrustFiles {
        bundle: state_dir.join(CA_BUNDLE_FILE),
        ca: crate::tls::ca::cert_path(state_dir),
        hashed: dir.join(format!("{:08x}.0", subject_hash(ca_der)?)),
        java: dir.join(JAVA_STORE),
        dir,
        wgetrc: state_dir.join(WGETRC_FILE),
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename (readers see the old or
/// the new file), mode 0644: these are public certificates.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let io = |source| TrustError::Io {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(&temp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
        .map_err(io)?;
    // The mode asked for, whatever the daemon's umask: sandboxes read these.
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

/// OpenSSL's subject-name hash (`openssl x509 -subject_hash`, the `<hash>.0` names of a
/// hashed directory): SHA-1 over the canonical encoding of the subject, its first four
/// bytes read little-endian.
///
/// The canonical encoding is every RDN's SET re-encoded (no outer SEQUENCE), each string
/// value as a UTF8String, trimmed, inner whitespace runs made one space, ASCII lowercased.
pub fn subject_hash(cert_der: &[u8]) -> Result<u32, TrustError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| TrustError::Certificate(e.to_string()))?;
    let mut canon = Vec::new();
    for rdn in cert.subject().iter() {
        let mut set = Vec::new();
        for attr in rdn.iter() {
            let mut entry = Vec::new();
            let oid = attr.attr_type().as_bytes();
            entry.extend(tlv(0x06, oid));
            match attr.as_str() {
                Ok(text) => entry.extend(tlv(0x0c, canonical(text).as_bytes())),
                Err(_) => {
                    let value = attr.attr_value();
                    let tag = u8::try_from(value.header.tag().0).unwrap_or(0x04);
                    entry.extend(tlv(tag, value.data));
                }
            }
            set.extend(tlv(0x30, &entry));
        }
        canon.extend(tlv(0x31, &set));
    }
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &canon);
    let bytes = sha1.as_ref();
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// OpenSSL's canonical form of a name's string value.
fn canonical(text: &str) -> String {
    text.split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash OpenSSL itself gives, for certificates with several kinds of names.
    #[test]
    fn subject_hashes_match_openssl() {
        let Ok(probe) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            panic!("openssl is a test package (cargo xtask setup installs it)");
        };
        assert!(probe.status.success());
        let mut names = vec![
            "CN=Sluice CA".to_owned(),
            "CN=  Mixed   Case  CA ,O=Example Org".to_owned(),
        ];
        names.push(format!("CN={},O=Long", "x".repeat(200)));
        for name in names {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            for part in name.split(',') {
                let (key, value) = part.split_once('=').unwrap();
                let kind = match key {
                    "CN" => rcgen::DnType::CommonName,
                    _ => rcgen::DnType::OrganizationName,
                };
                params.distinguished_name.push(kind, value);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let dir = tempfile_dir();
            let pem_path = dir.join("c.pem");
            std::fs::write(&pem_path, cert.pem()).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["x509", "-noout", "-subject_hash", "-in"])
                .arg(&pem_path)
                .output()
                .unwrap();
            let want = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let got = format!("{:08x}", subject_hash(cert.der()).unwrap());
            assert_eq!(got, want, "{name}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-trust-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn trust_files_are_public_rewritten_in_place_and_keep_one_hash() {
        let dir = tempfile_dir();
        let mut written = Vec::new();
        for name in ["First CA", "Second CA"] {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            written.push(write(&dir, &cert.pem(), cert.der()).unwrap());
        }
        let files = &written[1];
        assert_ne!(written[0].hashed, files.hashed);
        let hashes: Vec<_> = std::fs::read_dir(&files.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "0"))
            .map(|e| e.path())
            .collect();
        assert_eq!(
            hashes,
            std::slice::from_ref(&files.hashed),
            "the earlier CA's hash is gone"
        );
        for path in [&files.bundle, &files.hashed, &files.java, &files.wgetrc] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", path.display());
        }
        let mode = std::fs::metadata(&files.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let bundle = std::fs::read_to_string(&files.bundle).unwrap();
        assert!(bundle.trim_end().ends_with("-----END CERTIFICATE-----"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_variable_points_somewhere_and_none_is_listed_twice() {
        let mut names: Vec<&str> = TRUST_VARS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
        assert!(
            TRUST_VARS.contains(&("NODE_EXTRA_CA_CERTS", Points::Ca)),
            "adds, so the CA alone"
        );
    }
}
