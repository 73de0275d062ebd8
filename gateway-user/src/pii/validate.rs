//! Pure checks behind the detectors: checksums, number ranges and token boundaries.
//!
//! Each check gets the whole haystack and a regex match `start..end` in it, and returns the
//! confirmed extent or `None`. Checks read at most [`CONTEXT`] bytes before `start` and
//! [`LOOKAHEAD`] bytes past the detector's maximum extent; the cursor keeps that much.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regex::bytes::Regex;

use crate::credentials::PLACEHOLDER_PREFIX;

/// Bytes before a candidate a check may read: a placeholder prefix and a 64-byte name.
pub(super) const CONTEXT: usize = 96;
/// Bytes past a candidate's maximum extent a check may read.
pub(super) const LOOKAHEAD: usize = 8;

/// The longest extent of any finding, from its first byte (a private key block or a JWT).
pub(super) const MAX_EXTENT: usize = 4096;

/// The closing line of a private key block, which [`private_key`] looks for.
static PRIVATE_KEY_END: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?-u)-----END (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----"));
/// A confirmed finding's end, and whether it is a private key block cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extent {
    /// Offset one past the finding's last byte.
    pub(super) end: usize,
    /// A private key block whose `-----END` line was not within reach.
    pub(super) truncated: bool,
}

impl Extent {
    fn to(end: usize) -> Option<Extent> {
        Some(Extent {
            end,
            truncated: false,
        })
    }
}

/// Whether `start..end` lies wholly inside a credential placeholder `sluice_cred:NAME`
/// (NAME is `[A-Za-z0-9_.-]{1,64}`): such text is the gateway's own, never PII.
pub(super) fn in_placeholder(hay: &[u8], start: usize, end: usize) -> bool {
    let is_name = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let Some(inner) = hay.get(start..end) else {
        return false;
    };
    if !inner.iter().all(is_name) {
        return false;
    }
    let mut name_start = start;
    while name_start > 0 && end - name_start < 64 && hay.get(name_start - 1).is_some_and(is_name) {
        name_start -= 1;
    }
    let prefix = PLACEHOLDER_PREFIX.as_bytes();
    name_start
        .checked_sub(prefix.len())
        .and_then(|p| hay.get(p..name_start))
        .is_some_and(|p| p == prefix)
}

/// An e-mail: the regex fixed the shape; refuse image names (`icon@2x.png`) and SSH remotes
/// (`git@github.com:org/repo`).
pub(super) fn email(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    const NOT_TLDS: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"css", b"js",
    ];
    let text = hay.get(start..end)?;
    let tld = text.rsplit(|&b| b == b'.').next()?.to_ascii_lowercase();
    if NOT_TLDS.contains(&tld.as_slice()) {
        return None;
    }
    let ssh_remote =
        hay.get(end) == Some(&b':') && hay.get(end + 1).is_some_and(|b| !b.is_ascii_whitespace());
    if ssh_remote { None } else { Extent::to(end) }
}

/// A phone number. `+` forms: the longest prefix (cut before a separator) with 8–15 digits
/// and balanced parentheses. NANP forms: the regex fixed the shape.
pub(super) fn phone(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    if !clear_before(hay, start) {
        return None;
    }
    let text = hay.get(start..end)?;
    if text.first() != Some(&b'+') {
        return if clear_after(hay, end) {
            Extent::to(end)
        } else {
            None
        };
    }
    let (mut digits, mut open, mut best) = (0usize, 0u8, None);
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'(' if open == 0 => open = 1,
            b')' if open == 1 => open = 0,
            b'(' | b')' => break,
            _ => {}
        }
        if digits > 15 {
            break;
        }
        let cut = start + i + 1;
        let closes = b.is_ascii_digit() || b == b')';
        if closes && open == 0 && digits >= 8 && clear_after(hay, cut) {
            best = Extent::to(cut);
        }
    }
    best
}

/// A card number: the longest prefix (ending at a separator or the match end) of 13–19
/// digits that passes Luhn and has a known issuer prefix.
pub(super) fn card(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    if !clear_before(hay, start) {
        return None;
    }
    let (mut digits, mut n, mut best) = ([0u8; 19], 0usize, None);
    for (i, &b) in hay.get(start..end)?.iter().enumerate() {
        if !b.is_ascii_digit() {
            continue;
        }
        let Some(slot) = digits.get_mut(n) else { break };
        *slot = b - b'0';
        n += 1;
        let cut = start + i + 1;
        let number = &digits[..n];
        if n >= 13 && clear_after(hay, cut) && luhn(number) && known_issuer(number) {
            best = Extent::to(cut);
        }
    }
    best
}

/// A US SSN `AAA-GG-SSSS`: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub(super) fn ssn(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    let text = hay.get(start..end)?;
    if text.len() != 11 || !clear_before(hay, start) || !clear_after(hay, end) {
        return None;
    }
    let (area, group, serial) = (
        number(&text[0..3]),
        number(&text[4..6]),
        number(&text[7..11]),
    );
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    if valid { Extent::to(end) } else { None }
}

/// An IBAN: the country's length (spaces allowed only between groups of four), not followed
/// by more letters or digits, with a valid mod-97 check.
pub(super) fn iban(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    let text = hay.get(start..end)?;
    let want = iban_length(text.get(..2)?)?;
    let (mut chars, mut n) = ([0u8; 34], 0usize);
    for (i, &b) in text.iter().enumerate() {
        if b == b' ' {
            if n % 4 != 0 {
                return None;
            }
            continue;
        }
        *chars.get_mut(n)? = b;
        n += 1;
        if n == want {
            let cut = start + i + 1;
            let open_ended = hay.get(cut).is_some_and(|b| is_word(*b));
            return if !open_ended && iban_checksum(&chars[..n]) {
                Extent::to(cut)
            } else {
                None
            };
        }
    }
    None
}

/// A token the regex bounded exactly (`\b` on both sides): confirmed as matched.
pub(super) fn as_matched(_hay: &[u8], _start: usize, end: usize) -> Option<Extent> {
    Extent::to(end)
}

/// A token whose regex stops at a length cap: refused if more token characters follow.
pub(super) fn token_end(hay: &[u8], _start: usize, end: usize) -> Option<Extent> {
    if hay.get(end).is_some_and(|&b| is_b64url(b)) {
        None
    } else {
        Extent::to(end)
    }
}

/// A private key block from its BEGIN line to the first END line within [`MAX_EXTENT`]
/// bytes; without one, the BEGIN line and the key text after it, marked truncated.
pub(super) fn private_key(hay: &[u8], start: usize, end: usize) -> Option<Extent> {
    let limit = hay.len().min(start + MAX_EXTENT);
    let body = hay.get(end..limit)?;
    if let Some(close) = PRIVATE_KEY_END.find(body) {
        return Extent::to(end + close.end());
    }
    let is_body = |b: &u8| b.is_ascii_alphanumeric() || b"+/=\\ \t\r\n".contains(b);
    let run = body.iter().take_while(|b| is_body(b)).count();
    Some(Extent {
        end: end + run,
        truncated: true,
    })
}

/// A JWT: three base64url segments (header ≤ 600, payload 2–2400, signature ≤ 1000 bytes)
/// whose header decodes to a JSON object with `alg`.
pub(super) fn jwt(hay: &[u8], start: usize, _end: usize) -> Option<Extent> {
    if start > 0
        && hay
            .get(start - 1)
            .is_some_and(|&b| is_b64url(b) || b == b'.')
    {
        return None;
    }
    let header_end = b64url_run(hay, start, 600);
    let payload_end = b64url_run(hay, header_end.checked_add(1)?, 2400);
    if hay.get(header_end) != Some(&b'.') || payload_end < header_end + 3 {
        return None;
    }
    if hay.get(payload_end) != Some(&b'.') {
        return None;
    }
    let signature_end = b64url_run(hay, payload_end + 1, 1000);
    if hay.get(signature_end).is_some_and(|&b| is_b64url(b)) {
        return None;
    }
    let header = JWT_BASE64.decode(hay.get(start..header_end)?).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    if header.contains_key("alg") {
        Extent::to(signature_end)
    } else {
        None
    }
}

/// Luhn checksum over digit values (0–9).
pub(super) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a card number of this length starts with a known issuer range (Visa, Mastercard,
/// Amex, Discover, JCB, Diners, UnionPay, Maestro).
pub(super) fn known_issuer(digits: &[u8]) -> bool {
    let prefix = |k: usize| {
        digits
            .iter()
            .take(k)
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let len = digits.len();
    let visa = prefix(1) == 4 && matches!(len, 13 | 16 | 19);
    let amex = matches!(prefix(2), 34 | 37) && len == 15;
    let mastercard =
        ((51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4))) && len == 16;
    let discover = (prefix(4) == 6011
        || (644..=649).contains(&prefix(3))
        || prefix(2) == 65
        || (622_126..=622_925).contains(&prefix(6)))
        && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len);
    let diners = ((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
        && (14..=19).contains(&len);
    let unionpay = prefix(2) == 62 && (16..=19).contains(&len);
    let maestro = matches!(
        prefix(4),
        5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763
    ) && (13..=19).contains(&len);
    visa || amex || mastercard || discover || jcb || diners || unionpay || maestro
}

/// The IBAN length of a country, for the countries in the IBAN registry most often seen.
pub(super) fn iban_length(country: &[u8]) -> Option<usize> {
    // Country code and length, four bytes each.
    const LENGTHS: &[u8] = concat!(
        "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29CH21CR22CY28CZ24DE22DK18DO28",
        "EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IS26",
        "IT27JO30KW30KZ20LB28LI21LT20LU20LV21MC27MD24ME22MK19MR27MT31MU30NL18",
        "NO15PK24PL28PS29PT25QA29RO24RS22SA24SE24SI19SK24SM27TN24TR26UA29VG24",
        "XK20",
    )
    .as_bytes();
    let entry = LENGTHS
        .chunks_exact(4)
        .find(|e| e.get(..2) == Some(country))?;
    Some(usize::from(entry[2] - b'0') * 10 + usize::from(entry[3] - b'0'))
}

/// ISO 13616 mod-97 check over an IBAN's characters (no spaces).
pub(super) fn iban_checksum(chars: &[u8]) -> bool {
    let (head, tail) = chars.split_at(chars.len().min(4));
    let mut rest = 0u32;
    for &c in tail.iter().chain(head) {
        rest = match c {
            b'0'..=b'9' => (rest * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rest * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rest == 1
}

/// Whether `start` does not continue a longer number or word: the byte before is not a
/// letter, digit or `_`, nor a `-`, `.` or `/` right after a digit.
fn clear_before(hay: &[u8], start: usize) -> bool {
    let at = |i: Option<usize>| i.and_then(|i| hay.get(i)).copied();
    match at(start.checked_sub(1)) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'-' | b'.' | b'/') => !at(start.checked_sub(2)).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Mirror of [`clear_before`] for the byte at `end`.
fn clear_after(hay: &[u8], end: usize) -> bool {
    match hay.get(end) {
        None => true,
        Some(&b) if is_word(b) => false,
        Some(b'-' | b'.' | b'/') => !hay.get(end + 1).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Offset just past the run of base64url bytes from `from`, at most `max` long.
fn b64url_run(hay: &[u8], from: usize, max: usize) -> usize {
    let run = hay
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|&&b| is_b64url(b));
    from + run.count()
}

fn number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, &d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// Base64url as JWTs use it: no padding, lenient trailing bits.
const JWT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Compiles one of the detectors' constant patterns.
#[expect(
    clippy::expect_used,
    reason = "constant patterns; every one is compiled by the detector tests"
)]
pub(super) fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("PII detector pattern compiles")
}
