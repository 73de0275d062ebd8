//! Clients that refused Sluice's certificate, counted per (session, executable, host) for
//! `/metrics`: a tool that does not trust the CA (it needs a variable or file), or one that
//! pins its server's certificate (it needs a passthrough entry).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

/// Most distinct (session, executable, host) kept; later ones count under `other`.
pub const MAX_KEYS: usize = 4096;

/// One count's labels.
type Key = (String, String, String);

/// Trust failures by (session, executable, host).
#[derive(Debug, Default)]
pub struct TrustFailures {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl TrustFailures {
    /// Counts one refusal.
    pub fn count(&self, session: Option<&str>, executable: Option<&str>, host: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (
            session.unwrap_or("-").to_owned(),
            executable.unwrap_or("-").to_owned(),
            host.to_owned(),
        );
        if !counts.contains_key(&key) && counts.len() >= MAX_KEYS {
            key = ("other".into(), "other".into(), "other".into());
        }
        *counts.entry(key).or_default() += 1;
    }

    /// The counts as a Prometheus counter family.
    pub fn render(&self, out: &mut String) {
        let name = "sluice_tls_trust_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Clients that refused Sluice's certificate (an unknown_ca or \
             bad_certificate alert, or a close during the handshake), by session, \
             executable and host."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for ((session, executable, host), n) in counts.iter() {
            let _ = writeln!(
                out,
                "{name}{{session=\"{}\",executable=\"{}\",host=\"{}\"}} {n}",
                label(session),
                label(executable),
                label(host)
            );
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_labelled_escaped_and_bounded() {
        let failures = TrustFailures::default();
        failures.count(Some("ses_a"), Some("/usr/bin/python3.11"), "api.test");
        failures.count(Some("ses_a"), Some("/usr/bin/python3.11"), "api.test");
        failures.count(None, Some("/opt/x\"y"), "b.test");
        let mut out = String::new();
        failures.render(&mut out);
        assert!(out.contains(
            "sluice_tls_trust_failures_total{session=\"ses_a\",executable=\"/usr/bin/python3.11\",host=\"api.test\"} 2"
        ), "{out}");
        assert!(out.contains("executable=\"/opt/x\\\"y\""), "{out}");
        for i in 0..MAX_KEYS + 10 {
            failures.count(None, None, &format!("h{i}.test"));
        }
        let mut out = String::new();
        failures.render(&mut out);
        assert!(out.lines().count() <= MAX_KEYS + 3, "bounded");
        assert!(out.contains("host=\"other\""), "{out}");
    }
}
