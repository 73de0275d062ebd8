//! The master key and the sealing of credential values at rest (AES-256-GCM).
//!
//! The key comes from `SLUICE_MASTER_KEY` (standard base64 of 32 bytes) when that variable is
//! set, otherwise from a key file (`<state_dir>/master.key`, base64 text), which is generated on
//! first start. Every sealed value is bound to its session and credential name through the
//! AEAD's associated data ([`credential_aad`]), so a sealed value copied to another session or
//! credential does not open.
//!
//! # Security
//! Losing the key makes stored credentials unreadable; leaking it (together with the store)
//! reveals them. The key file must be `0600`; a key file readable by group or others is
//! refused.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credentials::Secret;

/// The environment variable that carries the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "SLUICE_MASTER_KEY";

const KEY_LEN: usize = 32;

/// Why the master key could not be loaded or a value not sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The environment variable is set but empty.
    #[error("master key: {MASTER_KEY_ENV} is set but empty (unset it to use the key file)")]
    EmptyEnv,
    /// The key text is not base64.
    #[error(
        "master key: {origin} is not standard base64 (generate one with `head -c 32 /dev/urandom | base64`)"
    )]
    BadBase64 {
        /// Where the text came from (the variable or the file path).
        origin: String,
    },
    /// The key does not decode to 32 bytes.
    #[error("master key: {origin} holds {len} bytes, expected 32")]
    WrongLength {
        /// Where the text came from.
        origin: String,
        /// How many bytes it decoded to.
        len: usize,
    },
    /// The key file is readable or writable by group or others.
    #[error("master key: {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or creating the key file failed.
    #[error("master key: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The system random number generator failed.
    #[error("master key: the system random number generator failed")]
    Random,
    /// Encryption failed (the value is too large for AES-GCM).
    #[error("master key: cannot seal the value")]
    Seal,
    /// A sealed value did not open: wrong master key, or the value was tampered with or moved
    /// to another session or credential.
    #[error(
        "master key: a sealed value does not open (wrong master key, or the stored value was altered or moved)"
    )]
    Open,
}

/// Where the master key comes from.
pub enum KeySource {
    /// Base64 text (from [`MASTER_KEY_ENV`]).
    Inline(Zeroizing<String>),
    /// A key file, generated if absent.
    File(PathBuf),
}

impl KeySource {
    /// [`MASTER_KEY_ENV`] if it is set (even if empty: that is an error, not a fallback),
    /// otherwise `key_file`.
    pub fn from_env_or_file(key_file: impl Into<PathBuf>) -> KeySource {
        match std::env::var_os(MASTER_KEY_ENV) {
            Some(value) => KeySource::Inline(Zeroizing::new(value.to_string_lossy().into_owned())),
            None => KeySource::File(key_file.into()),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline(_) => write!(f, "KeySource::Inline(<redacted>)"),
            KeySource::File(path) => write!(f, "KeySource::File({})", path.display()),
        }
    }
}

/// The 256-bit key that seals credential values.
///
/// # Security
/// Zeroed on drop; `Debug` is redacted; never serialized.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    /// Loads the key from `source`, generating the key file if it does not exist yet.
    pub fn load(source: KeySource) -> Result<MasterKey, CryptoError> {
        match source {
            KeySource::Inline(text) => decode_key(&text, MASTER_KEY_ENV),
            KeySource::File(path) => load_or_create(&path),
        }
    }

    /// A fresh random key (tests, and the first start).
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| CryptoError::Random)?;
        Ok(MasterKey(key))
    }

    /// Encrypts `plaintext` with a fresh random 96-bit nonce, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut ciphertext = plaintext.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut ciphertext,
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Decrypts a value sealed under this key with the same `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Secret, CryptoError> {
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        let plain_len = self
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| CryptoError::Open)?
            .len();
        Ok(Secret::new(buffer[..plain_len].to_vec()))
    }

    fn aead(&self) -> Result<LessSafeKey, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, self.0.as_ref()).map_err(|_| CryptoError::Seal)?;
        Ok(LessSafeKey::new(unbound))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The associated data that binds a sealed credential to its session and name:
/// `session_id + "\0" + name`.
pub fn credential_aad(session_id: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(session_id.len() + 1 + name.len());
    aad.extend_from_slice(session_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// An encrypted value: AES-256-GCM ciphertext with its tag, and the nonce.
///
/// Serializes as `{"nonce": "<base64>", "ciphertext": "<base64>"}`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// The 96-bit nonce.
    #[serde(with = "b64_nonce")]
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    #[serde(with = "b64_bytes")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

fn decode_key(text: &str, origin: &str) -> Result<MasterKey, CryptoError> {
    let text = text.trim();
    if text.is_empty() && origin == MASTER_KEY_ENV {
        return Err(CryptoError::EmptyEnv);
    }
    let bytes = Zeroizing::new(STANDARD.decode(text).map_err(|_| CryptoError::BadBase64 {
        origin: origin.to_owned(),
    })?);
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::WrongLength {
            origin: origin.to_owned(),
            len: bytes.len(),
        })?;
    Ok(MasterKey(Zeroizing::new(key)))
}

fn load_or_create(path: &Path) -> Result<MasterKey, CryptoError> {
    match File::open(path) {
        Ok(file) => read_key_file(file, path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_key_file(path),
        Err(source) => Err(io_error("read", path, source)),
    }
}

fn read_key_file(mut file: File, path: &Path) -> Result<MasterKey, CryptoError> {
    let shown = path.display().to_string();
    let mode = file
        .metadata()
        .map_err(|source| io_error("inspect", path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CryptoError::Permissions {
            path: shown,
            mode: mode & 0o7777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|source| io_error("read", path, source))?;
    decode_key(&text, &shown)
}

/// Writes a new key to a temporary file (created with `O_EXCL`, mode 0600), then links it
/// into place; `link` fails if another process created the key first, in which case that
/// key is read instead. The key file is never seen half-written.
fn create_key_file(path: &Path) -> Result<MasterKey, CryptoError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| io_error("create directory", parent, source))?;
    }
    let key = MasterKey::generate()?;
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(key.0.as_ref())));
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp.{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let _ = fs::remove_file(&temp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    if let Err(source) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("create", &temp, source));
    }
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "master key: generated a new key file");
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = File::open(path).map_err(|source| io_error("read", path, source))?;
            read_key_file(file, path)
        }
        Err(source) => Err(io_error("create", path, source)),
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> CryptoError {
    CryptoError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

mod b64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod b64_nonce {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        bytes: &[u8; NONCE_LEN],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        b64_bytes::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; NONCE_LEN], D::Error> {
        let bytes = b64_bytes::deserialize(d)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("nonce must be 12 bytes"))
    }
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
