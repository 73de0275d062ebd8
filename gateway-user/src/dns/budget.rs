//! The cap on distinct names one sandbox may look up per minute.
//!
//! Under an allow-all policy every name resolves, so a sandbox could carry data out in query
//! names; the cap bounds that channel's rate. Repeats of a name already counted in the window
//! are free (clients re-ask the same names all the time).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The length of one counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked sandboxes, windows that have expired are dropped.
const PRUNE_AT: usize = 1024;

/// Distinct names per sandbox per [`WINDOW`]; windows are fixed, starting at a sandbox's
/// first query.
#[derive(Debug)]
pub struct NameBudget {
    per_window: usize,
    windows: Mutex<HashMap<u64, Window>>,
    refused: AtomicU64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    names: HashSet<String>,
}

/// A sandbox asked for more distinct names in a minute than its budget (which it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "dns: this sandbox asked for more than {0} distinct names in a minute (dns.max_names_per_minute)"
)]
pub struct OverBudget(pub usize);

impl NameBudget {
    /// A budget of `per_minute` distinct names per sandbox per minute.
    pub fn new(per_minute: u32) -> NameBudget {
        NameBudget {
            per_window: usize::try_from(per_minute).unwrap_or(usize::MAX),
            windows: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Queries refused because their sandbox had spent its budget, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts `name` for `sandbox` at `now`; the error says the cap was reached (the name is
    /// then not counted, and must be refused).
    pub fn spend(&self, sandbox: u64, name: &str, now: Instant) -> Result<(), OverBudget> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > PRUNE_AT {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        let window = windows.entry(sandbox).or_insert_with(|| Window {
            started: now,
            names: HashSet::new(),
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.names.clear();
        }
        if window.names.contains(name) {
            return Ok(());
        }
        if window.names.len() >= self.per_window {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(OverBudget(self.per_window));
        }
        window.names.insert(name.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_names_are_capped_per_sandbox_and_window() {
        let budget = NameBudget::new(2);
        let t0 = Instant::now();
        assert!(budget.spend(1, "a.test", t0).is_ok());
        assert!(budget.spend(1, "b.test", t0).is_ok());
        assert!(budget.spend(1, "a.test", t0).is_ok(), "repeats are free");
        let over = budget.spend(1, "c.test", t0).unwrap_err();
        assert_eq!(over, OverBudget(2));
        assert!(
            over.to_string().contains("more than 2 distinct names"),
            "{over}"
        );
        assert!(
            budget.spend(2, "c.test", t0).is_ok(),
            "another sandbox has its own"
        );
        let later = t0 + WINDOW - Duration::from_millis(1);
        assert!(
            budget.spend(1, "c.test", later).is_err(),
            "still the same window"
        );
        assert!(
            budget.spend(1, "c.test", t0 + WINDOW).is_ok(),
            "a new window"
        );
        assert!(budget.spend(1, "d.test", t0 + WINDOW).is_ok());
        assert!(budget.spend(1, "e.test", t0 + WINDOW).is_err());
        assert_eq!(budget.refused(), 3);
    }
}
