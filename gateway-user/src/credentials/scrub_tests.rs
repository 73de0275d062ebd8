use bytes::Bytes;

use super::*;
use crate::credentials::test_support::cred;

const LONG: &str = "sk-live-abcdef012345678"; // 23 bytes: base64 with padding
const QUOTED: &str = "pa\"ss\\word-9";
const MID: &str = "abcdefg"; // 7 bytes: scrubbed as is, not in base64
const SHORT: &str = "abc"; // 3 bytes: never scrubbed

fn scrubber() -> Scrubber {
    Scrubber::new(&[
        cred("LONG", &["api.example.com"], LONG.as_bytes()),
        cred("QUOTED", &["api.example.com"], QUOTED.as_bytes()),
        cred("MID", &["api.example.com"], MID.as_bytes()),
        cred("SHORT", &["api.example.com"], SHORT.as_bytes()),
    ])
    .unwrap()
}

fn stream(mut body: StreamReplacer, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        out.extend_from_slice(&body.push(&input[at..cut]));
        at = cut;
    }
    out.extend_from_slice(&body.finish());
    out
}

#[test]
fn scrubs_forms_as_a_table() {
    let b64 = |v: &str| STANDARD.encode(v);
    let b64_np = |v: &str| STANDARD_NO_PAD.encode(v);
    let cases: Vec<(String, String)> = vec![
        (format!("echo {LONG}!"), "echo sluice_cred:LONG!".into()),
        (
            format!(r#"{{"echo":"{}"}}"#, r#"pa\"ss\\word-9"#),
            r#"{"echo":"sluice_cred:QUOTED"}"#.into(),
        ),
        (format!("raw {QUOTED}"), "raw sluice_cred:QUOTED".into()),
        (
            format!("b64 {}.", b64(LONG)),
            format!("b64 {}.", b64("sluice_cred:LONG")),
        ),
        (
            format!("b64 {}.", b64(QUOTED)),
            format!("b64 {}.", b64("sluice_cred:QUOTED")),
        ),
        (
            format!("jwt {}.", b64_np(LONG)),
            format!("jwt {}.", b64_np("sluice_cred:LONG")),
        ),
        (
            format!("mid {MID} {}", b64(MID)),
            format!("mid sluice_cred:MID {}", b64(MID)),
        ),
        (
            format!("short {SHORT} abcabc"),
            format!("short {SHORT} abcabc"),
        ),
    ];
    let scrubber = scrubber();
    for (input, want) in cases {
        let got = stream(scrubber.body(), input.as_bytes(), &[]);
        assert_eq!(String::from_utf8(got).unwrap(), want, "{input}");
    }
}

#[test]
fn base64_form_decodes_to_the_placeholder() {
    let input = STANDARD.encode(LONG);
    let out = stream(scrubber().body(), input.as_bytes(), &[]);
    assert_eq!(STANDARD.decode(out).unwrap(), b"sluice_cred:LONG");
}

#[test]
fn value_split_at_every_boundary() {
    let input = format!(
        "data: {{\"t\":\"{LONG}\"}}\n\ndata: {}\n\n",
        STANDARD.encode(LONG)
    );
    let input = input.as_bytes();
    let want = format!(
        "data: {{\"t\":\"sluice_cred:LONG\"}}\n\ndata: {}\n\n",
        STANDARD.encode("sluice_cred:LONG")
    );
    let scrubber = scrubber();
    for cut in 0..=input.len() {
        assert_eq!(
            stream(scrubber.body(), input, &[cut]),
            want.as_bytes(),
            "cut at {cut}"
        );
    }
    let mut body = scrubber.body();
    let mut out = Vec::new();
    for byte in input.chunks(1) {
        let piece = body.push(byte);
        assert!(
            !piece.windows(4).any(|w| w == &LONG.as_bytes()[..4]),
            "a prefix of the value left"
        );
        out.extend_from_slice(&piece);
    }
    out.extend_from_slice(&body.finish());
    assert_eq!(out, want.as_bytes());
}

#[test]
fn headers_are_scrubbed_in_place() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-echo",
        HeaderValue::from_str(&format!("Bearer {LONG}, {LONG}")).unwrap(),
    );
    headers.insert("x-short", HeaderValue::from_static("abc"));
    headers.insert("x-plain", HeaderValue::from_static("nothing"));
    assert_eq!(scrubber().scrub_headers(&mut headers), 2);
    assert_eq!(
        headers["x-echo"],
        "Bearer sluice_cred:LONG, sluice_cred:LONG"
    );
    assert_eq!(headers["x-short"], "abc");
    assert_eq!(headers["x-plain"], "nothing");
}

#[test]
fn short_values_and_no_credentials_pass_unchanged() {
    let body = "abc ab abcd";
    let only_short = Scrubber::new(&[cred("S", &["h"], b"abc")]).unwrap();
    assert_eq!(
        stream(only_short.body(), body.as_bytes(), &[]),
        body.as_bytes()
    );
    let none = Scrubber::new(&[]).unwrap();
    let mut stream = none.body();
    assert_eq!(stream.push(body.as_bytes()), Bytes::from(body));
}

#[test]
fn debug_never_shows_a_value() {
    let scrubber = scrubber();
    let mut body = scrubber.body();
    let _ = body.push(&LONG.as_bytes()[..10]);
    for text in [format!("{scrubber:?}"), format!("{body:?}")] {
        for secret in [LONG, QUOTED, MID, &LONG[..10], &STANDARD.encode(LONG)[..12]] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
