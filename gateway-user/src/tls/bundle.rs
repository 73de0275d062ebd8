//! The CA bundle a sandbox's TLS clients trust: the system roots followed by the Sluice CA,
//! written to the state directory whenever the CA is loaded.

use std::path::{Path, PathBuf};

/// The system bundle merged with the Sluice CA, when present.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The merged bundle's file name in the state directory.
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

/// Writes `<state_dir>/ca-bundle.pem`: the system roots followed by the Sluice CA.
pub fn write_bundle(state_dir: &Path, sluice_ca_pem: &str) -> std::io::Result<PathBuf> {
    let path = state_dir.join(CA_BUNDLE_FILE);
    let mut text = std::fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(sluice_ca_pem);
    let tmp = state_dir.join(".ca-bundle.pem.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
