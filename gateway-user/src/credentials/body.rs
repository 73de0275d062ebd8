//! Swapping placeholders in request bodies, chunk by chunk, without ever releasing the first
//! byte of a placeholder before knowing whether it may be swapped.
//!
//! - `application/json` and `application/*+json`: placeholders of credentials with
//!   `body: true` are swapped toward their hosts, the value JSON-string-escaped (the
//!   placeholder is assumed to sit inside a JSON string; the structure is not parsed).
//! - `application/x-www-form-urlencoded`: the same, the value form-encoded; `sluice_cred%3ANAME`
//!   counts too, since form encoders escape the colon.
//! - any other type, or none: nothing is swapped, and any placeholder is refused.
//!
//! Any placeholder that may not be swapped makes `push`/`finish` fail; the caller aborts the
//! request. Bodies with a `Content-Encoding` are opaque here: a compressed placeholder is
//! neither seen nor swapped (it reaches upstream as the placeholder, never as a value).

use bytes::Bytes;

use super::encode;
use super::inject::{Bound, Injector, Place, note, refuse};
use super::misdirected::{Misdirected, Reason};
use super::placeholder::{self, Hit};
use crate::host::Host;

/// How a body is rewritten, from its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
    /// Not rewritten; the (truncated) content type, for the refusal.
    Other(String),
}

/// A streaming rewriter of one request body, from [`Injector::body`].
///
/// Holds back at most the bytes of one unfinished placeholder (under 80).
///
/// # Security
/// Every placeholder is decided before its first byte is released; after a refusal every
/// later call fails too. `Debug` shows no body bytes. The output carries real values.
#[derive(Clone)]
pub struct BodyInjector {
    injector: Injector,
    host: Host,
    kind: Kind,
    pending: Vec<u8>,
    injected: Vec<String>,
    failed: Option<Misdirected>,
}

impl Injector {
    /// A streaming rewriter for a request body toward `host`, chosen by
    /// its `Content-Type`. Lengths change: the caller drops `Content-Length` (or buffers and
    /// uses [`Injector::rewrite_whole`]).
    pub fn body(&self, host: &Host, content_type: Option<&str>) -> BodyInjector {
        BodyInjector {
            injector: self.clone(),
            host: host.clone(),
            kind: kind(content_type),
            pending: Vec::new(),
            injected: Vec::new(),
            failed: None,
        }
    }

    /// Rewrites a body the caller has buffered whole; returns it with the names injected. The
    /// caller then sets the new `Content-Length`.
    ///
    /// # Errors
    /// [`Misdirected`] for the first placeholder that may not be swapped.
    pub fn rewrite_whole(
        &self,
        host: &Host,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(Bytes, Vec<String>), Misdirected> {
        let mut rewriter = self.body(host, content_type);
        let out = rewriter.run(body.to_vec(), true)?;
        Ok((out, rewriter.injected))
    }
}

impl BodyInjector {
    /// Rewrites the next chunk; returns what can be released now.
    ///
    /// # Errors
    /// [`Misdirected`] as soon as a placeholder that may not be swapped is complete; none of
    /// its bytes has been returned. Every later call returns the same error.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Misdirected> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        self.run(buf, false)
    }

    /// Ends the body; returns what was held back, rewritten.
    ///
    /// # Errors
    /// As for [`BodyInjector::push`].
    pub fn finish(mut self) -> Result<Bytes, Misdirected> {
        let buf = std::mem::take(&mut self.pending);
        self.run(buf, true)
    }

    /// The credential names swapped in so far, each once.
    pub fn injected(&self) -> Vec<String> {
        self.injected.clone()
    }

    /// Rewrites `buf` (held-back bytes first); keeps back an unfinished placeholder unless
    /// `eof`.
    fn run(&mut self, buf: Vec<u8>, eof: bool) -> Result<Bytes, Misdirected> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let encoded = self.kind != Kind::Json;
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        let held = loop {
            match placeholder::next(&buf, pos, encoded, eof) {
                Some(Hit::Complete(found)) => {
                    out.extend_from_slice(buf.get(pos..found.start).unwrap_or_default());
                    if let Err(err) = self.swap(&found, &mut out) {
                        self.failed = Some(err.clone());
                        return Err(err);
                    }
                    pos = found.end;
                }
                Some(Hit::Incomplete { start }) => break start,
                None if eof => break buf.len(),
                None => {
                    break buf.len()
                        - placeholder::partial_stem(buf.get(pos..).unwrap_or_default());
                }
            }
        };
        out.extend_from_slice(buf.get(pos..held).unwrap_or_default());
        self.pending = buf.get(held..).unwrap_or_default().to_vec();
        Ok(Bytes::from(out))
    }

    /// Writes the value for `found` into `out`, encoded for this body, or refuses it.
    fn swap(
        &mut self,
        found: &placeholder::Found<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Misdirected> {
        let place = match &self.kind {
            Kind::Other(content_type) => Place::OtherBody(content_type),
            Kind::Json | Kind::Form => Place::Body,
        };
        let bound: &Bound = self.injector.decide(&self.host, found, place)?;
        let value = bound.value.expose();
        match self.kind {
            Kind::Json => encode::json(value, out)
                .map_err(|_| refuse(&self.host, found, Reason::Unencodable("JSON string")))?,
            Kind::Form => encode::form(value, out),
            Kind::Other(_) => {}
        }
        note(&mut self.injected, &bound.spec.name);
        Ok(())
    }
}

impl std::fmt::Debug for BodyInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyInjector")
            .field("host", &self.host)
            .field("kind", &self.kind)
            .field("pending_len", &self.pending.len())
            .field("injected", &self.injected)
            .field("failed", &self.failed)
            .finish()
    }
}

/// The rewrite kind of a `Content-Type` (parameters ignored, case-insensitive).
fn kind(content_type: Option<&str>) -> Kind {
    let Some(content_type) = content_type else {
        return Kind::Other("none".to_owned());
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", "json")) => Kind::Json,
        Some(("application", sub)) if sub.ends_with("+json") => Kind::Json,
        Some(("application", "x-www-form-urlencoded")) => Kind::Form,
        _ => Kind::Other(essence.chars().take(80).collect()),
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
