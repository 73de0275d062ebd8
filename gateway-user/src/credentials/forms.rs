//! The forms a value takes when an upstream echoes it, each paired with the same form of
//! the value's placeholder, for the [`Scrubber`](super::Scrubber).
//!
//! For a value of at least [`MIN_SCRUB_LEN`] bytes:
//! - as it is;
//! - JSON-string-escaped (UTF-8 values), also with `/` escaped as `\/`;
//! - percent-encoded (RFC 3986 unreserved kept) with upper- and lowercase escapes, and
//!   form-encoded (space as `+`);
//! - hex, lower- and uppercase; every byte percent-escaped (`%73%6B…`) and, for ASCII
//!   values, every character JSON-escaped (`\u0073\u006b…`), each in both cases;
//! - for values of at least [`MIN_BASE64_LEN`] bytes, base64 and base64url, each with and
//!   without padding, and each also as the run of characters that depends on the value alone
//!   at each of the three alignments a value can have inside a longer encoded string (for
//!   `user:secret` in Basic auth, or a secret inside an encoded JSON document).
//!
//! # Security
//! Inside a longer base64 string the one character before and the one after the matched run
//! mix bits of the value with bits of its neighbours; they are left as they are, so up to 4
//! bits of the first and 4 bits of the last byte of the value stay in such an echo. The
//! rest of the value is gone. Other transformations (other escapes, compression inside the
//! body, fragments, encryption) are not recognised.

use base64::Engine as _;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use super::encode;

/// Values shorter than this many bytes are never scrubbed.
pub const MIN_SCRUB_LEN: usize = 4;

/// Values shorter than this many bytes are not scrubbed in base64.
pub const MIN_BASE64_LEN: usize = 8;

/// The (value form, placeholder form) pairs for one value, without duplicates; none for a
/// value shorter than [`MIN_SCRUB_LEN`].
pub(crate) fn pairs(value: &[u8], placeholder: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Pairs(Vec::new());
    if value.len() < MIN_SCRUB_LEN {
        return out.0;
    }
    out.add(value.to_vec(), placeholder.to_vec());
    let (mut json_value, mut json_placeholder) = (Zeroizing::new(Vec::new()), Vec::new());
    if encode::json(value, &mut json_value).is_ok()
        && encode::json(placeholder, &mut json_placeholder).is_ok()
    {
        let slashed = Zeroizing::new(escape_slashes(&json_value));
        out.add(slashed.to_vec(), escape_slashes(&json_placeholder));
        out.add(json_value.to_vec(), json_placeholder);
    }
    for (encoder, lower) in [(encode::percent as Encoder, false), (encode::percent, true)]
        .into_iter()
        .chain([(encode::form as Encoder, false)])
    {
        let (mut from, mut to) = (Zeroizing::new(Vec::new()), Vec::new());
        encoder(value, &mut from);
        encoder(placeholder, &mut to);
        if lower {
            lower_escapes(&mut from);
            lower_escapes(&mut to);
        }
        out.add(from.to_vec(), to);
    }
    for upper in [false, true] {
        let from = Zeroizing::new(hex(value, upper));
        out.add(from.to_vec(), hex(placeholder, upper));
        let from = Zeroizing::new(escape_every(value, b"%", upper));
        out.add(from.to_vec(), escape_every(placeholder, b"%", upper));
        if value.is_ascii() {
            let from = Zeroizing::new(escape_every(value, b"\\u00", upper));
            out.add(from.to_vec(), escape_every(placeholder, b"\\u00", upper));
        }
    }
    if value.len() >= MIN_BASE64_LEN {
        for (padded, bare) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
            for engine in [padded, bare] {
                let from = Zeroizing::new(engine.encode(value).into_bytes());
                out.add(from.to_vec(), engine.encode(placeholder).into_bytes());
            }
            for align in 0..3 {
                let from = base64_core(bare, value, align);
                out.add(
                    from.to_vec(),
                    base64_core(bare, placeholder, align).to_vec(),
                );
            }
        }
    }
    out.0
}

type Encoder = fn(&[u8], &mut Vec<u8>);

struct Pairs(Vec<(Vec<u8>, Vec<u8>)>);

impl Pairs {
    fn add(&mut self, from: Vec<u8>, to: Vec<u8>) {
        if !from.is_empty() && self.0.iter().all(|(f, _)| *f != from) {
            self.0.push((from, to));
        } else {
            let mut from = from;
            zeroize::Zeroize::zeroize(&mut from);
        }
    }
}

/// The base64 characters that depend on `bytes` alone when they start `align` bytes into a
/// 3-byte group of a longer encoded string.
fn base64_core(engine: &GeneralPurpose, bytes: &[u8], align: usize) -> Zeroizing<Vec<u8>> {
    let mut shifted = Zeroizing::new(vec![0u8; align]);
    shifted.extend_from_slice(bytes);
    let encoded = Zeroizing::new(engine.encode(shifted.as_slice()).into_bytes());
    let first = (8 * align).div_ceil(6);
    let end = (8 * (align + bytes.len())) / 6;
    Zeroizing::new(encoded.get(first..end).unwrap_or_default().to_vec())
}

/// Every byte of `bytes` as `prefix` + two hex digits (`%` gives `%73%6B…`).
fn escape_every(bytes: &[u8], prefix: &[u8], upper: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * (prefix.len() + 2));
    for chunk in hex(bytes, upper).chunks(2) {
        out.extend_from_slice(prefix);
        out.extend_from_slice(chunk);
    }
    out
}

fn hex(bytes: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
}

/// `%2F` → `%2f`: the two characters after each `%` lowercased.
fn lower_escapes(encoded: &mut [u8]) {
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            for b in encoded.iter_mut().skip(i + 1).take(2) {
                b.make_ascii_lowercase();
            }
            i += 3;
        } else {
            i += 1;
        }
    }
}

fn escape_slashes(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    for &b in json {
        if b == b'/' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_cores_are_found_inside_longer_strings_at_every_alignment() {
        let value = b"s3cr3t-value-0123";
        for align in 0..3 {
            let core = base64_core(&STANDARD_NO_PAD, value, align);
            for prefix_len in [align, align + 3, align + 6] {
                for suffix_len in 0..4 {
                    let mut blob = vec![b'x'; prefix_len];
                    blob.extend_from_slice(value);
                    blob.extend(std::iter::repeat_n(b'y', suffix_len));
                    let encoded = STANDARD.encode(&blob);
                    assert!(
                        encoded.contains(std::str::from_utf8(&core).unwrap()),
                        "align {align}, prefix {prefix_len}, suffix {suffix_len}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_values_have_no_forms_and_forms_are_distinct() {
        assert!(pairs(b"abc", b"sluice_cred:S").is_empty());
        let all = pairs(b"a/b c+d:ef", b"sluice_cred:K");
        for (i, (from, _)) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|(f, _)| f != from));
        }
        let froms: Vec<String> = all
            .iter()
            .map(|(f, _)| String::from_utf8(f.clone()).unwrap())
            .collect();
        for want in [
            "a/b c+d:ef",
            "a\\/b c+d:ef",
            "a%2Fb%20c%2Bd%3Aef",
            "a%2fb%20c%2bd%3aef",
            "a%2Fb+c%2Bd%3Aef",
            "612f6220632b643a6566",
            "612F6220632B643A6566",
            "YS9iIGMrZDplZg==",
            "YS9iIGMrZDplZg",
            "%61%2f%62%20%63%2b%64%3a%65%66",
            "%61%2F%62%20%63%2B%64%3A%65%66",
            "\\u0061\\u002f\\u0062\\u0020\\u0063\\u002b\\u0064\\u003a\\u0065\\u0066",
            "\\u0061\\u002F\\u0062\\u0020\\u0063\\u002B\\u0064\\u003A\\u0065\\u0066",
        ] {
            assert!(froms.iter().any(|f| f == want), "{want} missing: {froms:?}");
        }
    }
}
