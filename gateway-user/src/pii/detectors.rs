//! What counts as PII: the kinds, and one detector per kind.
//!
//! Each detector is a regex that finds a candidate plus a pure check that confirms it and
//! fixes its extent (checksums, number ranges, token boundaries). Every detector has a
//! bounded reach ([`Detector::max_extent`]), which is what lets the streaming scanner hold
//! back only a bounded tail and still find exactly what a one-shot scan finds.

use std::fmt;
use std::sync::LazyLock;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use super::validate::{self, Extent, MAX_EXTENT, compile};

/// A kind of personal data or credential the scanner looks for.
///
/// Serialized in snake_case (`card_number`); that name is all an audit record or a refusal
/// ever says about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address with a letter TLD.
    Email,
    /// A phone number: E.164 (`+` and 8–15 digits) or a NANP form (`(415) 555-0132`).
    Phone,
    /// A payment card number: 13–19 digits, Luhn-valid, with a known issuer prefix.
    CardNumber,
    /// A US social security number `AAA-GG-SSSS` with a valid area, group and serial.
    Ssn,
    /// An IBAN with a known country length and a valid mod-97 check.
    Iban,
    /// An AWS access key id (`AKIA…` / `ASIA…`).
    AwsAccessKey,
    /// A PEM or PGP private key block (`-----BEGIN … PRIVATE KEY-----`).
    PrivateKey,
    /// A JSON Web Token whose header decodes to JSON with `alg`.
    Jwt,
    /// A GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// A Slack token (`xoxb-`, `xoxp-`, …).
    SlackToken,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 10] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CardNumber,
        PiiKind::Ssn,
        PiiKind::Iban,
        PiiKind::AwsAccessKey,
        PiiKind::PrivateKey,
        PiiKind::Jwt,
        PiiKind::GithubToken,
        PiiKind::SlackToken,
    ];

    /// The snake_case name, as serialized (`card_number`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CardNumber => "card_number",
            PiiKind::Ssn => "ssn",
            PiiKind::Iban => "iban",
            PiiKind::AwsAccessKey => "aws_access_key",
            PiiKind::PrivateKey => "private_key",
            PiiKind::Jwt => "jwt",
            PiiKind::GithubToken => "github_token",
            PiiKind::SlackToken => "slack_token",
        }
    }

    /// Rank among overlapping findings of equal length: the more specific kind names the
    /// finding (a key or token over a number, a number with a checksum over a phone).
    pub(super) fn specificity(self) -> u8 {
        match self {
            PiiKind::PrivateKey => 9,
            PiiKind::Jwt => 8,
            PiiKind::AwsAccessKey => 7,
            PiiKind::GithubToken => 6,
            PiiKind::SlackToken => 5,
            PiiKind::Iban => 4,
            PiiKind::CardNumber => 3,
            PiiKind::Ssn => 2,
            PiiKind::Email => 1,
            PiiKind::Phone => 0,
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding is: byte offsets `start..end` into the scanned text, and its kind.
///
/// # Security
/// Holds offsets only, never the matched bytes, so it can be logged or debugged freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    /// What was found.
    pub kind: PiiKind,
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

/// One kind's candidate regex and confirming check.
pub(super) struct Detector {
    /// The kind this detector reports.
    pub(super) kind: PiiKind,
    /// Finds candidates; every match is at most `max_extent` bytes.
    pub(super) regex: &'static LazyLock<Regex>,
    /// The furthest a finding (match plus extension) reaches past its start.
    pub(super) max_extent: usize,
    /// Confirms the match `start..end` of `hay` and returns the finding's extent. Reads at
    /// most `validate::CONTEXT` bytes before `start` and `validate::LOOKAHEAD` bytes past
    /// `start + max_extent`.
    pub(super) check: fn(&[u8], usize, usize) -> Option<Extent>,
}

/// All detectors; the order is the order of per-detector state in the cursor.
pub(super) static DETECTORS: [Detector; 10] = [
    Detector {
        kind: PiiKind::Email,
        regex: &EMAIL,
        max_extent: 640,
        check: validate::email,
    },
    Detector {
        kind: PiiKind::Phone,
        regex: &PHONE,
        max_extent: 64,
        check: validate::phone,
    },
    Detector {
        kind: PiiKind::CardNumber,
        regex: &CARD,
        max_extent: 48,
        check: validate::card,
    },
    Detector {
        kind: PiiKind::Ssn,
        regex: &SSN,
        max_extent: 16,
        check: validate::ssn,
    },
    Detector {
        kind: PiiKind::Iban,
        regex: &IBAN,
        max_extent: 72,
        check: validate::iban,
    },
    Detector {
        kind: PiiKind::AwsAccessKey,
        regex: &AWS_KEY,
        max_extent: 24,
        check: validate::as_matched,
    },
    Detector {
        kind: PiiKind::PrivateKey,
        regex: &PRIVATE_KEY_BEGIN,
        max_extent: MAX_EXTENT,
        check: validate::private_key,
    },
    Detector {
        kind: PiiKind::Jwt,
        regex: &JWT_START,
        max_extent: MAX_EXTENT,
        check: validate::jwt,
    },
    Detector {
        kind: PiiKind::GithubToken,
        regex: &GITHUB_TOKEN,
        max_extent: 264,
        check: validate::as_matched,
    },
    Detector {
        kind: PiiKind::SlackToken,
        regex: &SLACK_TOKEN,
        max_extent: 256,
        check: validate::token_end,
    },
];

// All patterns are ASCII-only (`(?-u)`), so `\b` looks at one byte and any bytes match.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?-u)\b[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}\b",
    )
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?-u)\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,6}",
        r"|(?:\+?1[ .\-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}",
    ))
});
static CARD: LazyLock<Regex> = LazyLock::new(|| compile(r"(?-u)[0-9](?:[ \-]?[0-9]){12,18}"));
static SSN: LazyLock<Regex> = LazyLock::new(|| compile(r"(?-u)[0-9]{3}-[0-9]{2}-[0-9]{4}"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?-u)\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"));
static AWS_KEY: LazyLock<Regex> = LazyLock::new(|| compile(r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"));
static PRIVATE_KEY_BEGIN: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?-u)-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
});
static JWT_START: LazyLock<Regex> = LazyLock::new(|| compile(r"(?-u)\bey[A-Za-z0-9_\-]{16}"));
static GITHUB_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,242})\b")
});
static SLACK_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?-u)\bxox[abposr]-[A-Za-z0-9\-]{10,240}"));
