use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use ::time::Duration;
use x509_parser::prelude::*;

use super::{now, state, test_ca, verify};
use crate::tls::ca::{cert_path, key_path};
use crate::tls::{CaSettings, CertificateAuthority, LeafError, LeafHost, LeafMinter};

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
    assert_eq!(minter.cached_count(), 50);
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
    assert_eq!(minter.cached_count(), 1);
}

#[tokio::test]
async fn cache_is_bounded_and_evicts_the_oldest_host() {
    let (_dir, ca) = test_ca();
    let minter = LeafMinter::with_capacity(ca, 3).unwrap();
    for i in 0..5 {
        minter
            .certified_key(&host(&format!("e{i}.example.com")))
            .await
            .unwrap();
    }
    assert_eq!(minter.cached_count(), 3);
    assert!(minter.cached(&host("e0.example.com")).is_none());
    assert!(minter.cached(&host("e1.example.com")).is_none());
    assert!(minter.cached(&host("e4.example.com")).is_some());
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
