//! The incremental driver of the detectors, shared by the one-shot [`scan`] and the
//! streaming scanner.
//!
//! Each detector walks its own chain of regex matches (`next` is where its next search
//! starts). A match is only acted on once every byte its check may read is present, so the
//! chain — and with it every finding — is the same whether the text arrives at once or in
//! pieces. Overlapping findings of different kinds are merged into one once nothing later
//! can still join them. Offsets here are absolute (from the start of the body).

use super::detectors::{DETECTORS, Finding};
use super::validate::{CONTEXT, LOOKAHEAD, in_placeholder};

/// Finds every PII instance in `text`, in order, without overlaps.
///
/// Overlapping candidates of different kinds become one finding that spans all of them and
/// is named by the longest (ties: the most specific kind). Text that lies wholly inside a
/// credential placeholder (`sluice_cred:NAME`) is never a finding. Pure; the streaming
/// scanner gives the same result for any chunking of the same bytes.
pub fn scan(text: &[u8]) -> Vec<Finding> {
    Cursor::new()
        .advance(text, 0, true)
        .resolved
        .iter()
        .map(|c| c.finding)
        .collect()
}

/// A finding, and whether it is (or holds) a private key block cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Candidate {
    /// Kind and absolute offsets.
    pub(super) finding: Finding,
    /// A private key block whose END line was not within reach.
    pub(super) truncated: bool,
}

/// What one step settled.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Findings that can no longer change, in order.
    pub(super) resolved: Vec<Candidate>,
    /// Absolute offset before which every byte is settled: no finding still open starts or
    /// ends before it.
    pub(super) safe: usize,
    /// Absolute offset of the first byte the cursor still needs (look-behind included);
    /// earlier bytes may be dropped.
    pub(super) keep_from: usize,
}

/// Per-detector search positions and the findings not yet settled.
#[derive(Debug)]
pub(super) struct Cursor {
    /// Where each detector's next search starts.
    next: [usize; DETECTORS.len()],
    /// The least of `next`: every finding still to come starts at or after it.
    frontier: usize,
    /// End of the last finding settled early by [`Cursor::force`]; later findings start no
    /// earlier.
    floor: usize,
    /// Confirmed findings not yet merged with whatever may still overlap them.
    pending: Vec<Candidate>,
}

impl Cursor {
    /// A cursor at the start of a body.
    pub(super) fn new() -> Cursor {
        Cursor {
            next: [0; DETECTORS.len()],
            frontier: 0,
            floor: 0,
            pending: Vec::new(),
        }
    }

    /// Runs every detector over `hay`, which holds the body's bytes from absolute offset
    /// `base`, and settles what can be settled. `base` must be at most the previous step's
    /// `keep_from`, and `hay` must extend at least to the previous
    /// end. With `at_end`, `hay` reaches the end of the body and everything settles.
    pub(super) fn advance(&mut self, hay: &[u8], base: usize, at_end: bool) -> Progress {
        let end = base + hay.len();
        for (next, detector) in self.next.iter_mut().zip(&DETECTORS) {
            let reach = detector.max_extent + LOOKAHEAD;
            // Positions before `settled` are decided for good: their bytes are all here.
            let settled = if at_end {
                end
            } else {
                end.saturating_sub(reach)
            };
            loop {
                let from = next.saturating_sub(base);
                let found = detector.regex.find_at(hay, from);
                let Some(m) = found.filter(|m| base + m.start() < settled || at_end) else {
                    *next = (*next).max(settled);
                    break;
                };
                let confirmed = (detector.check)(hay, m.start(), m.end())
                    .filter(|x| !in_placeholder(hay, m.start(), x.end));
                let Some(extent) = confirmed else {
                    *next = base + m.end();
                    continue;
                };
                *next = base + extent.end;
                let start = (base + m.start()).max(self.floor);
                if start < *next {
                    let finding = Finding {
                        kind: detector.kind,
                        start,
                        end: *next,
                    };
                    self.pending.push(Candidate {
                        finding,
                        truncated: extent.truncated,
                    });
                }
            }
        }
        self.frontier = self.next.iter().copied().min().unwrap_or(end);
        self.settle(at_end, false)
    }

    /// Settles every open finding that starts before the frontier, even though a later
    /// overlapping one could still join it; keeps memory bounded against long chains of
    /// overlapping candidates (which natural text does not produce).
    pub(super) fn force(&mut self) -> Progress {
        self.settle(false, true)
    }

    /// Merges pending findings into clusters of overlapping ones and settles the clusters
    /// nothing later can join (or, with `force`, every cluster starting before the frontier).
    fn settle(&mut self, at_end: bool, force: bool) -> Progress {
        self.pending
            .sort_unstable_by_key(|c| (c.finding.start, c.finding.end));
        let mut resolved = Vec::new();
        let mut taken = 0;
        while let Some(first) = self.pending.get(taken) {
            let mut cluster = *first;
            let mut best = first.finding;
            let mut next = taken + 1;
            while let Some(c) = self
                .pending
                .get(next)
                .filter(|c| c.finding.start < cluster.finding.end)
            {
                cluster.finding.end = cluster.finding.end.max(c.finding.end);
                cluster.truncated |= c.truncated;
                if outranks(&c.finding, &best) {
                    best = c.finding;
                }
                next += 1;
            }
            let done = at_end
                || cluster.finding.end <= self.frontier
                || (force && cluster.finding.start < self.frontier);
            if !done {
                break;
            }
            cluster.finding.kind = best.kind;
            self.floor = self.floor.max(cluster.finding.end);
            resolved.push(cluster);
            taken = next;
        }
        self.pending.drain(..taken);
        let settled = self.frontier.max(self.floor);
        let safe = self
            .pending
            .first()
            .map_or(settled, |c| settled.min(c.finding.start));
        let keep_from = safe.min(self.frontier).saturating_sub(CONTEXT);
        Progress {
            resolved,
            safe,
            keep_from,
        }
    }
}

/// Whether `a` names an overlap rather than `b`: longer, then more specific.
fn outranks(a: &Finding, b: &Finding) -> bool {
    let len = |f: &Finding| f.end - f.start;
    (len(a), a.kind.specificity()) > (len(b), b.kind.specificity())
}
