//! Replacing fixed byte strings in a stream whose chunks may split them anywhere.
//!
//! One Aho-Corasick automaton (leftmost-longest, so the result is the same as replacing in
//! the whole stream at once) finds matches in linear time. Only a tail that is still the
//! beginning of some pattern is held back, so streamed responses (SSE) are not delayed by
//! more than they must be.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use bytes::Bytes;
use zeroize::Zeroizing;

/// Why a replacer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The patterns are too many or too long for the automaton.
    #[error(
        "credentials: cannot build the matcher for the session's values ({0}); shorten or remove credentials"
    )]
    Build(#[from] aho_corasick::BuildError),
}

/// A streaming replacer of byte strings, safe at any chunk boundary.
///
/// Cloning is cheap (the automaton is shared) and gives an independent stream.
///
/// # Security
/// The patterns and the held-back tail are zeroed on drop; `Debug` shows only counts. The
/// automaton's own tables are not zeroed: they live as long as the session's replacer.
#[derive(Clone)]
pub struct StreamReplacer {
    table: Option<Arc<Table>>,
    pending: Zeroizing<Vec<u8>>,
    replaced: usize,
}

struct Table {
    searcher: AhoCorasick,
    froms: Vec<Zeroizing<Vec<u8>>>,
    tos: Vec<Zeroizing<Vec<u8>>>,
    first: [bool; 256],
    longest: usize,
}

impl StreamReplacer {
    /// A replacer of each `from` by its `to`. Empty `from`s are ignored. Where matches
    /// overlap, the leftmost wins, then the longest, then the earliest pair.
    ///
    /// # Errors
    /// [`StreamError::Build`] when the automaton cannot hold the patterns.
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<StreamReplacer, StreamError> {
        let (froms, tos): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .map(|(from, to)| (Zeroizing::new(from), Zeroizing::new(to)))
            .filter(|(from, _)| !from.is_empty())
            .unzip();
        let table = if froms.is_empty() {
            None
        } else {
            let searcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(froms.iter().map(|f| f.as_slice()))?;
            let mut first = [false; 256];
            for from in &froms {
                if let Some(b) = from.first() {
                    first[usize::from(*b)] = true;
                }
            }
            let longest = froms.iter().map(|f| f.len()).max().unwrap_or(1);
            Some(Arc::new(Table {
                searcher,
                froms,
                tos,
                first,
                longest,
            }))
        };
        Ok(StreamReplacer {
            table,
            pending: Zeroizing::new(Vec::new()),
            replaced: 0,
        })
    }

    /// Replaces in the next chunk; returns every byte that can no longer be part of a match
    /// (holding back at most the longest pattern's length minus one).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut buf = Zeroizing::new(Vec::with_capacity(self.pending.len() + chunk.len()));
        buf.extend_from_slice(&self.pending);
        buf.extend_from_slice(chunk);
        self.run(&buf, false)
    }

    /// Ends the stream; returns the held-back tail, replaced.
    pub fn finish(mut self) -> Bytes {
        let buf = std::mem::take(&mut self.pending);
        self.run(&buf, true)
    }

    /// How many matches were replaced so far.
    pub fn replaced(&self) -> usize {
        self.replaced
    }

    /// Replaces in one complete input; returns it with the number of matches.
    pub(crate) fn replace_all(&self, input: &[u8]) -> (Bytes, usize) {
        let mut one = StreamReplacer {
            table: self.table.clone(),
            pending: Zeroizing::new(Vec::new()),
            replaced: 0,
        };
        let out = one.run(input, true);
        (out, one.replaced)
    }

    /// Replaces in `buf` (held-back bytes first); keeps back a tail that may still grow into
    /// a match unless `eof`.
    fn run(&mut self, buf: &[u8], eof: bool) -> Bytes {
        let Some(table) = &self.table else {
            return Bytes::copy_from_slice(buf);
        };
        let len = buf.len();
        let mut out = Vec::with_capacity(len);
        let mut pos = 0;
        let mut hold = if eof { len } else { table.partial(buf, 0) };
        loop {
            if hold < pos {
                hold = table.partial(buf, pos);
            }
            match table.searcher.find(Input::new(buf).span(pos..len)) {
                Some(found) if found.start() < hold => {
                    out.extend_from_slice(&buf[pos..found.start()]);
                    out.extend_from_slice(&table.tos[found.pattern().as_usize()]);
                    pos = found.end();
                    self.replaced += 1;
                }
                _ => break,
            }
        }
        out.extend_from_slice(&buf[pos..hold]);
        self.pending = Zeroizing::new(buf[hold..].to_vec());
        Bytes::from(out)
    }
}

impl Table {
    /// The first position at or after `from` where the rest of `buf` is a proper prefix of
    /// some pattern (a match that may still begin there), or `buf.len()`.
    fn partial(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        let lowest = from.max(len.saturating_sub(self.longest - 1));
        (lowest..len)
            .find(|&at| {
                let rest = &buf[at..];
                self.first[usize::from(rest[0])]
                    && self
                        .froms
                        .iter()
                        .any(|f| f.len() > rest.len() && f.starts_with(rest))
            })
            .unwrap_or(len)
    }
}

impl std::fmt::Debug for StreamReplacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReplacer")
            .field(
                "patterns",
                &self.table.as_ref().map_or(0, |t| t.froms.len()),
            )
            .field("pending_len", &self.pending.len())
            .field("replaced", &self.replaced)
            .finish()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
