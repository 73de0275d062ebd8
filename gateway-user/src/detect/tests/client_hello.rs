//! Table tests of the ClientHello parser on built hellos.

use super::build::{Hello, record, records, u8v, u16v};
use crate::detect::client_hello::{ClientHello, Error, MAX_CLIENT_HELLO_LEN, parse};

fn sni(name: &str) -> Result<Option<String>, Error> {
    parse(&Hello::tls13().sni(name).record()).map(|h| h.server_name.map(|h| h.to_string()))
}

#[test]
fn detect_hello_parses_name_alpn_and_versions() {
    let hello = Hello::tls13()
        .sni("api.example.test")
        .alpn(&[b"h2", b"http/1.1"]);
    assert_eq!(
        parse(&hello.record()),
        Ok(ClientHello {
            server_name: Some(crate::host::Host::parse("api.example.test").unwrap()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            legacy_version: 0x0303,
            supported_versions: vec![0x0304, 0x0303],
        })
    );
}

#[test]
fn detect_hello_server_names() {
    let malformed = Err(Error::Malformed("host_name is not a valid DNS name"));
    let cases: &[(&str, Result<Option<String>, Error>)] = &[
        ("API.Example.TEST", Ok(Some("api.example.test".into()))),
        ("example.test.", Ok(Some("example.test".into()))),
        (
            "under_score.example.test",
            Ok(Some("under_score.example.test".into())),
        ),
        (
            "xn--bcher-kva.example",
            Ok(Some("xn--bcher-kva.example".into())),
        ),
        ("localhost", Ok(Some("localhost".into()))),
        // RFC 6066 forbids IP literals: reported as no SNI, never as a name.
        ("203.0.113.7", Ok(None)),
        ("203.0.113.7.", Ok(None)),
        ("2001:db8::1", Ok(None)),
        ("[2001:db8::1]", malformed.clone()),
        ("1.2.3.4.5", malformed.clone()),
        ("10.1", malformed.clone()),
        ("a..b", malformed.clone()),
        (".", malformed.clone()),
        ("-lead.example.test", malformed.clone()),
        ("trail-.example.test", malformed.clone()),
        ("sp ace.example.test", malformed.clone()),
        ("evil.test\0.example.test", malformed.clone()),
        ("bücher.example", malformed.clone()),
        (&"a".repeat(64), malformed.clone()),
        (&["abcdefghi"; 26].join("."), malformed.clone()), // 259 bytes
    ];
    for (name, want) in cases {
        assert_eq!(&sni(name), want, "SNI {name:?}");
    }
}

#[test]
fn detect_hello_no_sni_and_no_extensions() {
    let hello = parse(&Hello::tls13().record()).unwrap();
    assert_eq!((hello.server_name, hello.alpn), (None, vec![]));
    let tls12 = Hello {
        extensions: None,
        ..Hello::tls13()
    };
    let hello = parse(&tls12.record()).unwrap();
    assert_eq!(
        (hello.server_name, hello.supported_versions),
        (None, vec![])
    );
}

#[test]
fn detect_hello_malformed_table() {
    let base = Hello::tls13().sni("a.example.test");
    let m = Error::Malformed;
    let cases: Vec<(&str, Vec<u8>, Error)> = vec![
        (
            "two SNI extensions",
            base.clone().sni("b.example.test").record(),
            m("duplicate server_name, ALPN or supported_versions"),
        ),
        (
            "two ALPN extensions",
            base.clone().alpn(&[b"h2"]).alpn(&[b"h2"]).record(),
            m("duplicate server_name, ALPN or supported_versions"),
        ),
        (
            "two host names",
            Hello::tls13()
                .sni_entries(&[(0, b"a.test"), (0, b"b.test")])
                .record(),
            m("server_name lists more than one host_name"),
        ),
        (
            "unknown name type",
            Hello::tls13().sni_entries(&[(1, b"a.test")]).record(),
            m("server_name has an unknown name type"),
        ),
        (
            "empty SNI list",
            Hello::tls13().ext(0, u16v(&[])).record(),
            m("server_name list is empty or has trailing bytes"),
        ),
        (
            "empty SNI data",
            Hello::tls13().ext(0, vec![]).record(),
            m("server_name list overruns"),
        ),
        (
            "host_name overruns",
            Hello::tls13().ext(0, u16v(&[0, 0, 9, b'a'])).record(),
            m("host_name overruns"),
        ),
        (
            "empty ALPN list",
            Hello::tls13().ext(16, u16v(&[])).record(),
            m("ALPN list is empty or has trailing bytes"),
        ),
        (
            "empty ALPN name",
            Hello::tls13().alpn(&[b"h2", b""]).record(),
            m("ALPN protocol name is empty"),
        ),
        (
            "ALPN name overruns",
            Hello::tls13().ext(16, u16v(&[5, b'h', b'2'])).record(),
            m("ALPN protocol name overruns"),
        ),
        (
            "odd supported_versions",
            Hello {
                extensions: Some(vec![(43, u8v(&[3]))]),
                ..Hello::tls13()
            }
            .record(),
            m("supported_versions has a bad length"),
        ),
        (
            "session id > 32",
            Hello {
                session_id: vec![0; 33],
                ..base.clone()
            }
            .record(),
            m("legacy_session_id longer than 32 bytes"),
        ),
        (
            "odd cipher suites",
            Hello {
                suites: vec![0x13],
                ..base.clone()
            }
            .record(),
            m("cipher_suites length is not a positive even number"),
        ),
        (
            "no cipher suites",
            Hello {
                suites: vec![],
                ..base.clone()
            }
            .record(),
            m("cipher_suites length is not a positive even number"),
        ),
        (
            "no compression",
            Hello {
                compression: vec![],
                ..base.clone()
            }
            .record(),
            m("compression_methods is empty"),
        ),
        (
            "trailing bytes",
            Hello {
                trailer: vec![0],
                ..base.clone()
            }
            .record(),
            m("trailing bytes after extensions"),
        ),
        (
            "extension overruns",
            Hello {
                extensions: None,
                trailer: vec![0, 4, 0, 0, 0, 9],
                ..base.clone()
            }
            .record(),
            m("extension overruns"),
        ),
        (
            "extensions overrun",
            Hello {
                extensions: None,
                trailer: vec![0, 9, 0, 0],
                ..base.clone()
            }
            .record(),
            m("extensions overrun"),
        ),
        (
            "extension header truncated",
            Hello {
                extensions: None,
                trailer: vec![0, 1, 0],
                ..base.clone()
            }
            .record(),
            m("extension header truncated"),
        ),
        (
            "truncated body",
            records(&[1, 0, 0, 3, 3, 3, 0], 1 << 14),
            m("random truncated"),
        ),
        (
            "ServerHello",
            Hello {
                handshake_type: 2,
                ..base.clone()
            }
            .record(),
            m("the first handshake message is not a ClientHello"),
        ),
        (
            "first record is application data",
            record(23, 0x0303, b"hello"),
            m("the first TLS record is not a handshake"),
        ),
        (
            "first record is an alert",
            record(21, 0x0303, &[2, 40]),
            m("the first TLS record is not a handshake"),
        ),
        (
            "empty record",
            record(22, 0x0301, &[]),
            m("empty handshake record"),
        ),
        (
            "record over 2^14",
            [&[22, 3, 1, 0x40, 1][..], &[1; 64]].concat(),
            m("record longer than 2^14 bytes"),
        ),
        (
            "interleaved alert",
            [base.records(40)[..45].to_vec(), record(21, 0x0303, &[1, 0])].concat(),
            m("ClientHello interleaved with a non-handshake record"),
        ),
        (
            "second record not TLS",
            [base.records(40)[..45].to_vec(), vec![22, 9, 9, 0, 1, 0]].concat(),
            m("record version is not TLS"),
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(parse(&bytes), Err(want), "{name}");
    }
}

#[test]
fn detect_hello_not_tls_or_incomplete() {
    let cases: &[(&[u8], Error)] = &[
        (b"", Error::Incomplete),
        (&[22], Error::Incomplete),
        (&[23], Error::Incomplete),
        (&[22, 3], Error::Incomplete),
        (&[22, 3, 1, 0, 10, 1, 0], Error::Incomplete),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Error::NotTls),
        (b"GET / HTTP/1.1\r\n", Error::NotTls),
        (&[22, 2, 0, 0, 10], Error::NotTls),
        (&[23, 0x16], Error::NotTls),
        (&[0x80, 0x2e, 0x01, 0x00, 0x02], Error::NotTls), // SSLv2-compatible hello
        (&[0; 16], Error::NotTls),
    ];
    for (bytes, want) in cases {
        assert_eq!(parse(bytes), Err(*want), "{bytes:?}");
    }
}

#[test]
fn detect_hello_split_anywhere_parses_the_same() {
    let hello = Hello::tls13()
        .sni("split.example.test")
        .alpn(&[b"h2"])
        .padding(300);
    let whole = parse(&hello.record()).unwrap();
    for fragment in 1..=hello.message().len() {
        let bytes = hello.records(fragment);
        assert_eq!(parse(&bytes).as_ref(), Ok(&whole), "fragment {fragment}");
        for end in [1, 4, 5, 6, 9, 10, bytes.len() - 1] {
            assert_eq!(
                parse(&bytes[..end]),
                Err(Error::Incomplete),
                "fragment {fragment} end {end}"
            );
        }
    }
}

#[test]
fn detect_hello_ignores_what_follows() {
    let hello = Hello::tls13().sni("a.example.test");
    let ccs = record(20, 0x0303, &[1]);
    let early = record(23, 0x0303, b"early data");
    let bytes = [hello.record(), ccs, early].concat();
    assert_eq!(
        parse(&bytes)
            .unwrap()
            .server_name
            .map(|h| h.to_string())
            .as_deref(),
        Some("a.example.test")
    );
}

#[test]
fn detect_hello_over_cap_is_too_large() {
    // Declared too large: refused from the first bytes, without waiting for the rest.
    let huge = Hello::tls13()
        .sni("a.example.test")
        .padding(MAX_CLIENT_HELLO_LEN);
    let bytes = huge.records(1 << 14);
    assert_eq!(parse(&bytes[..9]), Err(Error::TooLarge));
    assert_eq!(parse(&bytes), Err(Error::TooLarge));
    // Just fits in one record.
    let overhead = Hello::tls13().padding(0).record().len();
    let fits = Hello::tls13().padding(MAX_CLIENT_HELLO_LEN - overhead);
    let bytes = fits.record();
    assert_eq!(bytes.len(), MAX_CLIENT_HELLO_LEN);
    assert!(parse(&bytes).is_ok());
    assert_eq!(parse(&bytes[..bytes.len() - 1]), Err(Error::Incomplete));
    // Declared small enough, but tiny records make its wire form exceed the cap.
    let fragmented = fits.records(100);
    assert_eq!(
        parse(&fragmented[..MAX_CLIENT_HELLO_LEN]),
        Err(Error::TooLarge)
    );
    assert_eq!(
        parse(&fragmented[..MAX_CLIENT_HELLO_LEN - 1]),
        Err(Error::Incomplete)
    );
    assert_eq!(parse(&fragmented), Err(Error::TooLarge));
}

#[test]
fn detect_hello_mutations_never_panic_or_yield_bad_names() {
    let seeds = [
        Hello::tls13()
            .sni("a.example.test")
            .alpn(&[b"h2", b"http/1.1"])
            .records(37),
        Hello::tls13().sni("b.example.test").record(),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in &seeds {
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if let Ok(hello) = parse(&bytes)
                && let Some(name) = hello.server_name.map(|h| h.to_string())
            {
                assert!(!name.is_empty() && !name.ends_with('.'), "{name:?}");
                assert!(
                    name.bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.')),
                    "{name:?}"
                );
            }
        }
    }
}
