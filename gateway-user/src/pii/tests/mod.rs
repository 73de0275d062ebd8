//! Tests for PII scanning, and realistic samples shared by them.

mod detectors;
mod scanner;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::PiiKind;

/// A JWT like the ones APIs hand out (header `{"alg":"HS256","typ":"JWT"}`).
fn jwt() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(r#"{"sub":"1234567890","name":"Jane Doe","iat":1516239022}"#);
    format!("{header}.{payload}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
}

/// A PEM private key block with `lines` lines of 64 base64 characters (not a real key),
/// lines joined by `newline` (`"\n"`, or `"\\n"` as inside a JSON string).
fn private_key(lines: usize, newline: &str) -> String {
    let der: Vec<u8> = (0..lines * 48).map(|i| (i * 37 + 11) as u8).collect();
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(newline);
        pem.push_str(std::str::from_utf8(line).unwrap());
    }
    pem.push_str(newline);
    pem.push_str("-----END EC PRIVATE KEY-----");
    pem
}

fn github_token() -> String {
    format!("ghp_{}", "aB3dE5fG7hJ9".repeat(3))
}

fn slack_token() -> String {
    format!(
        "xoxb-{}-{}-{}",
        "2048123456789", "4096123456789", "AbCdEfGhIjKlMnOpQrStUvWx"
    )
}

/// One instance of every kind, as it appears in the body from [`body_with_each_kind`].
fn samples() -> Vec<(PiiKind, String)> {
    vec![
        (PiiKind::Email, "jane.doe@example.com".into()),
        (PiiKind::Phone, "+44 20 7946 0958".into()),
        (PiiKind::CardNumber, "4111 1111 1111 1111".into()),
        (PiiKind::Ssn, "219-09-9999".into()),
        (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32".into()),
        (PiiKind::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE".into()),
        (PiiKind::Jwt, jwt()),
        (PiiKind::GithubToken, github_token()),
        (PiiKind::SlackToken, slack_token()),
        (PiiKind::PrivateKey, private_key(3, "\\n")),
    ]
}

/// A chat-completion style JSON body holding each of [`samples`] once, in that order.
fn body_with_each_kind() -> String {
    let s: Vec<String> = samples().into_iter().map(|(_, text)| text).collect();
    format!(
        concat!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"Hi, I'm Jane "#,
            r#"({}, {}). Card {} exp 12/27, SSN {}, IBAN {}. "#,
            r#"Deploy with key {} and session {}; also gh {} and slack {}. "#,
            r#"Here is the server key:\n{}\nThanks! Build 10.0.19041.1234 at 2024-01-15T10:30:00Z"}}]}}"#,
        ),
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9]
    )
}
