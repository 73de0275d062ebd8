//! A credential's real value in memory: zeroed on drop, never printed.

use zeroize::Zeroizing;

/// A secret value, decrypted only for the moment it is used.
///
/// # Security
/// `Debug` prints `Secret(<redacted>)`; there is no `Display` and no `Serialize`. The
/// bytes are zeroed when the value is dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps a value (the caller's buffer is moved, not copied).
    pub fn new(value: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The bytes, for the moment they are swapped into a request.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose(), b"hunter2");
    }
}
