//! Tests for `embedded`.

use std::time::Duration;

use super::*;
use crate::session::store::tests::{PROXY_PASSWORD, SECRET, new_session};

#[tokio::test]
async fn crud_and_token_lookup() {
    let store = EmbeddedStore::in_memory();
    let key = MasterKey::generate().unwrap();
    let (session, token) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    assert_eq!(store.get(&session.id).await.unwrap().unwrap(), session);
    let found = store.find_by_token(&token.digest()).await.unwrap().unwrap();
    assert_eq!(found.id, session.id);
    assert!(
        store
            .find_by_token(&TokenDigest::of("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get("ses_missing").await.unwrap().is_none());

    assert!(store.activate(&session.id).await.unwrap());
    assert!(
        !store.activate(&session.id).await.unwrap(),
        "already active"
    );
    assert_eq!(
        store.get(&session.id).await.unwrap().unwrap().state,
        SessionState::Active
    );

    let (second, _) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&session.id) && listed.contains(&second.id));

    let invalid = store
        .create(new_session(Duration::ZERO), &key)
        .await
        .unwrap_err();
    assert!(invalid.to_string().contains("ttl"), "{invalid}");
}

#[tokio::test]
async fn revoke_is_broadcast_and_sticks() {
    let store = EmbeddedStore::in_memory();
    let key = MasterKey::generate().unwrap();
    let mut revocations = store.revocations();
    let (session, _) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    assert!(store.revoke(&session.id).await.unwrap());
    let got = tokio::time::timeout(Duration::from_secs(1), revocations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, session.id);
    let stored = store.get(&session.id).await.unwrap().unwrap();
    assert_eq!(stored.state, SessionState::Revoked);
    assert!(
        !store.activate(&session.id).await.unwrap(),
        "revoked stays revoked"
    );
    assert!(!store.revoke("ses_missing").await.unwrap());
}

#[tokio::test]
async fn expired_sessions_read_expired_then_are_pruned() {
    let store = EmbeddedStore::in_memory();
    let key = MasterKey::generate().unwrap();
    let (session, token) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    // Backdate the session, as if 600 s had passed.
    store
        .table
        .lock()
        .await
        .by_id
        .get_mut(&session.id)
        .unwrap()
        .expires_at = unix_now() - 1;
    let read = store.find_by_token(&token.digest()).await.unwrap().unwrap();
    assert_eq!(read.state, SessionState::Expired);
    assert!(!read.is_usable(unix_now()));
    assert!(!store.activate(&session.id).await.unwrap());
    // The next write prunes it.
    store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    assert!(store.get(&session.id).await.unwrap().is_none());
    assert!(
        store
            .find_by_token(&token.digest())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn persists_across_reopen_without_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key = MasterKey::generate().unwrap();
    let (session, token) = {
        let store = EmbeddedStore::open(&state).unwrap();
        let created = store
            .create(new_session(Duration::from_secs(600)), &key)
            .await
            .unwrap();
        store.activate(&created.0.id).await.unwrap();
        created
    };
    let path = state.join(SESSIONS_FILE);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let text = fs::read(&path).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains(std::str::from_utf8(SECRET).unwrap()));
    assert!(!text.contains(PROXY_PASSWORD) && !text.contains(token.expose()));

    let reopened = EmbeddedStore::open(&state).unwrap();
    let back = reopened
        .find_by_token(&token.digest())
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(back.id, session.id);
    assert_eq!(back.state, SessionState::Active);
    assert_eq!(
        back.open_credential("github", &key)
            .unwrap()
            .unwrap()
            .expose(),
        SECRET
    );
    assert_eq!(
        fs::read_dir(&state).unwrap().count(),
        1,
        "no temporary file left"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = EmbeddedStore::open(&state).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, "{not json").unwrap();
    let err = EmbeddedStore::open(&state).unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
}

#[tokio::test]
async fn stored_proxies_follow_the_store_contract_and_survive_reopen() {
    use crate::session::proxies::tests::{STORED_PASSWORD, kept_spec, proxies_contract};
    proxies_contract(&EmbeddedStore::in_memory()).await;

    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    proxies_contract(&store).await;
    let key = MasterKey::generate().unwrap();
    let spec = kept_spec(false, &["10.0.0.0/8"]);
    let stored = StoredProxy::seal(&spec, &key).unwrap();
    assert!(store.put_proxy(stored.clone(), Put::Create).await.unwrap());
    let default = crate::session::StoredDefault::seal("kept", &key).unwrap();
    assert!(store.set_default_proxy(default).await.unwrap());
    drop(store);

    let path = dir.path().join(PROXIES_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(STORED_PASSWORD), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    let table = reopened.proxies().await.unwrap();
    assert_eq!(table.proxies, [stored]);
    assert_eq!(table.default_id(), Some("kept"));
}

#[tokio::test]
async fn a_new_policy_is_stored_announced_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut changes = store.revocations();
    let (session, _) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    let policy = crate::policy::PolicySpec {
        allow: Some(vec!["api.example.test".into()]),
        ..Default::default()
    };
    assert!(store.set_policy(&session.id, &policy).await.unwrap());
    let got = tokio::time::timeout(Duration::from_secs(1), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, session.id, "caches are told to read it again");
    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    let stored = reopened.get(&session.id).await.unwrap().unwrap();
    assert_eq!(stored.policy, policy);
    assert_eq!(stored.state, session.state, "only the policy changed");
    assert!(!reopened.set_policy("ses_missing", &policy).await.unwrap());
}
