//! Criterion: leaf certificates for intercepted hosts (`sluice::tls::LeafMinter`): a cache
//! miss (sign a new leaf with the shared P-256 key) and a cache hit.
//!
//! PERFORMANCE.md's reading for an rcgen P-256 leaf with a shared key is 23–34 µs here.

#![expect(clippy::unwrap_used, reason = "bench set-up fails loudly")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::tls::{CertificateAuthority, LeafHost, LeafMinter};
use time::OffsetDateTime;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(
        CertificateAuthority::load_or_create(dir.path(), OffsetDateTime::now_utc()).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("leaf");

    // Misses: a new host each time; the FIFO cache keeps memory bounded.
    let minter = LeafMinter::with_capacity(ca.clone(), 1024).unwrap();
    let mut n = 0u64;
    group.bench_function("mint_miss", |b| {
        b.iter(|| {
            n += 1;
            let host = LeafHost::parse(&format!("h{n}.bench.example")).unwrap();
            runtime
                .block_on(minter.certified_key(black_box(&host)))
                .unwrap()
        })
    });

    let hit = LeafHost::parse("api.example.com").unwrap();
    runtime.block_on(minter.certified_key(&hit)).unwrap();
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            runtime
                .block_on(minter.certified_key(black_box(&hit)))
                .unwrap()
        })
    });
    group.bench_function("host_parse", |b| {
        b.iter(|| LeafHost::parse(black_box("API.Example.com.")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
