//! How a value is written where a placeholder stood: percent-encoded for a query,
//! form-encoded for a form body, JSON-string-escaped for a JSON body.
//!
//! Each writes straight into the output buffer so no extra copy of a secret is left behind.

/// The value cannot be written in this encoding (JSON needs UTF-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unencodable;

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Za-z0-9-._~`), so the
/// value is one opaque query component.
pub(crate) fn percent(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            push_hex(b, out);
        }
    }
}

/// `application/x-www-form-urlencoded` encoding: alphanumerics and `*-._` as they are,
/// space as `+`, everything else `%XX`.
pub(crate) fn form(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(b);
        } else if b == b' ' {
            out.push(b'+');
        } else {
            push_hex(b, out);
        }
    }
}

/// The inside of a JSON string (no quotes): `"` and `\` escaped, control characters as
/// short escapes or `\u00XX`.
pub(crate) fn json(value: &[u8], out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let text = std::str::from_utf8(value).map_err(|_| Unencodable)?;
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(b: u8, out: &mut Vec<u8>) {
    out.push(b'%');
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_a_table() {
        type Encoder = fn(&[u8], &mut Vec<u8>);
        let cases: [(Encoder, &[u8], &str); 6] = [
            (percent, b"a-b._~Z9", "a-b._~Z9"),
            (percent, b"a b&c=d/+%:", "a%20b%26c%3Dd%2F%2B%25%3A"),
            (percent, &[0xff, 0x00], "%FF%00"),
            (form, b"a b*c~", "a+b*c%7E"),
            (form, b"&=+%", "%26%3D%2B%25"),
            (form, b"", ""),
        ];
        for (encode, value, want) in cases {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{value:?}");
        }
    }

    #[test]
    fn json_escapes_like_serde() {
        for value in [
            "plain",
            "q\"uo\\te",
            "tab\tnl\n\u{1}\u{1f}\u{8}\u{c}",
            "é/ü€",
        ] {
            let mut out = Vec::new();
            json(value.as_bytes(), &mut out).unwrap();
            let quoted = format!("\"{}\"", String::from_utf8(out).unwrap());
            let back: String = serde_json::from_str(&quoted).unwrap();
            assert_eq!(back, value);
        }
        assert_eq!(json(&[0xff], &mut Vec::new()), Err(Unencodable));
    }
}
