//! Signs of data smuggled in query names, for the audit record: DNS cannot be closed under an
//! allow-all policy, only capped ([`super::budget`]) and made visible.
//!
//! Pure heuristics over the normalized name; a flag never changes the answer.

/// A label longer than this is flagged `long-label` (ordinary host labels are short; encoded
/// payloads fill labels up to the 63-byte limit).
pub const LONG_LABEL: usize = 40;
/// Labels at least this long are checked for entropy.
pub const ENTROPY_MIN_LEN: usize = 16;
/// Shannon entropy (bits per character) from which a label is flagged `high-entropy-label`:
/// hex, base32 and base64 payloads reach 3.8 and more, hyphenated words stay near 3.5.
pub const ENTROPY_BITS: f64 = 3.7;

/// The exfiltration flags of `name` (lowercase, no trailing dot), each at most once, in a
/// fixed order: `long-label`, `high-entropy-label`.
pub fn flags(name: &str) -> Vec<String> {
    let mut long = false;
    let mut random = false;
    for label in name.split('.') {
        long |= label.len() > LONG_LABEL;
        random |= label.len() >= ENTROPY_MIN_LEN && entropy(label) >= ENTROPY_BITS;
    }
    let mut out = Vec::new();
    if long {
        out.push("long-label".to_owned());
    }
    if random {
        out.push("high-entropy-label".to_owned());
    }
    out
}

/// Shannon entropy of `text`'s bytes, in bits per byte.
fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = text.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_table() {
        let long = "a".repeat(41);
        let cases: Vec<(String, &[&str])> = vec![
            ("api.openai.com".into(), &[]),
            ("login-microsoftonline.example.test".into(), &[]),
            ("accounts-googleusercontent.example.test".into(), &[]),
            ("api-inference-huggingface.example.test".into(), &[]),
            ("ec2-198-51-100-10.compute.example.test".into(), &[]),
            (format!("{long}.example.test"), &["long-label"]),
            (
                "a3f9c2e17b4d8e6f0a1c.evil.test".into(),
                &["high-entropy-label"],
            ),
            (
                "mzxw6ytboi2gk3tfmzxw6.evil.test".into(),
                &["high-entropy-label"],
            ),
            (
                "dxnlcjpzzwnyzxqtdg9rzw4dxnlcjpzzwnyzxqtdg9rzw4dxnlcjpzzw.evil.test".into(),
                &["long-label", "high-entropy-label"],
            ),
        ];
        for (name, want) in cases {
            assert_eq!(flags(&name), want, "{name}");
        }
    }
}
