//! Tests for `crypto`.

use super::*;

#[test]
fn seal_open_round_trip_and_binding() {
    let key = MasterKey::generate().unwrap();
    let aad = credential_aad("ses_a", "github");
    let sealed = key.seal(b"ghp_secretvalue", &aad).unwrap();
    assert_ne!(&sealed.ciphertext[..15], b"ghp_secretvalue");
    assert_eq!(
        key.open(&sealed, &aad).unwrap().expose(),
        b"ghp_secretvalue"
    );

    // Moved to another session or credential: refused.
    for wrong in [
        credential_aad("ses_b", "github"),
        credential_aad("ses_a", "gitlab"),
    ] {
        assert!(matches!(key.open(&sealed, &wrong), Err(CryptoError::Open)));
    }
    // Tampered ciphertext, tag or nonce: refused.
    for index in [0, sealed.ciphertext.len() - 1] {
        let mut bad = sealed.clone();
        bad.ciphertext[index] ^= 1;
        assert!(matches!(key.open(&bad, &aad), Err(CryptoError::Open)));
    }
    let mut bad = sealed.clone();
    bad.nonce[0] ^= 1;
    assert!(matches!(key.open(&bad, &aad), Err(CryptoError::Open)));
    // Another key: refused.
    let other = MasterKey::generate().unwrap();
    assert!(matches!(other.open(&sealed, &aad), Err(CryptoError::Open)));
    // Fresh nonce each time.
    assert_ne!(
        key.seal(b"x", &aad).unwrap().nonce,
        key.seal(b"x", &aad).unwrap().nonce
    );
}

#[test]
fn sealed_serializes_as_base64() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal(b"value", b"aad").unwrap();
    let json = serde_json::to_value(&sealed).unwrap();
    let nonce = json["nonce"].as_str().unwrap();
    assert_eq!(STANDARD.decode(nonce).unwrap(), sealed.nonce);
    let back: Sealed = serde_json::from_value(json).unwrap();
    assert_eq!(back, sealed);
    assert_eq!(format!("{sealed:?}"), "Sealed(21 bytes)");
}

#[test]
fn key_file_is_created_0600_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/master.key");
    let key = MasterKey::load(KeySource::File(path.clone())).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let again = MasterKey::load(KeySource::File(path.clone())).unwrap();
    assert_eq!(*key.0, *again.0);
    let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file left behind");
    assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
}

#[test]
fn group_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    MasterKey::load(KeySource::File(path.clone())).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = MasterKey::load(KeySource::File(path.clone())).unwrap_err();
    assert!(matches!(err, CryptoError::Permissions { mode: 0o640, .. }));
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
}

#[test]
fn inline_key_errors_name_the_problem() {
    let good = STANDARD.encode([7u8; 32]);
    assert!(MasterKey::load(KeySource::Inline(Zeroizing::new(good.clone()))).is_ok());
    let cases = [
        ("", "set but empty"),
        ("not base64!", "not standard base64"),
        ("AAAA", "holds 3 bytes, expected 32"),
    ];
    for (text, want) in cases {
        let err = MasterKey::load(KeySource::Inline(Zeroizing::new(text.into()))).unwrap_err();
        assert!(err.to_string().contains(want), "{text:?}: {err}");
        assert!(err.to_string().contains(MASTER_KEY_ENV) || text.is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    fs::write(&path, "AAAA\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = MasterKey::load(KeySource::File(path.clone())).unwrap_err();
    assert!(err.to_string().contains("expected 32"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let shown = format!("{:?}", KeySource::Inline(Zeroizing::new(good.clone())));
    assert!(!shown.contains(&good));
}
