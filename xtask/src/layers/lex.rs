//! Just enough of a Rust lexer to find module paths: identifiers, `::`, braces and string
//! literals, with comments, character literals and lifetimes skipped.
//!
//! Paths written in comments (intra-doc links such as ``[`super::scan`]``) or in strings are
//! not imports, so they never reach the token stream.

/// One token of a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword (`crate`, `super`, `mod`, `use`, a raw `r#x` without `r#`).
    Ident(String),
    /// `::`.
    PathSep,
    /// A string literal's text (escapes left as written), for `#[path = "…"]`.
    Str(String),
    /// Any other punctuation character (`{`, `}`, `,`, `*`, `;`, `#`, `[`, `=`, `$`, …).
    Punct(char),
}

/// The tokens of `src`; numbers and lifetimes come out as identifiers, which is harmless.
pub fn tokens(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
        } else if c == '"' {
            let (text, end) = string(&chars, i + 1);
            out.push(Tok::Str(text));
            i = end;
        } else if c == '\'' {
            i = skip_quote(&chars, i);
        } else if c == ':' && next == Some(':') {
            out.push(Tok::PathSep);
            i += 2;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&c| c.is_alphanumeric() || c == '_')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            i = literal_after_prefix(&chars, &word, i, &mut out);
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Handles what may follow a word: `b"…"`, `b'…'`, `r"…"`, `br#"…"#`, `r#ident`, or nothing
/// special (the word is an identifier). Returns where lexing resumes.
fn literal_after_prefix(chars: &[char], word: &str, at: usize, out: &mut Vec<Tok>) -> usize {
    let next = chars.get(at).copied();
    match (word, next) {
        ("b" | "c", Some('"')) => {
            let (text, end) = string(chars, at + 1);
            out.push(Tok::Str(text));
            end
        }
        ("b", Some('\'')) => skip_quote(chars, at),
        ("r" | "br" | "cr", Some('"' | '#')) => {
            let hashes = chars[at..].iter().take_while(|&&c| c == '#').count();
            if chars.get(at + hashes) == Some(&'"') {
                let (text, end) = raw_string(chars, at + hashes + 1, hashes);
                out.push(Tok::Str(text));
                end
            } else {
                // `r#ident`: lex the identifier after `#` on the next turn.
                at + hashes
            }
        }
        _ => {
            out.push(Tok::Ident(word.to_owned()));
            at
        }
    }
}

/// Skips a (nested) block comment starting at `at`; returns the index after it.
fn skip_block_comment(chars: &[char], at: usize) -> usize {
    let mut depth = 0usize;
    let mut i = at;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied()) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// A string body from `at` (after the opening quote) to its closing quote.
fn string(chars: &[char], at: usize) -> (String, usize) {
    let mut i = at;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 2,
            '"' => return (chars[at..i].iter().collect(), i + 1),
            _ => i += 1,
        }
    }
    (chars[at.min(chars.len())..].iter().collect(), chars.len())
}

/// A raw string body from `at` to a quote followed by `hashes` hashes.
fn raw_string(chars: &[char], at: usize, hashes: usize) -> (String, usize) {
    let mut i = at;
    while i < chars.len() {
        let closes = chars[i] == '"'
            && chars.len() >= i + 1 + hashes
            && chars[i + 1..i + 1 + hashes].iter().all(|&c| c == '#');
        if closes {
            return (chars[at..i].iter().collect(), i + 1 + hashes);
        }
        i += 1;
    }
    (chars[at.min(chars.len())..].iter().collect(), chars.len())
}

/// Skips a character literal (`'x'`, `'\n'`, `'\u{1F600}'`) or just the quote of a lifetime
/// (`'a`, whose name is then lexed as an identifier).
fn skip_quote(chars: &[char], at: usize) -> usize {
    match (chars.get(at + 1), chars.get(at + 2)) {
        (Some('\\'), _) => {
            // Past the backslash and the escaped character (which may be a quote).
            let mut i = at + 3;
            while chars.get(i).is_some_and(|&c| c != '\'') {
                i += 1;
            }
            i + 1
        }
        (Some(_), Some('\'')) => at + 3,
        _ => at + 1,
    }
}
