use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::credentials::Transport;
use crate::credentials::test_support::{cred, in_body};

const HOST: &str = "api.example.com";
const TRICKY: &str = "q\"uo\\te x&y=z+";
const PLAIN: &str = "sk-plain-0123456789";
const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn injector() -> Injector {
    Injector::new(
        vec![
            in_body(cred("B", &[HOST], TRICKY.as_bytes())),
            in_body(cred("P", &[HOST], PLAIN.as_bytes())),
            cred("HDR", &[HOST], b"header-only-value"),
            in_body(cred("OTHER", &["other.example"], b"other-host-value")),
            in_body(cred("BIN", &[HOST], &[0xff, 0xfe])),
        ],
        Transport::VerifiedTls,
    )
}

/// Streams `input` cut at `cuts`; returns the emitted bytes and the result of the run.
fn stream(
    rewriter: &mut BodyInjector,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Result<(), Misdirected>) {
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        match rewriter.push(&input[at..cut]) {
            Ok(piece) => out.extend_from_slice(&piece),
            Err(err) => return (out, Err(err)),
        }
        at = cut;
    }
    match rewriter.clone().finish() {
        Ok(piece) => out.extend_from_slice(&piece),
        Err(err) => return (out, Err(err)),
    }
    (out, Ok(()))
}

#[test]
fn rewrites_as_a_table() {
    let json_tricky = r#"q\"uo\\te x&y=z+"#;
    let form_tricky = "q%22uo%5Cte+x%26y%3Dz%2B";
    // (host, content type, body, Ok((rewritten, names)) | Err((name, reason)))
    type Want = Result<(String, Vec<&'static str>), (&'static str, Reason)>;
    let cases: Vec<(&str, Option<&str>, &str, Want)> = vec![
        (
            HOST,
            JSON,
            r#"{"k":"sluice_cred:B"}"#,
            Ok((format!(r#"{{"k":"{json_tricky}"}}"#), vec!["B"])),
        ),
        (
            HOST,
            Some("application/vnd.api+json; charset=utf-8"),
            r#"["sluice_cred:P","sluice_cred:B","sluice_cred:P"]"#,
            Ok((
                format!(r#"["{PLAIN}","{json_tricky}","{PLAIN}"]"#),
                vec!["P", "B"],
            )),
        ),
        (
            HOST,
            Some("Application/JSON"),
            "sluice_cred%3AB",
            Ok(("sluice_cred%3AB".into(), vec![])),
        ),
        (
            HOST,
            FORM,
            "a=1&t=sluice_cred:B&u=sluice_cred%3AP&b=2",
            Ok((format!("a=1&t={form_tricky}&u={PLAIN}&b=2"), vec!["B", "P"])),
        ),
        (
            HOST,
            Some("text/plain"),
            "no placeholder, sluice_cred: alone",
            Ok(("no placeholder, sluice_cred: alone".into(), vec![])),
        ),
        (HOST, None, "", Ok((String::new(), vec![]))),
        (
            HOST,
            Some("text/plain"),
            "x sluice_cred:P",
            Err(("P", Reason::BodyType("text/plain".into()))),
        ),
        (
            HOST,
            None,
            "sluice_cred%3AP",
            Err(("P", Reason::BodyType("none".into()))),
        ),
        (
            HOST,
            Some("multipart/form-data; boundary=x"),
            "sluice_cred:P",
            Err(("P", Reason::BodyType("multipart/form-data".into()))),
        ),
        (
            HOST,
            JSON,
            r#"{"k":"sluice_cred:NOPE"}"#,
            Err(("NOPE", Reason::UnknownName)),
        ),
        (
            HOST,
            JSON,
            r#"{"k":"sluice_cred:HDR"}"#,
            Err(("HDR", Reason::BodyNotAllowed)),
        ),
        (
            HOST,
            FORM,
            "k=sluice_cred:OTHER",
            Err(("OTHER", Reason::WrongHost)),
        ),
        (
            "evil.example",
            JSON,
            r#"{"k":"sluice_cred:P"}"#,
            Err(("P", Reason::WrongHost)),
        ),
        (
            HOST,
            JSON,
            r#"{"k":"sluice_cred:BIN"}"#,
            Err(("BIN", Reason::Unencodable("JSON string"))),
        ),
    ];
    let injector = injector();
    for (host, content_type, body, want) in cases {
        let got =
            injector.rewrite_whole(&crate::host::test_host(host), content_type, body.as_bytes());
        match (got, want) {
            (Ok((out, names)), Ok((want, want_names))) => {
                assert_eq!(String::from_utf8(out.to_vec()).unwrap(), want, "{body}");
                assert_eq!(names, want_names, "{body}");
            }
            (Err(err), Err((name, reason))) => {
                assert_eq!(
                    (err.name.as_str(), &err.reason, err.host.as_str()),
                    (name, &reason, host),
                    "{body}"
                );
            }
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn json_value_round_trips() {
    let (out, _) = injector()
        .rewrite_whole(
            &crate::host::test_host(HOST),
            JSON,
            br#"{"k":"Bearer sluice_cred:B"}"#,
        )
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["k"], format!("Bearer {TRICKY}"));
}

#[test]
fn injection_at_every_split_point() {
    let input = br#"{"a":"sluice_cred:P","b":"x sluice_cred:B","c":"sluice_cred:P"}"#;
    let (want, _) = injector()
        .rewrite_whole(&crate::host::test_host(HOST), JSON, input)
        .unwrap();
    for a in 0..=input.len() {
        for b in a..=input.len() {
            let mut rewriter = injector().body(&crate::host::test_host(HOST), JSON);
            let (out, result) = stream(&mut rewriter, input, &[a, b]);
            result.unwrap();
            assert_eq!(out, want, "cuts at {a}, {b}");
            assert_eq!(rewriter.injected(), vec!["P", "B"]);
        }
    }
    let mut rewriter = injector().body(&crate::host::test_host(HOST), JSON);
    let (out, result) = stream(&mut rewriter, input, &(1..input.len()).collect::<Vec<_>>());
    result.unwrap();
    assert_eq!(out, want);
}

#[test]
fn refusal_at_every_split_point_releases_nothing_of_the_placeholder() {
    let cases: [(&str, Option<&str>, &[u8]); 4] = [
        (
            HOST,
            JSON,
            br#"{"ok":"sluice_cred:P","bad":"sluice_cred:NOPE","after":1}"#,
        ),
        (HOST, FORM, b"ok=sluice_cred:P&bad=sluice_cred%3AHDR&z=1"),
        (HOST, Some("text/plain"), b"some text then sluice_cred:P"),
        ("evil.example", JSON, b"sluice_cred:P"),
    ];
    for (host, content_type, input) in cases {
        let start = memchr::memmem::rfind(input, b"sluice_cred").unwrap();
        let (allowed, _) = injector()
            .rewrite_whole(&crate::host::test_host(host), content_type, &input[..start])
            .unwrap();
        let mut splits: Vec<Vec<usize>> = (0..=input.len()).map(|cut| vec![cut]).collect();
        splits.push((1..input.len()).collect());
        for cuts in splits {
            let mut rewriter = injector().body(&crate::host::test_host(host), content_type);
            let (out, result) = stream(&mut rewriter, input, &cuts);
            assert!(result.is_err(), "{cuts:?}");
            // Only bytes before the refused placeholder may have left, never its own.
            assert!(
                allowed.starts_with(&out),
                "{cuts:?}: {:?}",
                String::from_utf8_lossy(&out)
            );
            if rewriter.failed.is_some() {
                assert!(rewriter.push(b"").is_err(), "stays refused");
            }
        }
    }
}

#[test]
fn a_refusal_sticks() {
    let mut rewriter = injector().body(&crate::host::test_host(HOST), JSON);
    assert_eq!(rewriter.push(b"ok ").unwrap(), Bytes::from_static(b"ok "));
    let err = rewriter.push(b"sluice_cred:NOPE ").unwrap_err();
    assert_eq!(err.reason, Reason::UnknownName);
    assert_eq!(rewriter.push(b"sluice_cred:P").unwrap_err(), err);
    assert_eq!(rewriter.finish().unwrap_err(), err);
}

#[test]
fn randomized_streaming_equals_whole_and_reference() {
    let pattern = regex::Regex::new(r"sluice_cred:([A-Za-z0-9_.\-]+)").unwrap();
    let fragments = [
        "x",
        " ",
        "\"",
        "sluice_cred:P",
        "sluice_cred:B",
        "sluice_cre",
        "sluice_cred:",
        "P",
        ",",
        "sluice_cred",
    ];
    let mut rng = StdRng::seed_from_u64(0xb0d1);
    let injector = injector();
    for round in 0..1500 {
        let input: String = (0..rng.random_range(0..24))
            .map(|_| fragments[rng.random_range(0..fragments.len())])
            .collect();
        let reference = pattern.replace_all(&input, |caps: &regex::Captures<'_>| match &caps[1] {
            "P" => PLAIN.to_owned(),
            "B" => r#"q\"uo\\te x&y=z+"#.to_owned(),
            other => format!("<unknown {other}>"),
        });
        let whole = injector.rewrite_whole(&crate::host::test_host(HOST), JSON, input.as_bytes());
        let mut cuts: Vec<usize> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..=input.len()))
            .collect();
        cuts.sort_unstable();
        let (out, result) = stream(
            &mut injector.body(&crate::host::test_host(HOST), JSON),
            input.as_bytes(),
            &cuts,
        );
        if reference.contains("<unknown") {
            assert!(
                whole.is_err() && result.is_err(),
                "round {round}: {input:?}"
            );
        } else {
            result.unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                reference,
                "round {round}: {input:?} {cuts:?}"
            );
            assert_eq!(whole.unwrap().0, reference.as_bytes(), "round {round}");
        }
    }
}

#[test]
fn debug_never_shows_a_value() {
    let injector = injector();
    let mut rewriter = injector.body(&crate::host::test_host(HOST), JSON);
    let _ = rewriter
        .push(br#"{"k":"sluice_cred:P","m":"sluice_cred:B"#)
        .unwrap();
    let err = injector
        .rewrite_whole(
            &crate::host::test_host("evil.example"),
            JSON,
            b"sluice_cred:P",
        )
        .unwrap_err();
    for text in [
        format!("{rewriter:?}"),
        format!("{injector:?}"),
        format!("{err:?} {err}"),
    ] {
        for secret in [PLAIN, TRICKY, "header-only-value", "other-host-value"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
