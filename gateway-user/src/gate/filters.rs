//! The gate's body and response filters: PII scanning, then placeholder swapping, on the way
//! up; scrubbing real values back to placeholders on the way down.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::audit::Side;
use crate::credentials::{BodyInjector, Misdirected, Scrubber, StreamReplacer};
use crate::intercept::{BodyFilter, Refusal, ResponseFilter, SharedNotes, notes};
use crate::pii::{Blocked, StreamScanner, Summary};

/// A refusal for a placeholder headed where it may not go.
pub fn misdirected(error: &Misdirected) -> Refusal {
    Refusal::forbidden(format!(
        "refused: {error}; a placeholder is only replaced toward its credential's hosts, and \
         never sent anywhere else"
    ))
}

/// Request body: PII scanned (on what the sandbox sent), then placeholders swapped (and
/// misdirected ones refused), as the body streams.
#[derive(Debug)]
pub struct RequestBody {
    /// The PII scanner, when the session's mode is not `off`; `None` once finished.
    pub pii: Option<StreamScanner>,
    /// The placeholder swapper; `None` once finished.
    pub inject: Option<BodyInjector>,
    /// Where findings and injected names go.
    pub notes: SharedNotes,
}

impl RequestBody {
    /// Records what blocked the body (each kind at least once) and refuses it.
    fn blocked(&self, blocked: &Blocked, summary: &Summary) -> Refusal {
        self.count(summary);
        let mut notes = notes(&self.notes);
        for kind in &blocked.kinds {
            notes.pii.entry(kind.as_str().to_owned()).or_insert(1);
        }
        Refusal::forbidden(format!(
            "refused: {blocked}; the session's PII mode is `block`"
        ))
    }

    fn count(&self, summary: &Summary) {
        let mut notes = notes(&self.notes);
        for (kind, n) in &summary.counts {
            notes.pii.insert(kind.as_str().to_owned(), *n);
        }
    }

    fn inject(&mut self, bytes: &[u8]) -> Result<Bytes, Refusal> {
        match &mut self.inject {
            Some(inject) => inject.push(bytes).map_err(|e| misdirected(&e)),
            None => Ok(Bytes::copy_from_slice(bytes)),
        }
    }
}

impl BodyFilter for RequestBody {
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Refusal> {
        let scanned = match &mut self.pii {
            Some(scanner) => match scanner.push(chunk) {
                Ok(out) => out,
                Err(blocked) => {
                    let summary = scanner.summary();
                    self.pii = None;
                    return Err(self.blocked(&blocked, &summary));
                }
            },
            None => return self.inject(chunk),
        };
        self.inject(&scanned)
    }

    fn finish(&mut self) -> Result<Bytes, Refusal> {
        let mut out = Vec::new();
        if let Some(scanner) = self.pii.take() {
            let summary = scanner.summary();
            match scanner.finish() {
                Ok((rest, summary)) => {
                    self.count(&summary);
                    out.extend_from_slice(&self.inject(&rest)?);
                }
                Err(blocked) => return Err(self.blocked(&blocked, &summary)),
            }
        }
        if let Some(inject) = self.inject.take() {
            for name in inject.injected() {
                notes(&self.notes).injected(&name);
            }
            out.extend_from_slice(&inject.finish().map_err(|e| misdirected(&e))?);
        }
        Ok(Bytes::from(out))
    }
}

/// Response: every real value of the session replaced by its placeholder, in headers, the
/// (decoded) body, trailers and WebSocket messages.
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
        self.body
            .take()
            .map(StreamReplacer::finish)
            .unwrap_or_default()
    }

    fn trailers(&mut self, trailers: &mut HeaderMap) {
        self.scrubber.scrub_headers(trailers);
    }

    fn message(&mut self, message: &[u8]) -> Bytes {
        self.scrubber.scrub(message)
    }
}

/// A refusal for a session whose credentials cannot be used (gateway side).
pub fn unusable(what: &str) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        Side::Gateway,
        format!("gateway: the session's credentials cannot be used: {what}"),
    )
}
