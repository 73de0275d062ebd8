//! Streaming scanner: modes, chunking invariance, bounded memory, nothing printed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::super::cursor::Cursor;
use super::super::{Blocked, PiiKind, StreamScanner, Summary, WINDOW, redact, scan};
use super::{body_with_each_kind, private_key, samples};
use crate::policy::PiiMode;

/// Streams `body` in the given chunk sizes (cycled); returns the output and the summary.
fn stream(
    mode: PiiMode,
    eager: bool,
    body: &[u8],
    sizes: &[usize],
) -> Result<(Vec<u8>, Summary), Blocked> {
    let mut scanner = StreamScanner::new(mode).unwrap();
    if eager {
        scanner = scanner.eager();
    }
    let mut out = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, later) = rest.split_at(size.clamp(1, rest.len()));
        out.extend_from_slice(&scanner.push(chunk)?);
        assert!(scanner.buffered() <= WINDOW);
        rest = later;
    }
    let (tail, summary) = scanner.finish()?;
    out.extend_from_slice(&tail);
    Ok((out, summary))
}

/// What a one-shot scan says `mode` should produce for `body`.
fn one_shot(mode: PiiMode, body: &[u8]) -> (Vec<u8>, Summary) {
    let findings = scan(body);
    let mut counts = BTreeMap::new();
    for f in &findings {
        *counts.entry(f.kind).or_insert(0) += 1;
    }
    let out = if mode == PiiMode::Redact {
        redact(body, &findings)
    } else {
        body.to_vec()
    };
    (out, Summary { counts })
}

fn assert_same_as_one_shot(mode: PiiMode, eager: bool, body: &[u8], sizes: &[usize]) {
    let got = stream(mode, eager, body, sizes).unwrap();
    let want = one_shot(mode, body);
    assert_eq!(got.1, want.1, "summary, sizes {sizes:?}, eager {eager}");
    assert!(
        got.0 == want.0,
        "output differs, sizes {sizes:?}, eager {eager}"
    );
}

#[test]
fn off_needs_no_scanner() {
    assert!(StreamScanner::new(PiiMode::Off).is_none());
}

#[test]
fn redact_replaces_findings_with_their_kind() {
    let cases = [
        (
            "mail jane.doe@example.com or call 415-555-0132.",
            "mail [REDACTED:email] or call [REDACTED:phone].",
        ),
        (
            r#"{"card":"4111 1111 1111 1111","ssn":"219-09-9999"}"#,
            r#"{"card":"[REDACTED:card_number]","ssn":"[REDACTED:ssn]"}"#,
        ),
        (
            "key=AKIAIOSFODNN7EXAMPLE&iban=DE89370400440532013000",
            "key=[REDACTED:aws_access_key]&iban=[REDACTED:iban]",
        ),
        (
            "nothing to see, build 10.0.19041.1234",
            "nothing to see, build 10.0.19041.1234",
        ),
        (
            "Bearer sluice_cred:OPENAI_KEY",
            "Bearer sluice_cred:OPENAI_KEY",
        ),
    ];
    for (body, want) in cases {
        let (out, _) = stream(PiiMode::Redact, false, body.as_bytes(), &[7]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

#[test]
fn redact_the_body_with_each_kind() {
    let body = body_with_each_kind();
    let (out, summary) = stream(PiiMode::Redact, false, body.as_bytes(), &[100]).unwrap();
    let out = String::from_utf8(out).unwrap();
    for (kind, text) in samples() {
        assert!(!out.contains(&text), "{kind} left in {out}");
        assert!(
            out.contains(&format!("[REDACTED:{kind}]")),
            "{kind} marker missing in {out}"
        );
    }
    assert!(
        out.starts_with(r#"{"model":"gpt-4o""#) && out.ends_with(r#"2024-01-15T10:30:00Z"}]}"#)
    );
    assert_eq!(summary.total(), 10);
    assert!(
        PiiKind::ALL
            .iter()
            .all(|k| summary.counts.get(k) == Some(&1))
    );
}

#[test]
fn detect_forwards_unchanged_and_counts() {
    let body = "a jane@example.com b jane@example.org c 4111 1111 1111 1111";
    let mut scanner = StreamScanner::new(PiiMode::Detect).unwrap();
    let mut out = Vec::new();
    for chunk in body.as_bytes().chunks(5) {
        let released = scanner.push(chunk).unwrap();
        assert_eq!(&released[..], chunk, "detect mode adds no latency");
        out.extend_from_slice(&released);
    }
    let (tail, summary) = scanner.finish().unwrap();
    assert!(tail.is_empty());
    assert_eq!(out, body.as_bytes());
    assert_eq!(
        serde_json::to_string(&summary).unwrap(),
        r#"{"email":2,"card_number":1}"#
    );
    let back: Summary = serde_json::from_str(r#"{"email":2,"card_number":1}"#).unwrap();
    assert_eq!(back, summary);
}

#[test]
fn block_refuses_and_releases_nothing_of_the_finding() {
    let lead = "x".repeat(3 * WINDOW);
    let body = format!("{lead} card 4111 1111 1111 1111 and then more text {lead}");
    let mut scanner = StreamScanner::new(PiiMode::Block).unwrap();
    let mut released = Vec::new();
    let mut refusal = None;
    for chunk in body.as_bytes().chunks(1000) {
        match scanner.push(chunk) {
            Ok(bytes) => released.extend_from_slice(&bytes),
            Err(blocked) => {
                refusal = Some(blocked);
                break;
            }
        }
    }
    let blocked = refusal.expect("block mode refuses a card number");
    assert_eq!(
        blocked,
        Blocked {
            kinds: vec![PiiKind::CardNumber]
        }
    );
    assert_eq!(blocked.to_string(), "PII in request body: card_number");
    let card_at = body.find("4111").unwrap();
    assert!(
        released.len() <= card_at,
        "released {} bytes, card at {card_at}",
        released.len()
    );
    assert_eq!(released, body.as_bytes()[..released.len()]);
    assert_eq!(scanner.push(b"more").unwrap_err(), blocked, "stays refused");
    assert_eq!(scanner.finish().unwrap_err(), blocked);

    let clean = stream(PiiMode::Block, false, lead.as_bytes(), &[999]).unwrap();
    assert_eq!(clean.0, lead.as_bytes());
    assert!(clean.1.is_empty());
    let two = stream(PiiMode::Block, false, b"a@example.com 219-09-9999", &[3]).unwrap_err();
    assert_eq!(two.to_string(), "PII in request body: email, ssn");
}

#[test]
fn redact_refuses_a_private_key_too_long_to_redact_whole() {
    let key = private_key(80, "\n");
    assert!(key.len() > 4096);
    let body = format!("key:\n{key}\n");
    let err = stream(PiiMode::Redact, false, body.as_bytes(), &[512]).unwrap_err();
    assert_eq!(err.kinds, vec![PiiKind::PrivateKey]);
    let (out, summary) = stream(PiiMode::Detect, false, body.as_bytes(), &[512]).unwrap();
    assert_eq!(out, body.as_bytes());
    assert_eq!(summary.counts.get(&PiiKind::PrivateKey), Some(&1));
}

#[test]
fn every_split_point_matches_the_one_shot_scan() {
    let body = body_with_each_kind();
    let body = body.as_bytes();
    for mode in [PiiMode::Redact, PiiMode::Detect] {
        let want = one_shot(mode, body);
        for split in 0..=body.len() {
            let mut scanner = StreamScanner::new(mode).unwrap().eager();
            let mut out = scanner.push(&body[..split]).unwrap().to_vec();
            out.extend_from_slice(&scanner.push(&body[split..]).unwrap());
            let (tail, summary) = scanner.finish().unwrap();
            out.extend_from_slice(&tail);
            assert_eq!(summary, want.1, "split at {split}");
            assert!(out == want.0, "output differs when split at {split}");
        }
    }
}

#[test]
fn small_chunks_match_the_one_shot_scan() {
    let body = body_with_each_kind();
    for size in 1..=24 {
        assert_same_as_one_shot(PiiMode::Redact, true, body.as_bytes(), &[size]);
    }
}

#[test]
fn window_boundaries_anywhere_match_the_one_shot_scan() {
    // The core lands at every offset relative to where the window fills.
    let core = body_with_each_kind();
    let mut body = String::new();
    let mut pad = 0;
    while body.len() < 6 * WINDOW {
        body.push_str(&"lorem ipsum ".repeat(pad % 40));
        body.push_str(&".".repeat(pad % 11));
        body.push_str(&core);
        body.push('\n');
        pad += 7;
    }
    for sizes in [
        &[1usize][..],
        &[13],
        &[1000],
        &[4096],
        &[WINDOW],
        &[100_000],
        &[3, 5000, 17, 20_000],
    ] {
        assert_same_as_one_shot(PiiMode::Redact, false, body.as_bytes(), sizes);
    }
}

#[test]
fn seeded_random_text_matches_the_one_shot_scan_and_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let (mut found, mut refused) = (BTreeMap::new(), 0);
    for round in 0..60 {
        let body = random_text(&mut rng, 3 * WINDOW);
        let sizes: Vec<usize> = (0..5).map(|_| rng.random_range(1..3000)).collect();
        let eager = round % 2 == 0;
        assert_same_as_one_shot(PiiMode::Detect, eager, &body, &sizes);
        match stream(PiiMode::Redact, eager, &body, &sizes) {
            Ok(got) => assert!(
                got == one_shot(PiiMode::Redact, &body),
                "redact output, sizes {sizes:?}"
            ),
            // A BEGIN line with no END in reach cannot be redacted whole.
            Err(blocked) => {
                assert_eq!(blocked.kinds, vec![PiiKind::PrivateKey]);
                let settled = Cursor::new().advance(&body, 0, true);
                assert!(
                    settled.resolved.iter().any(|c| c.truncated),
                    "refused without an unclosed key"
                );
                refused += 1;
            }
        }
        let _ = stream(PiiMode::Block, eager, &body, &sizes);
        for f in scan(&body) {
            *found.entry(f.kind).or_insert(0) += 1;
        }
    }
    assert!(refused < 20, "most redact runs compared, {refused} refused");
    assert!(
        PiiKind::ALL
            .iter()
            .all(|k| found.get(k).is_some_and(|&n| n >= 3)),
        "{found:?}"
    );
    for _ in 0..20 {
        let garbage: Vec<u8> = (0..rng.random_range(0..2 * WINDOW))
            .map(|_| rng.random())
            .collect();
        assert_same_as_one_shot(
            PiiMode::Redact,
            false,
            &garbage,
            &[rng.random_range(1..5000)],
        );
    }
}

/// Up to `max` bytes dense with PII fragments, whole samples, separators and stray bytes.
fn random_text(rng: &mut StdRng, max: usize) -> Vec<u8> {
    const FRAGMENTS: &[&str] = &[
        "sluice_cred:",
        "AKIA",
        "eyJhbGciOiJIUzI1NiJ9",
        ".",
        "@example.com",
        "+1 ",
        "(415) ",
        "555-0132",
        "4111 1111 ",
        "1111 1111",
        "219-09-",
        "9999",
        "GB82 WEST ",
        "1234 5698 7654 32",
        "ghp_",
        "xoxb-",
        "\\n",
        "-----END RSA PRIVATE KEY-----",
    ];
    const ALPHABET: &[u8] = b"0123456789 -.+()@/:_=abcdefxyzAKIGBW\n\"";
    let samples: Vec<String> = samples().into_iter().map(|(_, text)| text).collect();
    let len = rng.random_range(0..max);
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        match rng.random_range(0..400) {
            0 => body.extend_from_slice(b"-----BEGIN RSA PRIVATE KEY-----"),
            1..=4 => body.extend_from_slice(samples[rng.random_range(0..samples.len())].as_bytes()),
            5..=40 => {
                body.extend_from_slice(FRAGMENTS[rng.random_range(0..FRAGMENTS.len())].as_bytes())
            }
            41..=60 => body.push(rng.random()),
            _ => body.push(ALPHABET[rng.random_range(0..ALPHABET.len())]),
        }
    }
    body
}

#[test]
fn memory_stays_within_the_window_for_a_50_mb_body() {
    let mut block = String::new();
    while block.len() < 64 * 1024 {
        block.push_str("The quick brown fox jumps over the lazy dog; see build 10.0.19041.1234. ");
        block.push_str("Write to jane.doe@example.com about it.\n");
    }
    let per_block = one_shot(PiiMode::Redact, block.as_bytes());
    let blocks = 50 * 1024 * 1024 / block.len() + 1;
    let mut scanner = StreamScanner::new(PiiMode::Redact).unwrap();
    let mut released = 0usize;
    for _ in 0..blocks {
        for chunk in block.as_bytes().chunks(997) {
            released += scanner.push(chunk).unwrap().len();
            assert!(
                scanner.buffered() <= WINDOW,
                "holding {} bytes",
                scanner.buffered()
            );
        }
    }
    let (tail, summary) = scanner.finish().unwrap();
    released += tail.len();
    assert_eq!(released, per_block.0.len() * blocks);
    let emails = per_block.1.counts[&PiiKind::Email] * u32::try_from(blocks).unwrap();
    assert_eq!(summary.counts, BTreeMap::from([(PiiKind::Email, emails)]));
}

#[test]
fn debug_and_display_never_show_matched_text() {
    let body = body_with_each_kind();
    let mut scanner = StreamScanner::new(PiiMode::Redact).unwrap();
    let _ = scanner.push(body.as_bytes()).unwrap();
    let mut shown = vec![
        format!("{scanner:?}"),
        format!("{:?}", scan(body.as_bytes())),
    ];
    let (_, summary) = scanner.finish().unwrap();
    shown.push(format!("{summary:?}"));
    shown.push(serde_json::to_string(&summary).unwrap());
    let blocked = stream(PiiMode::Block, false, body.as_bytes(), &[64]).unwrap_err();
    shown.push(format!("{blocked:?}"));
    shown.push(blocked.to_string());
    for text in &shown {
        for (kind, sample) in samples() {
            let probe = &sample[..sample.len().min(12)];
            assert!(!text.contains(probe), "{kind} text in {text}");
        }
    }
}

#[test]
fn forced_settling_covers_an_open_overlap_and_keeps_going() {
    // A key block confirmed while the long-reach detectors are still behind it: open, and
    // forced closed. Later text is still scanned, and nothing is lost or counted twice.
    let key = private_key(60, "\n");
    let text = format!("{key}\n{}", "x".repeat(2000));
    let tail = " mail jane@example.com";
    let mut cursor = Cursor::new();
    let open = cursor.advance(text.as_bytes(), 0, false);
    assert!(open.resolved.is_empty() && open.safe == 0, "{open:?}");
    let forced = cursor.force();
    assert_eq!(forced.resolved.len(), 1);
    assert_eq!(forced.resolved[0].finding.kind, PiiKind::PrivateKey);
    assert_eq!(forced.resolved[0].finding.end, key.len());
    assert!(forced.safe >= key.len() && forced.keep_from <= forced.safe);
    let whole = format!("{text}{tail}");
    let rest = cursor.advance(
        &whole.as_bytes()[forced.keep_from..],
        forced.keep_from,
        true,
    );
    let kinds: Vec<PiiKind> = rest.resolved.iter().map(|c| c.finding.kind).collect();
    assert_eq!(kinds, vec![PiiKind::Email]);
    assert_eq!(rest.safe, whole.len());
}
