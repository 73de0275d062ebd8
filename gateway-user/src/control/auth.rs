//! The admin token of the control API.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Why the token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read or written.
    #[error("control: admin token {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The admin token, compared by digest.
///
/// # Security
/// The token is read from a 0600 file in the state directory and never logged; `Debug` is
/// redacted.
#[derive(Clone)]
pub struct AdminToken {
    value: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token at `path`, creating it (256 random bits, mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<AdminToken, AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return Ok(AdminToken {
                    value: text.trim().to_owned(),
                });
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let value = format!(
            "sluice_adm_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(value.as_bytes()).map_err(io)?;
        Ok(AdminToken { value })
    }

    /// Reads an existing token (the CLI side).
    pub fn read(path: &Path) -> Result<AdminToken, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(AdminToken {
            value: text.trim().to_owned(),
        })
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// Whether an `Authorization` header carries this token. Compares SHA-256 digests so the
    /// time taken says nothing about how much of the token matched.
    pub fn verify(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        Sha256::digest(presented.trim().as_bytes()) == Sha256::digest(self.value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let token = AdminToken::load_or_create(&path).unwrap();
        let again = AdminToken::load_or_create(&path).unwrap();
        assert_eq!(token.bearer(), again.bearer());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(token.verify(Some(&token.bearer())));
        for bad in [None, Some(""), Some("Bearer nope"), Some("Basic x")] {
            assert!(!token.verify(bad), "{bad:?}");
        }
        assert!(!format!("{token:?}").contains("sluice_adm_"));
    }
}
