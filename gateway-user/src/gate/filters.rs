//! The gate's body and response filters: PII scanning, then placeholder swapping, on the way
//! up; scrubbing real values back to placeholders on the way down.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::credentials::{BodyInjector, Misdirected, Scrubber, StreamReplacer};
use crate::intercept::{BodyFilter, Refusal, ResponseFilter, SharedNotes, notes};

/// A refusal for a placeholder headed where it may not go.
pub fn misdirected(error: &Misdirected) -> Refusal {
    Refusal::forbidden(format!(
        "refused: {error}; a placeholder is only replaced toward its credential's hosts, and \
         never sent anywhere else"
    ))
}

/// Request body: placeholders swapped (and misdirected ones refused) as the body streams.
#[derive(Debug)]
pub struct RequestBody {
    /// The placeholder swapper; `None` once finished.
    pub inject: Option<BodyInjector>,
    /// Where the injected names go.
    pub notes: SharedNotes,
}

impl BodyFilter for RequestBody {
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Refusal> {
        match &mut self.inject {
            Some(inject) => inject.push(chunk).map_err(|e| misdirected(&e)),
            None => Ok(Bytes::copy_from_slice(chunk)),
        }
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        let Some(inject) = self.inject.take() else {
            return Ok(Bytes::new());
        };
        for name in inject.injected() {
            notes(&self.notes).injected(&name);
        }
        inject.finish().map_err(|e| misdirected(&e))
    }
}

/// Response: real values of the credentials bound to this host replaced by placeholders.
#[derive(Debug)]
pub struct ScrubResponse {
    scrubber: Scrubber,
    body: Option<StreamReplacer>,
}

impl ScrubResponse {
    /// Scrubs with `scrubber`.
    pub fn new(scrubber: Scrubber) -> ScrubResponse {
        let body = Some(scrubber.body());
        ScrubResponse { scrubber, body }
    }
}

impl ResponseFilter for ScrubResponse {
    fn headers(&mut self, headers: &mut HeaderMap) {
        self.scrubber.scrub_headers(headers);
    }

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        match &mut self.body {
            Some(body) => body.push(chunk),
            None => Bytes::copy_from_slice(chunk),
        }
    }

    fn finish(&mut self) -> Bytes {
        self.body.take().map(StreamReplacer::finish).unwrap_or_default()
    }
}

/// A refusal for a session whose credentials cannot be used (gateway side).
pub fn unusable(what: &str) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("gateway: the session's credentials cannot be used: {what}"),
    )
}
