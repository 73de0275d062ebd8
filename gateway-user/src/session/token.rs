//! Session tokens and ids: generated from the system RNG; only a token's SHA-256 is stored.
//!
//! - Token: `sluice_stk_` + 43 base64url characters (no padding) = 256 random bits.
//! - Session id: `ses_` + 26 lowercase RFC 4648 base32 characters (`a-z2-7`, no padding) =
//!   128 random bits. Ids are not secret (they appear in audit records and the API), but they
//!   are random so that they can't be guessed or enumerated.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The prefix of every session token.
pub const TOKEN_PREFIX: &str = "sluice_stk_";
/// The prefix of every session id.
pub const SESSION_ID_PREFIX: &str = "ses_";

const TOKEN_RANDOM_BYTES: usize = 32;
const TOKEN_BODY_LEN: usize = 43;
const ID_RANDOM_BYTES: usize = 16;
const ID_BODY_LEN: usize = 26;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a token, id or digest could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The system random number generator failed.
    #[error("session token: the system random number generator failed")]
    Random,
    /// A stored digest is not 64 hex characters.
    #[error("session token: digest must be 64 hex characters")]
    BadDigest,
}

/// A session token: the bearer secret a sandbox presents.
///
/// # Security
/// Handed out once, when the session is created; only its [`TokenDigest`] is stored. `Debug`
/// is redacted, there is no `Display` or `Serialize`, and the text is zeroed on drop.
pub struct Token(Zeroizing<String>);

impl Token {
    /// A fresh token from 256 bits of system randomness.
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_RANDOM_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| TokenError::Random)?;
        let mut text = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + TOKEN_BODY_LEN));
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut text);
        Ok(Token(text))
    }

    /// The token text, to hand to the caller exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest under which the session is stored.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.0)
    }

    /// Whether `text` has the shape of a generated token (prefix, length, alphabet). A cheap
    /// check that keeps junk away from the store; it says nothing about validity.
    pub fn is_well_formed(text: &str) -> bool {
        text.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
            body.len() == TOKEN_BODY_LEN
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The SHA-256 of a token's text: what the store keeps and indexes by.
///
/// Serializes as 64 lowercase hex characters. Not secret: a 256-bit random token can't be
/// recovered from its digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    /// The digest of a presented token.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Lowercase hex, as stored and used in store keys.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<TokenDigest, TokenError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(TokenError::BadDigest);
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let high = hex_value(pair[0]).ok_or(TokenError::BadDigest)?;
            let low = hex_value(pair[1]).ok_or(TokenError::BadDigest)?;
            *slot = (high << 4) | low;
        }
        Ok(TokenDigest(out))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.to_hex())
    }
}

impl Serialize for TokenDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TokenDigest, D::Error> {
        let text = String::deserialize(deserializer)?;
        TokenDigest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A fresh session id: `ses_` + 26 lowercase base32 characters of 128 random bits.
pub fn new_session_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; ID_RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    let mut id = String::with_capacity(SESSION_ID_PREFIX.len() + ID_BODY_LEN);
    id.push_str(SESSION_ID_PREFIX);
    // Big-endian bit stream, 5 bits per character; the last character holds 3 bits + zeros.
    let value = u128::from_be_bytes(bytes);
    for i in 0..ID_BODY_LEN {
        let shift = 128i32 - 5 * (i as i32 + 1);
        let index = if shift >= 0 {
            (value >> shift) & 0x1f
        } else {
            (value << -shift) & 0x1f
        };
        id.push(char::from(BASE32[index as usize]));
    }
    Ok(id)
}

/// Whether `text` has the shape of a generated session id (so API paths can refuse junk
/// before asking the store).
pub fn is_session_id(text: &str) -> bool {
    text.strip_prefix(SESSION_ID_PREFIX)
        .is_some_and(|body| body.len() == ID_BODY_LEN && body.bytes().all(|b| BASE32.contains(&b)))
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn token_shape_and_entropy() {
        let token = Token::generate().unwrap();
        let text = token.expose();
        assert!(text.starts_with(TOKEN_PREFIX));
        let body = &text[TOKEN_PREFIX.len()..];
        assert_eq!(body.len(), 43);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(body).unwrap().len(),
            32,
            "256 random bits"
        );
        assert!(Token::is_well_formed(text));
        let many: HashSet<String> = (0..200)
            .map(|_| Token::generate().unwrap().expose().to_owned())
            .collect();
        assert_eq!(many.len(), 200);
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::generate().unwrap();
        let shown = format!("{token:?}");
        assert_eq!(shown, "Token(<redacted>)");
        assert!(!shown.contains(&token.expose()[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn well_formed_table() {
        let good = format!("{TOKEN_PREFIX}{}", "A".repeat(43));
        let cases = [
            (good.as_str(), true),
            ("sluice_stk_", false),
            ("sluice_stk_short", false),
            ("", false),
            (&good[1..], false),
        ];
        for (text, want) in cases {
            assert_eq!(Token::is_well_formed(text), want, "{text:?}");
        }
        let bad_char = format!("{TOKEN_PREFIX}{}+", "A".repeat(42));
        assert!(!Token::is_well_formed(&bad_char));
    }

    #[test]
    fn digest_is_sha256_hex_and_round_trips() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let digest = TokenDigest::of("abc");
        assert_eq!(digest.to_hex(), want);
        assert_eq!(TokenDigest::from_hex(want).unwrap(), digest);
        assert_eq!(TokenDigest::from_hex(&want.to_uppercase()).unwrap(), digest);
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{want}\""));
        assert_eq!(serde_json::from_str::<TokenDigest>(&json).unwrap(), digest);
        for bad in ["", "zz", &want[1..], &format!("{}g", &want[1..])] {
            assert_eq!(
                TokenDigest::from_hex(bad),
                Err(TokenError::BadDigest),
                "{bad:?}"
            );
        }
        let token = Token::generate().unwrap();
        assert_eq!(token.digest(), TokenDigest::of(token.expose()));
    }

    #[test]
    fn session_id_shape() {
        let ids: HashSet<String> = (0..200).map(|_| new_session_id().unwrap()).collect();
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert_eq!(id.len(), 4 + 26, "{id}");
            assert!(is_session_id(id), "{id}");
        }
        assert!(!is_session_id("ses_"));
        assert!(!is_session_id(&"ses_".repeat(8)));
        assert!(!is_session_id("ses_ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert!(is_session_id("ses_abcdefghijklmnopqrstuvwxyz"));
    }
}
