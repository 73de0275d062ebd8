//! Streaming PII scanning of a request body: chunks in, bytes safe to forward out, with at
//! most [`WINDOW`] bytes held back.

use std::collections::BTreeMap;
use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::cursor::{Cursor, Progress};
use super::detectors::{Finding, PiiKind};
use crate::policy::PiiMode;

/// The most body bytes a scanner holds at once. A scan runs each time the buffer fills and
/// releases all but the last few KiB (the reach of the longest detector, 4 KiB, plus the
/// context the checks read, and any finding still open).
pub const WINDOW: usize = 16 * 1024;

/// Findings per kind, for the audit record: `{"email": 2, "card_number": 1}`.
///
/// # Security
/// Types and counts only; never the matched text or its position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Summary {
    /// How many findings of each kind (kinds with none are absent).
    pub counts: BTreeMap<PiiKind, u32>,
}

impl Summary {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Findings of all kinds together.
    pub fn total(&self) -> u32 {
        self.counts.values().fold(0, |a, &n| a.saturating_add(n))
    }
}

/// Why a body was refused: the kinds found (in `block` mode), or a private key block too
/// long to redact whole (in `redact` mode). The caller answers 403 with this as the reason.
///
/// # Security
/// Names kinds only (`PII in request body: card_number`), never the matched text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PII in request body: {}", kind_list(.kinds))]
pub struct Blocked {
    /// The kinds that caused the refusal, sorted, without repeats.
    pub kinds: Vec<PiiKind>,
}

/// Scans one request body as it streams, per the session's [`PiiMode`].
///
/// - `detect`: every chunk is returned unchanged at once; findings are only counted.
/// - `redact`: findings are replaced by `[REDACTED:kind]`; bytes are released once no
///   finding can still start or end in them.
/// - `block`: the first finding fails the scan with [`Blocked`]; no byte of a finding, or
///   after it, is ever released.
///
/// Memory is bounded by [`WINDOW`] whatever the body size. A finding split across chunks is
/// found once, exactly as [`super::scan`] finds it in the whole body.
///
/// # Security
/// A private key block reaches at most 4 KiB (an RSA-4096 PEM fits); a longer one is found
/// by its BEGIN line and counted, but cannot be redacted whole, so `redact` refuses it as
/// `block` would. Debug output shows counts and sizes, never body bytes.
pub struct StreamScanner {
    mode: PiiMode,
    cursor: Cursor,
    /// Body bytes from absolute offset `base` on.
    buf: Vec<u8>,
    base: usize,
    /// Absolute offset up to which output has been produced.
    released: usize,
    counts: BTreeMap<PiiKind, u32>,
    blocked: Option<Blocked>,
    /// Scan after every push rather than when the buffer fills (tests only: it puts a scan
    /// boundary at every chunk boundary).
    eager: bool,
}

impl StreamScanner {
    /// A scanner for one body, or `None` when `mode` is `off` (nothing to scan).
    pub fn new(mode: PiiMode) -> Option<StreamScanner> {
        (mode != PiiMode::Off).then(|| StreamScanner {
            mode,
            cursor: Cursor::new(),
            buf: Vec::new(),
            base: 0,
            released: 0,
            counts: BTreeMap::new(),
            blocked: None,
            eager: false,
        })
    }

    /// Feeds the next chunk; returns the bytes that may be forwarded now (possibly none).
    ///
    /// # Errors
    /// [`Blocked`] when the body must be refused; the caller aborts the request, and every
    /// later call fails the same way.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Blocked> {
        if let Some(blocked) = &self.blocked {
            return Err(blocked.clone());
        }
        let mut out = BytesMut::new();
        if self.mode == PiiMode::Detect {
            out.extend_from_slice(chunk);
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = WINDOW.saturating_sub(self.buf.len()).min(rest.len());
            let (now, later) = rest.split_at(room);
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() >= WINDOW || self.eager {
                self.step(false, &mut out)?;
            }
        }
        Ok(out.freeze())
    }

    /// Ends the body: returns the remaining bytes to forward and the findings summary.
    ///
    /// # Errors
    /// [`Blocked`] as for [`StreamScanner::push`].
    pub fn finish(mut self) -> Result<(Bytes, Summary), Blocked> {
        if let Some(blocked) = self.blocked.take() {
            return Err(blocked);
        }
        let mut out = BytesMut::new();
        self.step(true, &mut out)?;
        Ok((
            out.freeze(),
            Summary {
                counts: self.counts,
            },
        ))
    }

    /// The findings counted so far (for an audit record when the body is cut short).
    pub fn summary(&self) -> Summary {
        Summary {
            counts: self.counts.clone(),
        }
    }

    /// Body bytes currently held; never more than [`WINDOW`].
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Test hook: scan at every chunk boundary.
    #[cfg(test)]
    pub(super) fn eager(mut self) -> StreamScanner {
        self.eager = true;
        self
    }

    fn step(&mut self, at_end: bool, out: &mut BytesMut) -> Result<(), Blocked> {
        let mut progress = self.cursor.advance(&self.buf, self.base, at_end);
        let full = self.buf.len() >= WINDOW;
        if !at_end && full && progress.keep_from < self.base + WINDOW / 4 {
            let forced = self.cursor.force();
            progress.resolved.extend(forced.resolved);
            progress.safe = forced.safe;
            progress.keep_from = forced.keep_from;
        }
        self.apply(progress, out)
    }

    fn apply(&mut self, progress: Progress, out: &mut BytesMut) -> Result<(), Blocked> {
        for c in &progress.resolved {
            let n = self.counts.entry(c.finding.kind).or_default();
            *n = n.saturating_add(1);
        }
        let mut refused: Vec<PiiKind> = match self.mode {
            PiiMode::Block => progress.resolved.iter().map(|c| c.finding.kind).collect(),
            PiiMode::Redact => progress
                .resolved
                .iter()
                .filter(|c| c.truncated)
                .map(|_| PiiKind::PrivateKey)
                .collect(),
            PiiMode::Off | PiiMode::Detect => Vec::new(),
        };
        if !refused.is_empty() {
            refused.sort_unstable();
            refused.dedup();
            let blocked = Blocked { kinds: refused };
            self.blocked = Some(blocked.clone());
            self.buf = Vec::new();
            return Err(blocked);
        }
        if self.mode != PiiMode::Detect {
            let mut pos = self.released;
            for c in &progress.resolved {
                out.extend_from_slice(&self.buf[pos - self.base..c.finding.start - self.base]);
                for part in marker(c.finding.kind) {
                    out.extend_from_slice(part);
                }
                pos = c.finding.end;
            }
            out.extend_from_slice(&self.buf[pos - self.base..progress.safe - self.base]);
        }
        self.released = progress.safe;
        let drop = progress
            .keep_from
            .saturating_sub(self.base)
            .min(self.buf.len());
        self.buf.drain(..drop);
        self.base += drop;
        Ok(())
    }
}

impl fmt::Debug for StreamScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamScanner")
            .field("mode", &self.mode)
            .field("buffered", &self.buf.len())
            .field("released", &self.released)
            .field("counts", &self.counts)
            .field("blocked", &self.blocked)
            .finish_non_exhaustive()
    }
}

/// `text` with each finding replaced by `[REDACTED:kind]`: the one-shot counterpart of a
/// `redact` mode [`StreamScanner`]. `findings` are as [`super::scan`] returns them (in order,
/// not overlapping); any that are not are skipped.
pub fn redact(text: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for f in findings {
        let Some(before) = text
            .get(pos..f.start)
            .filter(|_| f.start < f.end && f.end <= text.len())
        else {
            continue;
        };
        out.extend_from_slice(before);
        for part in marker(f.kind) {
            out.extend_from_slice(part);
        }
        pos = f.end;
    }
    out.extend_from_slice(text.get(pos..).unwrap_or_default());
    out
}

/// The replacement for a finding, in pieces: `[REDACTED:card_number]`.
fn marker(kind: PiiKind) -> [&'static [u8]; 3] {
    [b"[REDACTED:", kind.as_str().as_bytes(), b"]"]
}

fn kind_list(kinds: &[PiiKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
