//! ClientHellos recorded from real clients on a loopback listener (see
//! `tests/fixtures/client_hello/README.md`): every prefix is incomplete, the whole
//! hello gives the right name and ALPN, byte by byte or at once.

use std::sync::Arc;

use crate::detect::client_hello::{Error, parse};
use crate::detect::{Limits, Outcome, detect};

use super::peek::Trickle;

/// A recorded hello and what it must parse to.
struct Fixture {
    file: &'static str,
    bytes: &'static [u8],
    sni: Option<&'static str>,
    alpn: &'static [&'static [u8]],
}

macro_rules! fixture {
    ($file:literal, $sni:expr, $alpn:expr) => {
        Fixture {
            file: $file,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/client_hello/",
                $file
            )),
            sni: $sni,
            alpn: $alpn,
        }
    };
}

const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

const FIXTURES: &[Fixture] = &[
    fixture!("curl.bin", Some("api.example.test"), H2_H1),
    // Python sent "Python.Example.TEST": names come out lowercase.
    fixture!("python.bin", Some("python.example.test"), H2_H1),
    fixture!("node.bin", Some("node.example.test"), &[b"http/1.1"]),
    fixture!("openssl-ffdhe-frag.bin", Some("big.example.test"), H2_H1),
    fixture!("openssl-nosni.bin", None, &[]),
    fixture!("openssl-tls12.bin", Some("legacy.example.test"), &[]),
    fixture!("rustls-mlkem768.bin", Some("pq.example.test"), H2_H1),
    fixture!(
        "rustls-mlkem1024-frag.bin",
        Some("frag.pq.example.test"),
        H2_H1
    ),
];

/// Counts the TLS records in `bytes`.
fn record_count(mut bytes: &[u8]) -> usize {
    let mut count = 0;
    while let [_, _, _, hi, lo, ..] = bytes {
        let len = 5 + usize::from(u16::from_be_bytes([*hi, *lo]));
        bytes = bytes.get(len..).unwrap_or_default();
        count += 1;
    }
    count
}

#[test]
fn detect_fixtures_parse_to_the_right_name_and_alpn() {
    for Fixture {
        file,
        bytes,
        sni,
        alpn,
    } in FIXTURES
    {
        let hello = parse(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            hello.server_name.as_ref().map(crate::host::Host::as_str),
            *sni,
            "{file}"
        );
        assert_eq!(
            hello.alpn,
            alpn.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
            "{file}"
        );
        assert_eq!(hello.legacy_version, 0x0303, "{file}");
        let tls13 = hello.supported_versions.contains(&0x0304);
        assert_eq!(tls13, *file != "openssl-tls12.bin", "{file}");
    }
}

#[test]
fn detect_fixtures_include_large_multi_record_hellos() {
    let multi: Vec<_> = FIXTURES
        .iter()
        .filter(|f| record_count(f.bytes) >= 2)
        .map(|f| (f.file, f.bytes.len() > 1500))
        .collect();
    assert_eq!(
        multi,
        [
            ("openssl-ffdhe-frag.bin", false),
            ("rustls-mlkem1024-frag.bin", true)
        ]
    );
}

#[test]
fn detect_fixtures_every_prefix_is_incomplete() {
    for Fixture { file, bytes, .. } in FIXTURES {
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Err(Error::Incomplete),
                "{file} cut at {end}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn detect_fixtures_byte_by_byte_and_at_once() {
    for Fixture {
        file, bytes, sni, ..
    } in FIXTURES
    {
        for mut reader in [
            Trickle::new(bytes, 1),
            Trickle::new(bytes, 1460),
            Trickle::new(bytes, 1 << 16),
        ] {
            let detection = detect(&mut reader, Limits::default()).await;
            let Outcome::Tls(hello) = detection.outcome else {
                panic!("{file}: {:?}", detection.outcome);
            };
            assert_eq!(
                hello.server_name.as_ref().map(crate::host::Host::as_str),
                *sni,
                "{file}"
            );
            assert_eq!(&detection.bytes[..], *bytes, "{file}");
        }
    }
}

/// Rewrites the rustls fixtures: a Chrome-sized X25519MLKEM768 share (1216 bytes) plus
/// X25519 in one record, and a SecP384r1MLKEM1024 share (1665 bytes) in 512-byte
/// records. rustls with *ring* has no ML-KEM, so the shares are random bytes of the
/// right size under the real group code points. Run with
/// `SLUICE_REGEN_FIXTURES=1 cargo test -p gateway-user regenerate -- --ignored`.
#[test]
#[ignore = "rewrites committed fixtures; only with SLUICE_REGEN_FIXTURES=1"]
fn detect_regenerate_rustls_fixtures() {
    if std::env::var_os("SLUICE_REGEN_FIXTURES").is_none() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/client_hello");
    static MLKEM768: BigShare = BigShare {
        group: 0x11ec,
        len: 1184 + 32,
        x25519_tail: true,
    };
    static MLKEM1024: BigShare = BigShare {
        group: 0x11ed,
        len: 97 + 1568,
        x25519_tail: false,
    };
    let write =
        |name: &str, bytes: Vec<u8>| std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
    write(
        "rustls-mlkem768.bin",
        rustls_hello(&MLKEM768, "pq.example.test", None),
    );
    write(
        "rustls-mlkem1024-frag.bin",
        rustls_hello(&MLKEM1024, "frag.pq.example.test", Some(512)),
    );
}

use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup, ring};
use rustls::{ClientConfig, ClientConnection, NamedGroup, RootCertStore};

/// A key share of `len` random bytes under `group`, with an X25519 tail when hybrid.
#[derive(Debug)]
struct BigShare {
    group: u16,
    len: usize,
    x25519_tail: bool,
}

struct BigActive(Vec<u8>, u16, bool);

impl SupportedKxGroup for BigShare {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut key = vec![0u8; self.len];
        ring::default_provider().secure_random.fill(&mut key)?;
        Ok(Box::new(BigActive(key, self.group, self.x25519_tail)))
    }
    fn name(&self) -> NamedGroup {
        NamedGroup::from(self.group)
    }
}

impl ActiveKeyExchange for BigActive {
    fn complete(self: Box<Self>, _peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        Err(rustls::Error::General("fixture only".into()))
    }
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        let tail = self.0.len().checked_sub(32)?;
        self.2.then(|| (NamedGroup::X25519, &self.0[tail..]))
    }
    fn pub_key(&self) -> &[u8] {
        &self.0
    }
    fn group(&self) -> NamedGroup {
        NamedGroup::from(self.1)
    }
}

fn rustls_hello(share: &'static BigShare, sni: &str, fragment: Option<usize>) -> Vec<u8> {
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![share, ring::kx_group::X25519, ring::kx_group::SECP256R1];
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.max_fragment_size = fragment;
    let name = sni.to_owned().try_into().unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}
