//! Detector tables: each kind found in realistic text, near misses refused.

use super::super::validate::{iban_checksum, iban_length, known_issuer, luhn};
use super::super::{Finding, PiiKind, scan};
use super::{body_with_each_kind, jwt, private_key, samples};

/// The kinds and matched texts `scan` reports for `text`.
fn found(text: &str) -> Vec<(PiiKind, &str)> {
    scan(text.as_bytes())
        .iter()
        .map(|f| (f.kind, &text[f.start..f.end]))
        .collect()
}

#[test]
fn every_pattern_compiles_and_every_kind_has_a_name() {
    assert!(scan(b"warm up every detector's regex").is_empty());
    for kind in PiiKind::ALL {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
        assert_eq!(serde_json::from_str::<PiiKind>(&json).unwrap(), kind);
        assert_eq!(kind.to_string(), kind.as_str());
    }
}

#[test]
fn finds_each_kind_in_realistic_text() {
    let jwt = jwt();
    let pem = private_key(5, "\n");
    let pem_json = private_key(40, "\\n");
    let cases: Vec<(PiiKind, String, &str)> = vec![
        (
            PiiKind::Email,
            "contact: alice.smith+news@mail.example.co.uk, thanks".into(),
            "alice.smith+news@mail.example.co.uk",
        ),
        (
            PiiKind::Email,
            r#"{"to":"bob@example.org"}"#.into(),
            "bob@example.org",
        ),
        (
            PiiKind::Phone,
            "call +1 (415) 555-0132 today".into(),
            "+1 (415) 555-0132",
        ),
        (PiiKind::Phone, "tel:+14155550132".into(), "+14155550132"),
        (
            PiiKind::Phone,
            "office (415) 555-0132.".into(),
            "(415) 555-0132",
        ),
        (
            PiiKind::Phone,
            "cell 415-555-0132, home".into(),
            "415-555-0132",
        ),
        (
            PiiKind::Phone,
            "Paris +33 1 23 45 67 89 ok".into(),
            "+33 1 23 45 67 89",
        ),
        (
            PiiKind::CardNumber,
            "card 4111 1111 1111 1111 exp 12/27".into(),
            "4111 1111 1111 1111",
        ),
        (
            PiiKind::CardNumber,
            "num=5555-5555-5555-4444&cvc=123".into(),
            "5555-5555-5555-4444",
        ),
        (
            PiiKind::CardNumber,
            "amex 378282246310005.".into(),
            "378282246310005",
        ),
        (
            PiiKind::CardNumber,
            r#""pan":"6011111111111117""#.into(),
            "6011111111111117",
        ),
        (
            PiiKind::CardNumber,
            "jcb 3530 1113 3330 0000 12/25".into(),
            "3530 1113 3330 0000",
        ),
        (PiiKind::Ssn, "SSN: 219-09-9999.".into(), "219-09-9999"),
        (
            PiiKind::Ssn,
            r#"{"ssn":"078-05-1120"}"#.into(),
            "078-05-1120",
        ),
        (
            PiiKind::Iban,
            "IBAN GB82 WEST 1234 5698 7654 32 please".into(),
            "GB82 WEST 1234 5698 7654 32",
        ),
        (
            PiiKind::Iban,
            "to DE89370400440532013000.".into(),
            "DE89370400440532013000",
        ),
        (
            PiiKind::Iban,
            "FR1420041010050500013M02606".into(),
            "FR1420041010050500013M02606",
        ),
        (
            PiiKind::Iban,
            "nl: NL91ABNA0417164300 x".into(),
            "NL91ABNA0417164300",
        ),
        (
            PiiKind::AwsAccessKey,
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n".into(),
            "AKIAIOSFODNN7EXAMPLE",
        ),
        (
            PiiKind::AwsAccessKey,
            r#""ASIAY34FZKBOKMUTVV7A","#.into(),
            "ASIAY34FZKBOKMUTVV7A",
        ),
        (PiiKind::PrivateKey, format!("key:\n{pem}\n"), pem.as_str()),
        (
            PiiKind::PrivateKey,
            format!(r#"{{"pem":"{pem_json}"}}"#),
            pem_json.as_str(),
        ),
        (
            PiiKind::Jwt,
            format!("Authorization: Bearer {jwt}\r\n"),
            jwt.as_str(),
        ),
        (
            PiiKind::GithubToken,
            format!("GH_TOKEN={}", super::github_token()),
            "",
        ),
        (
            PiiKind::SlackToken,
            format!("token={}&x=1", super::slack_token()),
            "",
        ),
    ];
    for (kind, text, want) in &cases {
        let got = found(text);
        let want = if want.is_empty() {
            text.split('=').nth(1).unwrap().split('&').next().unwrap()
        } else {
            want
        };
        assert_eq!(got, vec![(*kind, want)], "in {text:?}");
    }
}

#[test]
fn refuses_near_misses() {
    let no_alg = format!(
        "{}.{}.c2lnbmF0dXJl",
        base64_url(r#"{"typ":"JWT","kid":"k1"}"#),
        base64_url(r#"{"sub":"1"}"#)
    );
    let cases: Vec<String> = vec![
        // Cards: Luhn failure, unknown issuer, inside longer digit runs, too short.
        "card 4111 1111 1111 1112".into(),
        "card 0000 0000 0000 0000".into(),
        "order 94111111111111111 shipped".into(),
        "id 123456789012345678901234".into(),
        "ref 4111-1111-1111-1111-2222".into(),
        "4111 1111 1111".into(),
        // SSNs: invalid area, group or serial; part of longer numbers.
        "000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000".into(),
        "1-123-45-6789-0".into(),
        // IBANs: bad checksum, wrong length, unknown country, lowercase run-on.
        "GB82 WEST 1234 5698 7654 33".into(),
        "GB82WEST123456987654".into(),
        "ZZ82WEST12345698765432".into(),
        "DE89370400440532013000X".into(),
        // Phones: versions, timestamps, long ids, invalid NANP, short E.164.
        "version 10.0.19041.1234 and 1.2.3".into(),
        "at 2024-01-15T10:30:00+05:30 or 2024-01-15 10:30:00".into(),
        "ts=1700000000123 id=41555501329876".into(),
        "uuid 550e8400-e29b-41d4-a716-446655440000".into(),
        "123-456-7890 and 415-555-01320 and v2.415.555.0132".into(),
        "+1234567 or +012345678".into(),
        // E-mails: image names, SSH remotes, no TLD.
        "icon@2x.png git@github.com:org/repo.git user@localhost @handle".into(),
        // AWS: too short, too long, lowercase.
        "AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX akiaiosfodnn7example".into(),
        // Keys: public keys and certificates.
        "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----".into(),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into(),
        // JWT-shaped: header without alg, header not JSON.
        no_alg,
        "eyJub3RfanNvbiBhdCBhbGw.eyJzdWIiOiIxIn0.c2ln".into(),
        // Tokens: wrong length or prefix.
        "ghp_short ghx_aB3dE5fG7hJ9aB3dE5fG7hJ9aB3dE5fG7hJ9 xoxz-123456789012".into(),
    ];
    for text in &cases {
        assert_eq!(found(text), vec![], "in {text:?}");
    }
}

#[test]
fn placeholders_are_never_findings() {
    let cases = [
        "Authorization: Bearer sluice_cred:OPENAI_KEY",
        "aws_key=sluice_cred:AKIAIOSFODNN7EXAMPLE",
        "phone=sluice_cred:415-555-0132",
        r#"{"card":"sluice_cred:4111111111111111"}"#,
    ];
    for text in cases {
        assert_eq!(found(text), vec![], "in {text:?}");
    }
    // A placeholder does not shield what extends past it.
    assert_eq!(
        found("sluice_cred:jane@example.com"),
        vec![(PiiKind::Email, "jane@example.com")]
    );
}

#[test]
fn overlaps_resolve_to_one_finding() {
    // A card number as an e-mail's local part: one finding, the longer kind, both covered.
    let text = "x 4111111111111111@example.com y";
    assert_eq!(
        found(text),
        vec![(PiiKind::Email, "4111111111111111@example.com")]
    );
    // An AWS key id inside a private key block is part of the block.
    let text =
        "-----BEGIN RSA PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLE\n-----END RSA PRIVATE KEY-----";
    assert_eq!(found(text), vec![(PiiKind::PrivateKey, text)]);
}

#[test]
fn body_with_each_kind_finds_each_once_in_order() {
    let body = body_with_each_kind();
    let want: Vec<(PiiKind, String)> = samples();
    let got: Vec<(PiiKind, String)> = found(&body)
        .into_iter()
        .map(|(k, t)| (k, t.to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn checksum_tables() {
    let digits = |s: &str| -> Vec<u8> { s.bytes().map(|b| b - b'0').collect() };
    for (number, ok) in [
        ("4111111111111111", true),
        ("4111111111111112", false),
        ("79927398713", true),
        ("0", true),
    ] {
        assert_eq!(luhn(&digits(number)), ok, "{number}");
    }
    let issuers = [
        ("4111111111111", true),
        ("4111111111111111", true),
        ("41111111111111", false),
        ("5105105105105100", true),
        ("2223000048400011", true),
        ("371449635398431", true),
        ("37144963539843", false),
        ("6011000990139424", true),
        ("3566002020360505", true),
        ("30569309025904", true),
        ("6200000000000005", true),
        ("1234567812345670", false),
        ("9111111111111111", false),
    ];
    for (number, ok) in issuers {
        assert_eq!(known_issuer(&digits(number)), ok, "{number}");
    }
    for (iban, ok) in [
        ("GB82WEST12345698765432", true),
        ("GB82WEST12345698765433", false),
        ("DE89370400440532013000", true),
        ("NO9386011117947", true),
        ("MT84MALT011000012345MTLCAST001S", true),
    ] {
        assert_eq!(iban_checksum(iban.as_bytes()), ok, "{iban}");
        assert_eq!(
            iban_length(&iban.as_bytes()[..2]),
            Some(iban.len()),
            "{iban}"
        );
    }
}

#[test]
fn iban_length_table_edges() {
    for (country, len) in [
        (&b"AD"[..], Some(24)),
        (b"XK", Some(20)),
        (b"NO", Some(15)),
        (b"MT", Some(31)),
        (b"ZZ", None),
        (b"D", None),
    ] {
        assert_eq!(
            iban_length(country),
            len,
            "{}",
            String::from_utf8_lossy(country)
        );
    }
}

#[test]
fn findings_carry_offsets_only() {
    let text = "mail jane.doe@example.com now";
    let findings = scan(text.as_bytes());
    assert_eq!(
        findings,
        vec![Finding {
            kind: PiiKind::Email,
            start: 5,
            end: 25
        }]
    );
    let debug = format!("{findings:?}");
    assert!(!debug.contains("jane"), "{debug}");
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
