//! Criterion: placeholder substitution on the request path — header injection, a streaming
//! JSON body of 64 KiB in 16 KiB chunks, and scrubbing a 64 KiB response.

#![expect(clippy::unwrap_used, reason = "bench set-up fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::HeaderMap;
use sluice::credentials::{Bound, CredentialSpec, Injector, Scrubber, Secret, Transport};

fn bound() -> Vec<Bound> {
    vec![Bound {
        spec: CredentialSpec {
            name: "OPENAI_API_KEY".into(),
            hosts: vec!["api.openai.test".into()],
            headers: vec![],
            query: false,
            body: true,
        },
        value: Secret::new(b"sk-live-8c1f0e7d2b9a4c6e8f1a3b5d7c9e0f21".to_vec()),
    }]
}

/// A 64 KiB JSON body with one placeholder near the end.
fn body() -> Vec<u8> {
    let mut text = String::from("{\"messages\":[");
    while text.len() < 64 * 1024 - 100 {
        text.push_str("{\"role\":\"user\",\"content\":\"lorem ipsum dolor sit amet\"},");
    }
    text.push_str("{\"key\":\"sluice_cred:OPENAI_API_KEY\"}]}");
    text.into_bytes()
}

fn bench(c: &mut Criterion) {
    let injector = Injector::new(bound(), Transport::VerifiedTls);
    let host = sluice::host::Host::parse("api.openai.test").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer sluice_cred:OPENAI_API_KEY".parse().unwrap(),
    );
    headers.insert("user-agent", "bench/1".parse().unwrap());
    c.bench_function("credentials/headers_inject", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            injector.headers(black_box(&host), &mut h).unwrap()
        })
    });
    let body = body();
    let mut group = c.benchmark_group("credentials");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("body_inject_64k_streaming", |b| {
        b.iter(|| {
            let mut stream = injector.body(&host, Some("application/json"));
            let mut n = 0;
            for chunk in body.chunks(16 * 1024) {
                n += stream.push(black_box(chunk)).unwrap().len();
            }
            n + stream.finish().unwrap().len()
        })
    });
    let scrubber = Scrubber::new(&bound()).unwrap();
    group.bench_function("response_scrub_64k", |b| {
        b.iter(|| {
            let mut stream = scrubber.body();
            let mut n = 0;
            for chunk in body.chunks(16 * 1024) {
                n += stream.push(black_box(chunk)).len();
            }
            n + stream.finish().len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
