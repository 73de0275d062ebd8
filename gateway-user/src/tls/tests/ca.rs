use std::fs;
use std::os::unix::fs::PermissionsExt;

use ::time::Duration;
use x509_parser::prelude::*;

use super::{mode, now, state, test_ca};
use crate::tls::ca::{cert_path, key_path};
use crate::tls::{CaError, CaOrigin, CaSettings, CertificateAuthority};

#[test]
fn first_run_creates_p256_ca_with_private_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let state = state(&dir);
    let start = now();
    let ca = CertificateAuthority::load_or_create(&state, start).unwrap();

    assert_eq!(ca.origin(), CaOrigin::Created);
    assert_eq!(mode(&key_path(&state)), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert!(ca.common_name().starts_with("Sluice CA "));
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(
        fs::read_to_string(cert_path(&state)).unwrap(),
        ca.cert_pem()
    );
    let days = (ca.not_after() - start).whole_days();
    assert!((364..=365).contains(&days), "validity {days} days");

    let (_, cert) = parse_x509_certificate(ca.cert_der()).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let key_pem = fs::read_to_string(key_path(&state)).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn reload_gives_the_same_ca() {
    let (dir, ca) = test_ca();
    let again = CertificateAuthority::load_or_create(&state(&dir), now()).unwrap();
    assert_eq!(again.origin(), CaOrigin::Loaded);
    assert_eq!(again.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(again.not_after(), ca.not_after());
}

#[test]
fn rotates_only_within_seven_days_of_expiry() {
    // (days after creation, expected origin); the CA lives 365 days.
    let cases = [
        (0, CaOrigin::Loaded),
        (357, CaOrigin::Loaded),
        (358, CaOrigin::Rotated),
        (400, CaOrigin::Rotated),
    ];
    for (days, expected) in cases {
        let (dir, ca) = test_ca();
        let later = now() + Duration::days(days);
        let loaded = CertificateAuthority::load_or_create(&state(&dir), later).unwrap();
        assert_eq!(loaded.origin(), expected, "after {days} days");
        let rotated = expected == CaOrigin::Rotated;
        assert_eq!(
            loaded.fingerprint_sha256() != ca.fingerprint_sha256(),
            rotated
        );
        if rotated {
            let old = state(&dir).join("ca.pem.old");
            assert_eq!(fs::read_to_string(old).unwrap(), ca.cert_pem());
            assert_eq!(mode(&state(&dir).join("ca-key.pem.old")), 0o600);
            assert_eq!(mode(&key_path(&state(&dir))), 0o600);
            assert!(loaded.not_after() > later + Duration::days(364));
        }
    }
}

#[test]
fn explicit_rotate_and_custom_validity() {
    let (dir, ca) = test_ca();
    let settings = CaSettings {
        validity: Duration::days(30),
        rotate_within: Duration::days(2),
    };
    let rotated = CertificateAuthority::rotate(&state(&dir), now(), &settings).unwrap();
    assert_eq!(rotated.origin(), CaOrigin::Rotated);
    assert_ne!(rotated.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!((rotated.not_after() - now()).whole_days(), 29);
    let reloaded =
        CertificateAuthority::load_or_create_with(&state(&dir), now(), &settings).unwrap();
    assert_eq!(reloaded.fingerprint_sha256(), rotated.fingerprint_sha256());
}

#[test]
fn group_or_world_readable_key_is_refused() {
    for bits in [0o644, 0o640, 0o604, 0o660] {
        let (dir, _ca) = test_ca();
        let key = key_path(&state(&dir));
        fs::set_permissions(&key, fs::Permissions::from_mode(bits)).unwrap();
        let err = CertificateAuthority::load_or_create(&state(&dir), now()).unwrap_err();
        assert!(matches!(err, CaError::KeyPermissions { mode, .. } if mode == bits));
        let msg = err.to_string();
        assert!(
            msg.contains("chmod 600") && msg.contains(&key.display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn debug_and_errors_never_show_the_key() {
    let (dir, ca) = test_ca();
    let key_pem = fs::read_to_string(key_path(&state(&dir))).unwrap();
    let body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let debug = format!("{ca:?}");
    assert!(debug.contains("[redacted]") && debug.contains(ca.fingerprint_sha256()));
    assert!(!debug.contains("PRIVATE KEY"));
    for line in &body {
        assert!(!debug.contains(line));
    }
    // A damaged key is reported by file name only.
    let bad = dir.path().join("bad-key.pem");
    let mut damaged: Vec<&str> = key_pem.lines().collect();
    damaged.remove(2);
    fs::write(&bad, damaged.join("\n")).unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
    let err = CertificateAuthority::from_files(&cert_path(&state(&dir)), &bad).unwrap_err();
    assert!(matches!(err, CaError::KeyParse { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    for line in &body {
        assert!(!shown.contains(line));
    }
}

#[test]
fn bring_your_own_ca_is_validated() {
    let (dir, ca) = test_ca();
    let (other_dir, _other) = test_ca();
    let cert = cert_path(&state(&dir));
    let key = key_path(&state(&dir));

    let provided = CertificateAuthority::from_files(&cert, &key).unwrap();
    assert_eq!(provided.origin(), CaOrigin::Provided);
    assert_eq!(provided.fingerprint_sha256(), ca.fingerprint_sha256());

    let err = CertificateAuthority::from_files(&cert, &key_path(&state(&other_dir))).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");

    let not_pem = dir.path().join("junk.pem");
    fs::write(&not_pem, "hello").unwrap();
    let err = CertificateAuthority::from_files(&not_pem, &key).unwrap_err();
    assert!(matches!(err, CaError::CertParse { .. }), "{err}");
}

#[tokio::test]
async fn leaf_certificate_is_not_accepted_as_ca() {
    let (dir, ca) = test_ca();
    let minter = crate::tls::LeafMinter::new(ca).unwrap();
    let host = crate::tls::LeafHost::parse("api.example.com").unwrap();
    let leaf = minter.certified_key(&host).await.unwrap();
    let leaf_pem = dir.path().join("leaf.pem");
    let der = leaf.cert[0].to_vec();
    fs::write(&leaf_pem, pem_of(&der)).unwrap();
    let err = CertificateAuthority::from_files(&leaf_pem, &key_path(&state(&dir))).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
}

#[test]
fn half_present_state_is_reported_not_replaced() {
    let (dir, _ca) = test_ca();
    fs::remove_file(key_path(&state(&dir))).unwrap();
    let err = CertificateAuthority::load_or_create(&state(&dir), now()).unwrap_err();
    assert!(matches!(err, CaError::IncompleteState { .. }), "{err}");
    assert!(cert_path(&state(&dir)).exists());
}

#[test]
fn fingerprint_is_openssl_style_sha256() {
    use sha2::Digest as _;
    let (_dir, ca) = test_ca();
    let expected: Vec<String> = sha2::Sha256::digest(ca.cert_der())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(ca.fingerprint_sha256(), expected.join(":"));
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}
