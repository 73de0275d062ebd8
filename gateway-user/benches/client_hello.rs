//! Criterion: parsing a TLS ClientHello (`sluice::detect::client_hello::parse`), the first
//! thing the proxy does on every intercepted or passed-through connection.
//!
//! Hellos are produced by a real rustls client: a typical one (SNI + ALPN h2/http1.1), and a
//! large one (about 2 KiB, split over two records, as post-quantum key shares make them).

#![expect(clippy::unwrap_used, reason = "bench set-up fails loudly")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::pki_types::ServerName;
use sluice::detect::client_hello;

/// The first flight of a rustls client for `host` offering `alpn`.
fn hello(host: &str, alpn: Vec<Vec<u8>>) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Re-frames one handshake record as two records split in the middle (the parser must
/// reassemble them), as large hellos arrive.
fn split_in_two_records(wire: &[u8]) -> Vec<u8> {
    let body = &wire[5..];
    let (a, b) = body.split_at(body.len() / 2);
    let mut out = Vec::new();
    for part in [a, b] {
        out.extend_from_slice(&wire[..3]);
        out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn bench(c: &mut Criterion) {
    let typical = hello(
        "api.example.com",
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    );
    let many_alpn: Vec<Vec<u8>> = (0..150)
        .map(|i| format!("proto-{i:04}").into_bytes())
        .collect();
    let large = split_in_two_records(&hello(
        "a-much-longer-host-name.eu-west-1.example.com",
        many_alpn,
    ));
    assert_eq!(
        client_hello::parse(&typical)
            .unwrap()
            .server_name
            .as_ref()
            .map(sluice::host::Host::as_str),
        Some("api.example.com")
    );
    assert!(client_hello::parse(&large).is_ok());

    let mut group = c.benchmark_group("client_hello_parse");
    for (name, wire) in [("typical", &typical), ("large_two_records", &large)] {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("{name}_{}B", wire.len()), |b| {
            b.iter(|| client_hello::parse(black_box(wire)))
        });
    }
    let half = &typical[..typical.len() / 2];
    group.bench_function("incomplete_prefix", |b| {
        b.iter(|| client_hello::parse(black_box(half)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
