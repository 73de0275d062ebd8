use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
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
        // A whole message (WebSocket) gets the same treatment.
        let whole = scrubber.scrub(input.as_bytes());
        assert_eq!(String::from_utf8(whole.to_vec()).unwrap(), want, "{input}");
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

/// Has `"`, `\`, `+`, `/`, `?`, `=`, `~` and a space, so every encoding differs from the
/// others.
const TRICKY: &str = "sk/live+key?= 0123\"456\\789~x>>!";

fn percent_lower(v: &str) -> String {
    let mut out = Vec::new();
    super::super::encode::percent(v.as_bytes(), &mut out);
    let mut text = String::from_utf8(out).unwrap();
    let mut lowered = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find('%') {
        lowered.push_str(&rest[..at]);
        lowered.push('%');
        lowered.push_str(&rest[at + 1..at + 3].to_ascii_lowercase());
        rest = &rest[at + 3..];
    }
    lowered.push_str(rest);
    text = lowered;
    text
}

fn encoded(v: &str, f: fn(&[u8], &mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(v.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

fn hex(v: &str) -> String {
    v.bytes().map(|b| format!("{b:02x}")).collect()
}

/// (form name, how the value looks, how its placeholder must look after scrubbing).
fn echo_forms() -> Vec<(&'static str, String, String)> {
    let p = "sluice_cred:TRICKY";
    let json = |v: &str| {
        let quoted = serde_json::to_string(v).unwrap();
        quoted[1..quoted.len() - 1].to_owned()
    };
    vec![
        ("as is", TRICKY.into(), p.into()),
        ("json", json(TRICKY), json(p)),
        (
            "json slashes",
            json(TRICKY).replace('/', "\\/"),
            json(p).replace('/', "\\/"),
        ),
        (
            "percent",
            encoded(TRICKY, super::super::encode::percent),
            encoded(p, super::super::encode::percent),
        ),
        ("percent lower", percent_lower(TRICKY), percent_lower(p)),
        (
            "form",
            encoded(TRICKY, super::super::encode::form),
            encoded(p, super::super::encode::form),
        ),
        ("hex", hex(TRICKY), hex(p)),
        ("HEX", hex(TRICKY).to_uppercase(), hex(p).to_uppercase()),
        ("base64", STANDARD.encode(TRICKY), STANDARD.encode(p)),
        (
            "base64 unpadded",
            STANDARD_NO_PAD.encode(TRICKY),
            STANDARD_NO_PAD.encode(p),
        ),
        ("base64url", URL_SAFE.encode(TRICKY), URL_SAFE.encode(p)),
        (
            "base64url unpadded",
            URL_SAFE_NO_PAD.encode(TRICKY),
            URL_SAFE_NO_PAD.encode(p),
        ),
    ]
}

#[test]
fn every_form_is_scrubbed_at_every_split_point() {
    let scrubber =
        Scrubber::new(&[cred("TRICKY", &["api.example.com"], TRICKY.as_bytes())]).unwrap();
    let forms = echo_forms();
    for (i, (name, form, _)) in forms.iter().enumerate() {
        for (other, earlier, _) in &forms[..i] {
            assert_ne!(
                form, earlier,
                "{name} equals {other}: the test proves nothing"
            );
        }
    }
    for (name, form, placeholder) in forms {
        let input = format!("<{form}>");
        let want = format!("<{placeholder}>");
        for cut in 0..=input.len() {
            let got = stream(scrubber.body(), input.as_bytes(), &[cut]);
            assert_eq!(String::from_utf8_lossy(&got), want, "{name}, cut at {cut}");
        }
        let mut body = scrubber.body();
        let mut out = Vec::new();
        for byte in input.as_bytes().chunks(1) {
            out.extend_from_slice(&body.push(byte));
        }
        out.extend_from_slice(&body.finish());
        assert_eq!(String::from_utf8_lossy(&out), want, "{name}, byte by byte");
        let mut headers = HeaderMap::new();
        headers.insert("x-echo", HeaderValue::from_str(&input).unwrap());
        assert_eq!(
            scrubber.scrub_headers(&mut headers),
            1,
            "{name} in a header"
        );
        assert_eq!(headers["x-echo"], want.as_str(), "{name} in a header");
    }
}

#[test]
fn base64_inside_a_longer_string_is_scrubbed_at_all_three_alignments() {
    let scrubber =
        Scrubber::new(&[cred("TRICKY", &["api.example.com"], TRICKY.as_bytes())]).unwrap();
    for prefix in ["u:", "us:", "use:", "user:"] {
        for suffix in ["", "!", "!!", "!!!"] {
            let blob = format!("{prefix}{TRICKY}{suffix}");
            for engine in [&STANDARD, &URL_SAFE] {
                let input = engine.encode(&blob);
                for cut in 0..=input.len() {
                    let got = stream(scrubber.body(), input.as_bytes(), &[cut]);
                    assert_ne!(got, input.as_bytes(), "{blob}, cut {cut}");
                    // Whatever the output decodes to, no 6-byte run of the value is in it.
                    let decoded = decode_lossy(engine, &got);
                    for w in TRICKY.as_bytes().windows(6) {
                        assert!(
                            !decoded.windows(6).any(|d| d == w),
                            "{blob}: {:?} survives in {:?}",
                            String::from_utf8_lossy(w),
                            String::from_utf8_lossy(&decoded)
                        );
                    }
                }
            }
        }
    }
}

/// Decodes base64 four characters at a time, skipping groups that do not decode.
fn decode_lossy(engine: &base64::engine::GeneralPurpose, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for start in 0..4 {
        for group in text.get(start..).unwrap_or_default().chunks(4) {
            let padded = format!("{:=<4}", String::from_utf8_lossy(group));
            if let Ok(bytes) = engine.decode(padded) {
                out.extend(bytes);
            }
        }
        out.push(0);
    }
    out
}

#[test]
fn values_of_every_credential_are_scrubbed_whatever_host_they_are_bound_to() {
    let scrubber = Scrubber::new(&[
        cred("A", &["a.example"], b"value-of-a-123"),
        cred("B", &["b.example"], b"value-of-b-456"),
    ])
    .unwrap();
    let out = stream(
        scrubber.body(),
        b"value-of-a-123 and value-of-b-456",
        &[7, 20],
    );
    assert_eq!(out, b"sluice_cred:A and sluice_cred:B");
}
