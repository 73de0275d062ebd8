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
    /// The token file can be read by other users, so it is not a secret any more.
    #[error(
        "control: admin token {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}` (and rotate the token if others may have read it: delete the file and restart the daemon)"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
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
    ///
    /// # Security
    /// An existing file with any group or world permission bit is refused, naming the fix.
    pub fn load_or_create(path: &Path) -> Result<AdminToken, AuthError> {
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        match Self::read(path) {
            Ok(token) => return Ok(token),
            Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
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

    /// Reads an existing token (the CLI side); refused when others may read the file.
    pub fn read(path: &Path) -> Result<AdminToken, AuthError> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let io = |source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(AuthError::Permissions {
                path: path.display().to_string(),
                mode: mode & 0o7777,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
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

    #[test]
    fn a_token_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        AdminToken::load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            for err in [
                AdminToken::load_or_create(&path).unwrap_err(),
                AdminToken::read(&path).unwrap_err(),
            ] {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("chmod 600 {}", path.display())),
                    "{text}"
                );
                assert!(!text.contains("sluice_adm_"), "{text}");
            }
        }
    }
}
