//! Turning real values that an upstream echoes back into placeholders again, in response
//! headers and streamed response bodies, so the sandbox never learns a value.
//!
//! Forms scrubbed, for each value of at least [`MIN_SCRUB_LEN`] bytes:
//! - the value as it is, → `sluice_cred:NAME`;
//! - its JSON-string escaping (when that differs and the value is UTF-8), → `sluice_cred:NAME`;
//! - for values of at least [`MIN_BASE64_LEN`] bytes, standard base64 with and without
//!   padding, → the same encoding of `sluice_cred:NAME`.
//!
//! Not scrubbed: values shorter than [`MIN_SCRUB_LEN`] (they would mangle ordinary text),
//! base64 of a value embedded in a longer encoded blob (e.g. `user:pass` in Basic auth),
//! URL-safe base64, percent-encoding, and compressed bodies (the caller decompresses or
//! accepts that).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::header::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use super::encode;
use super::inject::Bound;
use super::stream::{StreamError, StreamReplacer};

/// Values shorter than this many bytes are never scrubbed.
pub const MIN_SCRUB_LEN: usize = 4;

/// Values shorter than this many bytes are not scrubbed in base64.
pub const MIN_BASE64_LEN: usize = 8;

/// Replaces a session's real values in responses by their placeholders.
///
/// # Security
/// Built once per session; `Debug` shows only counts. Scrubbing is a safety net for echoes,
/// not a guarantee: transformed values (other encodings, fragments) pass unchanged.
#[derive(Clone, Debug)]
pub struct Scrubber {
    proto: StreamReplacer,
}

impl Scrubber {
    /// A scrubber for these credentials' values.
    ///
    /// # Errors
    /// [`StreamError::Build`] when the values are too many or too long for the matcher; the
    /// caller should refuse the session rather than serve it unscrubbed.
    pub fn new(bounds: &[Bound]) -> Result<Scrubber, StreamError> {
        let pairs = bounds.iter().flat_map(forms).collect();
        Ok(Scrubber {
            proto: StreamReplacer::new(pairs)?,
        })
    }

    /// Scrubs every response header value in place; returns how many occurrences were replaced.
    pub fn scrub_headers(&self, headers: &mut HeaderMap) -> usize {
        let mut total = 0;
        for (_, value) in headers.iter_mut() {
            let (out, count) = self.proto.replace_all(value.as_bytes());
            if count == 0 {
                continue;
            }
            total += count;
            // Only printable ASCII replaced parts of a valid value, so this cannot fail; if it
            // did, dropping the value keeps the secret out.
            *value = HeaderValue::from_maybe_shared(out).unwrap_or(HeaderValue::from_static(""));
        }
        total
    }

    /// A fresh streaming scrubber for one response body.
    pub fn body(&self) -> StreamReplacer {
        self.proto.clone()
    }
}

/// The (encoded value, encoded placeholder) pairs scrubbed for one credential.
fn forms(bound: &Bound) -> Vec<(Vec<u8>, Vec<u8>)> {
    let value = bound.value.expose();
    if value.len() < MIN_SCRUB_LEN {
        return Vec::new();
    }
    let placeholder = bound.spec.placeholder().into_bytes();
    let mut pairs = vec![(value.to_vec(), placeholder.clone())];
    let mut escaped = Zeroizing::new(Vec::new());
    if encode::json(value, &mut escaped).is_ok() && escaped.as_slice() != value {
        pairs.push((escaped.to_vec(), placeholder.clone()));
    }
    if value.len() >= MIN_BASE64_LEN {
        for engine in [&STANDARD, &STANDARD_NO_PAD] {
            let encoded = Zeroizing::new(engine.encode(value).into_bytes());
            if pairs.iter().all(|(from, _)| *from != *encoded) {
                pairs.push((encoded.to_vec(), engine.encode(&placeholder).into_bytes()));
            }
        }
    }
    pairs
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
