//! The placeholder grammar, as a pure scanner over bytes that may still be growing.
//!
//! A placeholder is `sluice_cred:` followed by `[A-Za-z0-9_.-]{1,64}`, longest match. In
//! query strings and form bodies the colon may also arrive percent-encoded (`%3A`, `%3a`),
//! because URL and form encoders escape it. A run of more than 64 name characters is still
//! reported (as too long) so the caller refuses it instead of passing it on.

use super::spec::PLACEHOLDER_PREFIX;

/// Longest credential name a placeholder carries.
pub const NAME_MAX: usize = 64;

/// `sluice_cred`: the prefix without its colon, which may be encoded.
const STEM: &[u8] = PLACEHOLDER_PREFIX
    .as_bytes()
    .split_at(PLACEHOLDER_PREFIX.len() - 1)
    .0;

/// One placeholder found in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found<'a> {
    /// Offset of the `s` of `sluice_cred`.
    pub start: usize,
    /// Offset just past the name (or past the first 65 name bytes when too long).
    pub end: usize,
    /// The name bytes (at most 64; ASCII by construction).
    pub name: &'a [u8],
    /// The name run went past 64 characters.
    pub too_long: bool,
}

impl Found<'_> {
    /// The name as text, for errors and the list of injected names.
    pub fn name_string(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

/// What the scanner saw from a position on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hit<'a> {
    /// A whole placeholder.
    Complete(Found<'a>),
    /// Something starting at `start` may still become a placeholder once more bytes arrive.
    Incomplete { start: usize },
}

/// The first placeholder in `buf` at or after `from`.
///
/// `encoded` also accepts `%3A` for the colon. With `eof` false, a candidate running into
/// the end of `buf` is `Incomplete` (the caller holds it back); with `eof` true the buffer is
/// all there is. `None` means no placeholder starts in `buf[from..]`, except possibly inside
/// its last [`partial_stem`] bytes when `eof` is false.
pub(crate) fn next(buf: &[u8], from: usize, encoded: bool, eof: bool) -> Option<Hit<'_>> {
    let mut at = from;
    while at < buf.len() {
        let start = at + memchr::memmem::find(buf.get(at..)?, STEM)?;
        at = start + 1;
        let after = start + STEM.len();
        let sep = match separator(buf.get(after..)?, encoded) {
            Sep::Is(len) => len,
            Sep::NeedMore if !eof => return Some(Hit::Incomplete { start }),
            Sep::NeedMore | Sep::Not => continue,
        };
        let name_start = after + sep;
        let rest = buf.get(name_start..)?;
        let run = rest
            .iter()
            .take(NAME_MAX + 1)
            .take_while(|b| is_name_byte(**b))
            .count();
        let settled = run > NAME_MAX || run < rest.len() || eof;
        if !settled {
            return Some(Hit::Incomplete { start });
        }
        if run == 0 {
            continue;
        }
        return Some(Hit::Complete(Found {
            start,
            end: name_start + run,
            name: rest.get(..run.min(NAME_MAX))?,
            too_long: run > NAME_MAX,
        }));
    }
    None
}

/// How many bytes at the end of `buf` could be the beginning of a placeholder's stem; a
/// streaming caller holds them back until the next chunk tells.
pub(crate) fn partial_stem(buf: &[u8]) -> usize {
    (1..STEM.len().min(buf.len() + 1))
        .rev()
        .find(|len| buf.ends_with(STEM.get(..*len).unwrap_or_default()))
        .unwrap_or(0)
}

/// Whether a byte may appear in a credential name.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

enum Sep {
    Is(usize),
    NeedMore,
    Not,
}

fn separator(bytes: &[u8], encoded: bool) -> Sep {
    match bytes {
        [] => Sep::NeedMore,
        [b':', ..] => Sep::Is(1),
        [b'%', ..] if encoded => match bytes.get(1..3) {
            Some(b"3A" | b"3a") => Sep::Is(3),
            Some(_) => Sep::Not,
            None if bytes.get(1).is_none_or(|b| *b == b'3') => Sep::NeedMore,
            None => Sep::Not,
        },
        _ => Sep::Not,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(start: usize, end: usize, name: &str) -> Option<Hit<'_>> {
        Some(Hit::Complete(Found {
            start,
            end,
            name: name.as_bytes(),
            too_long: false,
        }))
    }

    #[test]
    fn stem_matches_the_shared_prefix() {
        assert_eq!([STEM, b":"].concat(), PLACEHOLDER_PREFIX.as_bytes());
    }

    #[test]
    fn scans_as_a_table() {
        let long = format!("sluice_cred:{}", "a".repeat(65));
        let exact = format!("sluice_cred:{}", "a".repeat(64));
        // (input, encoded, eof, expected)
        let cases: Vec<(&str, bool, bool, Option<Hit<'_>>)> = vec![
            (
                "Bearer sluice_cred:OPENAI",
                false,
                true,
                complete(7, 25, "OPENAI"),
            ),
            (
                "Bearer sluice_cred:OPENAI",
                false,
                false,
                Some(Hit::Incomplete { start: 7 }),
            ),
            (
                "sluice_cred:a.b-c_9 x",
                false,
                false,
                complete(0, 19, "a.b-c_9"),
            ),
            ("sluice_cred:", false, true, None),
            (
                "sluice_cred:",
                false,
                false,
                Some(Hit::Incomplete { start: 0 }),
            ),
            ("sluice_cred: x", false, false, None),
            (
                "sluice_cred",
                false,
                false,
                Some(Hit::Incomplete { start: 0 }),
            ),
            (
                "sluice_credX sluice_cred:K;",
                false,
                false,
                complete(13, 26, "K"),
            ),
            ("sluice_cred%3AK&", false, false, None),
            ("sluice_cred%3AK&", true, false, complete(0, 15, "K")),
            ("sluice_cred%3aK&", true, false, complete(0, 15, "K")),
            (
                "sluice_cred%3",
                true,
                false,
                Some(Hit::Incomplete { start: 0 }),
            ),
            (
                "sluice_cred%",
                true,
                false,
                Some(Hit::Incomplete { start: 0 }),
            ),
            ("sluice_cred%4", true, false, None),
            ("sluice_cred%3", true, true, None),
            ("SLUICE_CRED:K ", false, false, None),
            (&exact, false, true, complete(0, 76, &exact[12..])),
            (&exact, false, false, Some(Hit::Incomplete { start: 0 })),
        ];
        for (input, encoded, eof, want) in cases {
            assert_eq!(next(input.as_bytes(), 0, encoded, eof), want, "{input:?}");
        }
        let hit = next(long.as_bytes(), 0, false, false);
        let Some(Hit::Complete(found)) = hit else {
            panic!("{hit:?}")
        };
        assert!(found.too_long);
        assert_eq!(found.name.len(), NAME_MAX);
    }

    #[test]
    fn from_skips_earlier_placeholders() {
        let buf = b"sluice_cred:A sluice_cred:B";
        assert_eq!(next(buf, 1, false, true), complete(14, 27, "B"));
        assert_eq!(next(buf, 27, false, true), None);
    }

    #[test]
    fn partial_stem_is_a_proper_prefix_at_the_end() {
        for (input, want) in [
            ("", 0),
            ("abc", 0),
            ("xs", 1),
            ("sluice_cre", 10),
            ("x sluice_", 7),
            ("sluice_cred", 0),
            ("ss", 1),
        ] {
            assert_eq!(partial_stem(input.as_bytes()), want, "{input:?}");
        }
    }
}
