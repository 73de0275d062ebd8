//! PII scanning of request bodies: detectors, and a streaming scanner with a bounded window.
//!
//! A session's [`PiiMode`](crate::policy::PiiMode) decides what happens to a finding:
//! `detect` counts it for the audit record, `redact` replaces it with `[REDACTED:kind]`
//! before the upstream sees the body, `block` refuses the body (403). Kinds: e-mail, phone,
//! card number, US SSN, IBAN, AWS access key id, private key block, JWT, GitHub and Slack
//! tokens — each a regex for candidates plus a pure check (Luhn and issuer ranges, SSN
//! ranges, IBAN mod-97 and country length, JWT header JSON, token boundaries).
//!
//! - [`scan`] finds everything in a whole body at once; [`redact`] applies the findings.
//! - [`StreamScanner`] does the same over body chunks, holding back at most [`WINDOW`]
//!   bytes, and gives identical findings and output for any chunking.
//!
//! Overlapping candidates become one finding named by the longest (then the most specific)
//! kind. Text wholly inside a credential placeholder (`sluice_cred:NAME`) is never PII.
//!
//! # Security
//! Nothing here keeps, prints or serializes matched text: [`Finding`] holds offsets,
//! [`Summary`] counts per kind, [`Blocked`] kinds. Detection is a safety net against
//! accidental leaks, not a barrier against a sandbox that encodes data on purpose.

mod cursor;
pub mod detectors;
pub mod scanner;
mod validate;

pub use cursor::scan;
pub use detectors::{Finding, PiiKind};
pub use scanner::{Blocked, StreamScanner, Summary, WINDOW, redact};

#[cfg(test)]
mod tests;
