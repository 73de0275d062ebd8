use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::test_ca;
use crate::tls::{LeafHost, LeafMinter, ServerConfigCache, mirrored_alpn, root_store_with};

fn interceptor() -> (tempfile::TempDir, ServerConfigCache, RootCertStore) {
    let (dir, ca) = test_ca();
    let roots = root_store_with(ca.cert_der()).unwrap();
    let cache = ServerConfigCache::new(Arc::new(LeafMinter::new(ca).unwrap())).unwrap();
    (dir, cache, roots)
}

fn alpn(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// Handshakes a client (trusting `roots`, offering `offer`) with the config served for
/// `host`; returns the ALPN both sides agreed on.
async fn handshake(
    cache: &ServerConfigCache,
    host: &str,
    server_name: &str,
    roots: RootCertStore,
    offer: Vec<Vec<u8>>,
) -> io::Result<Option<Vec<u8>>> {
    let config = cache
        .server_config_for(&LeafHost::parse(host).unwrap(), &offer)
        .await
        .unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let tls = TlsAcceptor::from(config).accept(server_io).await?;
        io::Result::Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = offer;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let connect = TlsConnector::from(Arc::new(client)).connect(name, client_io);
    let client = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .unwrap();
    let server = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let client_alpn = client?.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(client_alpn, server?);
    Ok(client_alpn)
}

#[test]
fn alpn_mirroring_table() {
    let cases: [(&[&str], &[&str]); 6] = [
        (&["h2", "http/1.1"], &["h2", "http/1.1"]),
        (&["http/1.1", "h2"], &["h2", "http/1.1"]),
        (&["http/1.1"], &["http/1.1"]),
        (&["h2"], &["h2"]),
        (&[], &[]),
        (&["spdy/3", "acme-tls/1"], &[]),
    ];
    for (offer, expected) in cases {
        assert_eq!(mirrored_alpn(&alpn(offer)), alpn(expected), "{offer:?}");
    }
}

#[tokio::test]
async fn handshake_trusting_only_the_ca_mirrors_alpn() {
    let (_dir, cache, roots) = interceptor();
    let cases: [(&[&str], Option<&str>); 5] = [
        (&["h2", "http/1.1"], Some("h2")),
        (&["http/1.1"], Some("http/1.1")),
        (&["h2"], Some("h2")),
        (&[], None),
        (&["spdy/3", "http/1.1"], Some("http/1.1")),
    ];
    for (offer, expected) in cases {
        let got = handshake(
            &cache,
            "api.example.com",
            "api.example.com",
            roots.clone(),
            alpn(offer),
        )
        .await
        .unwrap();
        assert_eq!(got, expected.map(|p| p.as_bytes().to_vec()), "{offer:?}");
    }
    assert_eq!(cache.minter().minted_count(), 1);
}

#[tokio::test]
async fn configs_are_shared_per_alpn_set() {
    let (_dir, cache, _roots) = interceptor();
    let both = alpn(&["h2", "http/1.1"]);
    let a = cache
        .server_config_for(&LeafHost::parse("a.example.com").unwrap(), &both)
        .await
        .unwrap();
    let b = cache
        .server_config_for(
            &LeafHost::parse("b.example.com").unwrap(),
            &alpn(&["http/1.1", "h2"]),
        )
        .await
        .unwrap();
    let c = cache
        .server_config_for(
            &LeafHost::parse("c.example.com").unwrap(),
            &alpn(&["http/1.1"]),
        )
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
}

#[tokio::test]
async fn ip_host_without_sni_gets_its_leaf() {
    let (_dir, cache, roots) = interceptor();
    for ip in ["198.51.100.7", "2001:db8::7"] {
        let got = handshake(&cache, ip, ip, roots.clone(), alpn(&["http/1.1"]))
            .await
            .unwrap();
        assert_eq!(got, Some(b"http/1.1".to_vec()));
    }
}

#[tokio::test]
async fn unminted_sni_fails_closed() {
    let (_dir, cache, roots) = interceptor();
    let result = handshake(
        &cache,
        "a.example.com",
        "never-minted.example.com",
        roots,
        vec![],
    )
    .await;
    assert!(result.is_err());
    assert_eq!(cache.resolver_misses(), 1);
}

#[tokio::test]
async fn client_trusting_another_ca_refuses_the_leaf() {
    let (_dir, cache, _roots) = interceptor();
    let (_other_dir, other) = test_ca();
    let other_roots = root_store_with(other.cert_der()).unwrap();
    let result = handshake(
        &cache,
        "a.example.com",
        "a.example.com",
        other_roots,
        vec![],
    )
    .await;
    assert!(result.is_err());
}
