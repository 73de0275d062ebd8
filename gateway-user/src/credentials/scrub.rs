//! Turning real values that an upstream echoes back into placeholders again, in response
//! headers, streamed response bodies, trailers and WebSocket messages, so the sandbox never
//! learns a value.
//!
//! The forms recognised are listed in [`super::forms`]: as-is, JSON-escaped,
//! percent/form-encoded, hex, base64 and base64url (also inside longer encoded strings).
//! Values shorter than [`MIN_SCRUB_LEN`] are never scrubbed (they would mangle ordinary
//! text). Compressed bodies are decoded by the caller before they get here.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};

use super::forms;
pub use super::forms::{MIN_BASE64_LEN, MIN_SCRUB_LEN};
use super::inject::Bound;
use super::stream::{StreamError, StreamReplacer};

/// Replaces a session's real values in responses by their placeholders.
///
/// # Security
/// Built once per session snapshot from every credential of the session (whatever host it is
/// bound to), and used on every response of the session; `Debug` shows only counts.
/// Scrubbing is a safety net for echoes, not a guarantee: transformations not listed in
/// [`super::forms`] pass unchanged.
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

    /// Scrubs one complete input (a WebSocket message): every form of every value replaced.
    pub fn scrub(&self, input: &[u8]) -> Bytes {
        self.proto.replace_all(input).0
    }

    /// A fresh streaming scrubber for one response body.
    pub fn body(&self) -> StreamReplacer {
        self.proto.clone()
    }
}

/// The (encoded value, encoded placeholder) pairs scrubbed for one credential.
fn forms(bound: &Bound) -> Vec<(Vec<u8>, Vec<u8>)> {
    forms::pairs(bound.value.expose(), bound.spec.placeholder().as_bytes())
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
