use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use ::time::Duration;
use x509_parser::prelude::*;

use super::{now, state, test_ca, verify};
use crate::tls::ca::{cert_path, key_path};
use crate::tls::{CaSettings, CacheStats, CertificateAuthority, LeafError, LeafHost, LeafMinter};

fn host(name: &str) -> LeafHost {
    LeafHost::parse(name).unwrap()
}

#[test]
fn host_parsing_table() {
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let cases: [(&str, Option<LeafHost>); 11] = [
        (
            "api.example.com",
            Some(LeafHost::Dns("api.example.com".into())),
        ),
        (
            "API.Example.COM.",
            Some(LeafHost::Dns("api.example.com".into())),
        ),
        (
            "198.51.100.7",
            Some(LeafHost::Ip("198.51.100.7".parse().unwrap())),
        ),
        ("2001:db8::1", Some(LeafHost::Ip(v6))),
        ("[2001:db8::1]", Some(LeafHost::Ip(v6))),
        ("localhost", Some(LeafHost::Dns("localhost".into()))),
        ("", None),
        ("*.example.com", None),
        ("exa mple.com", None),
        ("[198.51.100.7]", None),
        ("bad..example.com", None),
    ];
    for (input, expected) in cases {
        assert_eq!(LeafHost::parse(input).ok(), expected, "{input:?}");
    }
}

#[tokio::test]
async fn leaf_verifies_for_its_host_only() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::new(Arc::clone(&ca)).unwrap();
    let key = minter
        .certified_key(&host("api.example.com"))
        .await
        .unwrap();
    assert_eq!(key.cert.len(), 2);
    assert_eq!(&key.cert[1], ca.cert_der());
    verify(&ca, &key, "api.example.com").unwrap();
    verify(&ca, &key, "API.EXAMPLE.COM").unwrap();
    assert!(verify(&ca, &key, "other.example.com").is_err());
    assert!(verify(&ca, &key, "198.51.100.7").is_err());
}

#[tokio::test]
async fn ip_address_leaf_has_an_ip_san() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::new(Arc::clone(&ca)).unwrap();
    for ip in ["198.51.100.7", "2001:db8::7"] {
        let key = minter.certified_key(&host(ip)).await.unwrap();
        verify(&ca, &key, ip).unwrap();
        assert!(verify(&ca, &key, "203.0.113.9").is_err());
        let (_, cert) = parse_x509_certificate(&key.cert[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert!(matches!(
            san.general_names.as_slice(),
            [GeneralName::IPAddress(_)]
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_mint_each_host_once() {
    let (_dir, ca) = test_ca();
    let minter = Arc::new(LeafMinter::new(ca).unwrap());
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let minter = Arc::clone(&minter);
            tokio::spawn(async move {
                let h = host(&format!("h{}.example.com", i % 50));
                (i % 50, minter.certified_key(&h).await.unwrap())
            })
        })
        .collect();
    let mut first: Vec<Option<Arc<rustls::sign::CertifiedKey>>> = vec![None; 50];
    for task in tasks {
        let (n, key) = task.await.unwrap();
        let seen = first[n].get_or_insert_with(|| Arc::clone(&key));
        assert!(Arc::ptr_eq(seen, &key), "host {n} got two different leaves");
    }
    assert_eq!(minter.minted_count(), 50);
    assert_eq!(minter.cache_stats().entries, 50);
}

#[tokio::test]
async fn every_leaf_has_its_own_random_serial() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::new(ca).unwrap();
    let mut serials = HashSet::new();
    for i in 0..20 {
        let key = minter
            .certified_key(&host(&format!("s{i}.example.com")))
            .await
            .unwrap();
        let (_, cert) = parse_x509_certificate(&key.cert[0]).unwrap();
        assert_eq!(cert.raw_serial().len(), 16);
        serials.insert(cert.raw_serial().to_vec());
    }
    assert_eq!(serials.len(), 20);
}

#[tokio::test]
async fn leaf_validity_is_backdated_and_capped_by_the_ca() {
    let (_dir, ca) = test_ca();
    let start = now();
    let minter = LeafMinter::new(Arc::clone(&ca)).unwrap();
    let key = minter
        .certified_key_at(&host("a.example.com"), start)
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&key.cert[0]).unwrap();
    let before = start - cert.validity().not_before.to_datetime();
    let after = cert.validity().not_after.to_datetime() - start;
    assert!((Duration::minutes(59)..=Duration::minutes(61)).contains(&before));
    assert!((Duration::days(30) - Duration::seconds(2)..=Duration::days(30)).contains(&after));

    // A CA ending in 10 days caps its leaves.
    let dir = tempfile::TempDir::new().unwrap();
    let short = CaSettings {
        validity: Duration::days(10),
        rotate_within: Duration::days(1),
    };
    let ca =
        Arc::new(CertificateAuthority::load_or_create_with(&state(&dir), start, &short).unwrap());
    let minter = LeafMinter::new(Arc::clone(&ca)).unwrap();
    let key = minter
        .certified_key_at(&host("a.example.com"), start)
        .await
        .unwrap();
    let (_, cert) = parse_x509_certificate(&key.cert[0]).unwrap();
    assert_eq!(cert.validity().not_after.to_datetime(), ca.not_after());

    // Past the CA's end nothing is minted.
    let err = minter
        .certified_key_at(&host("b.example.com"), start + Duration::days(11))
        .await
        .unwrap_err();
    assert!(matches!(err, LeafError::CaExpired { .. }), "{err}");
}

#[tokio::test]
async fn cached_leaf_is_reused_then_refreshed_before_expiry() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::new(ca).unwrap();
    let h = host("a.example.com");
    let start = now();
    let first = minter.certified_key_at(&h, start).await.unwrap();
    let again = minter
        .certified_key_at(&h, start + Duration::days(28))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(minter.minted_count(), 1);
    let fresh = minter
        .certified_key_at(&h, start + Duration::days(29))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_eq!(minter.minted_count(), 2);
    assert_eq!(minter.cache_stats().entries, 1);
    // A refresh replaces the host's own entry: a miss, not an eviction.
    let stats = minter.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (1, 2, 0));
}

#[tokio::test]
async fn cache_is_bounded_and_evicts_the_least_recently_used_host() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::with_capacity(ca, 3).unwrap();
    let name = |i: usize| host(&format!("e{i}.example.com"));
    for i in 0..3 {
        minter.certified_key(&name(i)).await.unwrap();
    }
    // e0 is used again, so e1 is now the least recently used and goes first.
    let e0 = minter.certified_key(&name(0)).await.unwrap();
    minter.certified_key(&name(3)).await.unwrap();
    minter.certified_key(&name(4)).await.unwrap();
    assert_eq!(minter.cache_stats().entries, 3);
    assert!(minter.cached(&name(1)).is_none());
    assert!(minter.cached(&name(2)).is_none());
    let still = minter
        .cached(&name(0))
        .expect("e0 was used recently, so it stays");
    assert!(Arc::ptr_eq(&e0, &still));
    assert!(minter.cached(&name(4)).is_some());
    // An evicted host is minted again (a miss), not refused.
    minter.certified_key(&name(1)).await.unwrap();
    assert_eq!(minter.minted_count(), 6);
}

#[tokio::test]
async fn cache_counts_hits_misses_and_evictions() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::with_capacity(ca, 2).unwrap();
    let empty = CacheStats {
        entries: 0,
        capacity: 2,
        hits: 0,
        misses: 0,
        evictions: 0,
    };
    assert_eq!(minter.cache_stats(), empty);
    for name in [
        "a.example",
        "a.example",
        "b.example",
        "c.example",
        "a.example",
    ] {
        minter.certified_key(&host(name)).await.unwrap();
    }
    // a miss, a hit; b, c miss (c evicts a); a misses again and evicts b.
    let stats = minter.cache_stats();
    assert_eq!(
        stats,
        CacheStats {
            entries: 2,
            hits: 1,
            misses: 4,
            evictions: 2,
            ..empty
        }
    );
    assert_eq!(minter.minted_count(), stats.misses);
    // The resolver's lookup after a mint is not a second hit.
    assert!(minter.cached(&host("a.example")).is_some());
    assert_eq!(minter.cache_stats().hits, 1);
}

#[tokio::test]
async fn a_cache_of_zero_still_holds_one_host() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::with_capacity(ca, 0).unwrap();
    minter.certified_key(&host("a.example")).await.unwrap();
    assert_eq!(minter.cache_stats().capacity, 1);
    assert!(minter.cached(&host("a.example")).is_some());
}

#[tokio::test]
async fn provided_ca_signs_leaves_that_verify() {
    let (dir, ca) = test_ca();
    let provided =
        CertificateAuthority::from_files(&cert_path(&state(&dir)), &key_path(&state(&dir)))
            .unwrap();
    let minter = LeafMinter::new(Arc::new(provided)).unwrap();
    let key = minter
        .certified_key(&host("api.example.com"))
        .await
        .unwrap();
    verify(&ca, &key, "api.example.com").unwrap();
}

#[tokio::test]
async fn invalid_host_is_refused() {
    let err = LeafHost::parse("*.example.com").unwrap_err();
    assert!(matches!(err, LeafError::InvalidHost { .. }));
    assert!(err.to_string().contains("refusing to mint"));
}
