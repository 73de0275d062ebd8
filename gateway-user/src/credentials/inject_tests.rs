use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::credentials::test_support::{cred, in_headers, in_query};

const OPENAI: &str = "sk-openai-123";
const ORG: &str = "org-42";
const GH: &str = "ghp_abcdef";
const QV: &str = "a b&c/=";

fn injector() -> Injector {
    Injector::new(
        vec![
            cred("OPENAI", &["api.openai.com"], OPENAI.as_bytes()),
            cred("ORG", &["api.openai.com"], ORG.as_bytes()),
            in_headers(
                cred(
                    "GH",
                    &["api.github.com", "uploads.github.com"],
                    GH.as_bytes(),
                ),
                &["authorization"],
            ),
            cred("CTRL", &["api.openai.com"], b"bad\r\nvalue"),
            in_query(cred("Q", &["api.example.com"], QV.as_bytes())),
        ],
        Transport::VerifiedTls,
    )
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8(v.as_bytes().to_vec()).unwrap(),
            )
        })
        .collect()
}

type Expect = Result<(Vec<(&'static str, String)>, Vec<&'static str>), (&'static str, Reason)>;

/// (host, headers, expected).
type HeaderCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Expect);

#[test]
fn headers_as_a_table() {
    let long = format!("sluice_cred:{}", "A".repeat(65));
    let cases: Vec<HeaderCase<'_>> = vec![
        (
            "api.openai.com",
            vec![("authorization", "Bearer sluice_cred:OPENAI")],
            Ok((
                vec![("authorization", format!("Bearer {OPENAI}"))],
                vec!["OPENAI"],
            )),
        ),
        (
            "API.OpenAI.com",
            vec![(
                "x-keys",
                "sluice_cred:OPENAI,sluice_cred:ORG;sluice_cred:OPENAI",
            )],
            Ok((
                vec![("x-keys", format!("{OPENAI},{ORG};{OPENAI}"))],
                vec!["OPENAI", "ORG"],
            )),
        ),
        (
            "api.openai.com",
            vec![
                ("authorization", "Bearer sluice_cred:OPENAI"),
                ("openai-organization", "sluice_cred:ORG"),
                ("x-plain", "nothing here: sluice_cred: sluice_cre"),
                ("x-dup", "sluice_cred:ORG"),
                ("x-dup", "b sluice_cred:ORG"),
            ],
            Ok((
                vec![
                    ("authorization", format!("Bearer {OPENAI}")),
                    ("openai-organization", ORG.to_owned()),
                    (
                        "x-plain",
                        "nothing here: sluice_cred: sluice_cre".to_owned(),
                    ),
                    ("x-dup", ORG.to_owned()),
                    ("x-dup", format!("b {ORG}")),
                ],
                vec!["OPENAI", "ORG"],
            )),
        ),
        (
            "api.github.com",
            vec![("authorization", "token sluice_cred:GH")],
            Ok((vec![("authorization", format!("token {GH}"))], vec!["GH"])),
        ),
        (
            "api.openai.com",
            vec![("x-none", "plain")],
            Ok((vec![("x-none", "plain".to_owned())], vec![])),
        ),
        (
            "evil.example",
            vec![("authorization", "Bearer sluice_cred:OPENAI")],
            Err(("OPENAI", Reason::WrongHost)),
        ),
        (
            "api.openai.com",
            vec![
                ("authorization", "Bearer sluice_cred:OPENAI"),
                ("x-leak", "sluice_cred:GH"),
            ],
            Err(("GH", Reason::WrongHost)),
        ),
        (
            "api.github.com",
            vec![("x-token", "sluice_cred:GH")],
            Err(("GH", Reason::HeaderNotAllowed("x-token".into()))),
        ),
        (
            "api.openai.com",
            vec![("authorization", "sluice_cred:NOPE")],
            Err(("NOPE", Reason::UnknownName)),
        ),
        // Longest match: the dot belongs to the name.
        (
            "api.openai.com",
            vec![("authorization", "sluice_cred:OPENAI.")],
            Err(("OPENAI.", Reason::UnknownName)),
        ),
        (
            "api.openai.com",
            vec![("authorization", "sluice_cred:CTRL")],
            Err(("CTRL", Reason::Unencodable("header value"))),
        ),
        (
            "api.openai.com",
            vec![("authorization", &long)],
            Err(("", Reason::NameTooLong)),
        ),
    ];
    let injector = injector();
    for (host, input, want) in cases {
        let mut headers = map(&input);
        let before = pairs(&headers);
        match (
            injector.headers(&crate::host::test_host(host), &mut headers),
            want,
        ) {
            (Ok(names), Ok((after, want_names))) => {
                let after: Vec<_> = after.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
                assert_eq!(pairs(&headers), after, "{input:?}");
                assert_eq!(names, want_names, "{input:?}");
                for (_, value) in headers.iter() {
                    let swapped = !input.iter().any(|(_, v)| v.as_bytes() == value.as_bytes());
                    assert_eq!(value.is_sensitive(), swapped, "{input:?}");
                }
            }
            (Err(err), Err((name, reason))) => {
                assert_eq!(err.reason, reason, "{input:?}");
                if !name.is_empty() {
                    assert_eq!(err.name, name, "{input:?}");
                }
                assert_eq!(err.host, host);
                assert_eq!(pairs(&headers), before, "untouched on refusal: {input:?}");
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }
}

/// (host, uri, new uri or none, or the refusal).
type QueryCase = (
    &'static str,
    &'static str,
    Result<Option<String>, (&'static str, Reason)>,
);

#[test]
fn query_as_a_table() {
    let encoded = "a%20b%26c%2F%3D";
    // (host, uri, Ok(Some(new uri)) | Ok(None) | Err(name, reason))
    let cases: Vec<QueryCase> = vec![
        (
            "api.example.com",
            "/v1?key=sluice_cred:Q&x=1",
            Ok(Some(format!("/v1?key={encoded}&x=1"))),
        ),
        (
            "api.example.com",
            "/v1?key=sluice_cred%3AQ",
            Ok(Some(format!("/v1?key={encoded}"))),
        ),
        (
            "api.example.com",
            "/v1?a=sluice_cred%3aQ&b=sluice_cred:Q",
            Ok(Some(format!("/v1?a={encoded}&b={encoded}"))),
        ),
        (
            "api.example.com",
            "https://api.example.com:8443/p?k=sluice_cred:Q",
            Ok(Some(format!("https://api.example.com:8443/p?k={encoded}"))),
        ),
        ("api.example.com", "/v1?x=1", Ok(None)),
        ("api.example.com", "/v1", Ok(None)),
        (
            "api.openai.com",
            "/v1?key=sluice_cred:OPENAI",
            Err(("OPENAI", Reason::QueryNotAllowed)),
        ),
        (
            "evil.example",
            "/v1?key=sluice_cred:Q",
            Err(("Q", Reason::WrongHost)),
        ),
        (
            "api.example.com",
            "/v1?key=sluice_cred:NOPE",
            Err(("NOPE", Reason::UnknownName)),
        ),
        (
            "api.example.com",
            "/v1/sluice_cred:Q/x?key=1",
            Err(("Q", Reason::InPath)),
        ),
        (
            "api.example.com",
            "/v1/sluice_cred%3AQ",
            Err(("Q", Reason::InPath)),
        ),
    ];
    let injector = injector();
    for (host, uri, want) in cases {
        let uri: Uri = uri.parse().unwrap();
        let got = injector.query(&crate::host::test_host(host), &uri);
        match (got, want) {
            (Ok(Some((new, names))), Ok(Some(want))) => {
                assert_eq!(new.to_string(), want);
                assert_eq!(names, vec!["Q"]);
            }
            (Ok(None), Ok(None)) => {}
            (Err(err), Err((name, reason))) => {
                assert_eq!((err.name.as_str(), err.reason), (name, reason), "{uri}");
            }
            (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn debug_and_errors_never_show_a_value() {
    let injector = injector();
    let mut texts = vec![format!("{injector:?}")];
    let mut headers = map(&[("authorization", "Bearer sluice_cred:OPENAI")]);
    injector
        .headers(&crate::host::test_host("api.openai.com"), &mut headers)
        .unwrap();
    texts.push(format!("{headers:?}"));
    for host in ["evil.example", "api.openai.com"] {
        let mut headers = map(&[("authorization", "sluice_cred:CTRL sluice_cred:GH")]);
        let err = injector
            .headers(&crate::host::test_host(host), &mut headers)
            .unwrap_err();
        texts.push(format!("{err:?} {err}"));
    }
    for text in texts {
        for secret in [OPENAI, ORG, GH, QV, "bad\r\nvalue", "bad\\r\\nvalue"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// Plain HTTP goes wherever the sandbox pointed it: no placeholder is swapped, in a header,
/// the query or a body, and the refusal says why without showing a value.
#[test]
fn plain_http_never_gets_a_value() {
    let plain = Injector::new(
        vec![
            in_query(cred("OPENAI", &["api.openai.com"], OPENAI.as_bytes())),
            crate::credentials::test_support::in_body(cred(
                "B",
                &["api.openai.com"],
                OPENAI.as_bytes(),
            )),
        ],
        Transport::PlainHttp,
    );
    let mut headers = map(&[("authorization", "Bearer sluice_cred:OPENAI")]);
    let err = plain
        .headers(&crate::host::test_host("api.openai.com"), &mut headers)
        .unwrap_err();
    assert_eq!(headers["authorization"], "Bearer sluice_cred:OPENAI");
    let text = err.to_string();
    assert!(
        text.contains("credential OPENAI is only sent over HTTPS to api.openai.com")
            && text.contains("plain HTTP"),
        "{text}"
    );
    assert!(!text.contains(OPENAI), "{text}");
    let uri: Uri = "http://api.openai.com/v1?k=sluice_cred:OPENAI"
        .parse()
        .unwrap();
    let err = plain
        .query(&crate::host::test_host("api.openai.com"), &uri)
        .unwrap_err();
    assert!(matches!(err.reason, Reason::PlainHttp { .. }), "{err}");
    let err = plain
        .rewrite_whole(
            &crate::host::test_host("api.openai.com"),
            Some("application/json"),
            b"{\"k\":\"sluice_cred:B\"}",
        )
        .unwrap_err();
    assert!(matches!(err.reason, Reason::PlainHttp { .. }), "{err}");
    // A wrong host still says so first.
    let mut headers = map(&[("authorization", "Bearer sluice_cred:OPENAI")]);
    let err = plain
        .headers(&crate::host::test_host("evil.example"), &mut headers)
        .unwrap_err();
    assert_eq!(err.reason, Reason::WrongHost);
}
