//! Redis store tests against a real `redis-server` on a unix socket in a temp dir.

use std::time::Duration;

use super::*;
use crate::session::store::tests::{PROXY_PASSWORD, SECRET, new_session};
use crate::testing::RedisServer;

/// Longest a revocation may take to arrive before the test fails as hung; not a speed
/// requirement (the push takes milliseconds).
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    server.connection().await.unwrap()
}

#[tokio::test]
async fn crud_ttl_and_token_index() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let key = MasterKey::generate().unwrap();
    let (session, token) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();

    assert_eq!(store.get(&session.id).await.unwrap().unwrap(), session);
    let found = store.find_by_token(&token.digest()).await.unwrap().unwrap();
    assert_eq!(found.id, session.id);
    assert_eq!(
        found
            .open_credential("github", &key)
            .unwrap()
            .unwrap()
            .expose(),
        SECRET
    );
    assert!(
        store
            .find_by_token(&TokenDigest::of("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get("ses_missing").await.unwrap().is_none());

    let mut conn = raw(&server).await;
    let session_key = format!("t:session:{}", session.id);
    let token_key = format!("t:token:{}", token.digest().to_hex());
    for key in [&session_key, &token_key] {
        let ttl: i64 = cmd("TTL").arg(key).query_async(&mut conn).await.unwrap();
        assert!((590..=600).contains(&ttl), "{key}: TTL {ttl}");
    }
    let indexed: String = cmd("GET")
        .arg(&token_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, session.id);

    assert!(store.activate(&session.id).await.unwrap());
    assert!(!store.activate(&session.id).await.unwrap());
    assert_eq!(
        store.get(&session.id).await.unwrap().unwrap().state,
        SessionState::Active
    );

    // Listing skips (and forgets) ids whose session has expired.
    let _: i64 = cmd("SADD")
        .arg("t:sessions")
        .arg("ses_gone")
        .query_async(&mut conn)
        .await
        .unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [session.id.as_str()]
    );
    let member: i64 = cmd("SISMEMBER")
        .arg("t:sessions")
        .arg("ses_gone")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(member, 0);

    assert!(store.revoke(&session.id).await.unwrap());
    let revoked = store.find_by_token(&token.digest()).await.unwrap().unwrap();
    assert_eq!(revoked.state, SessionState::Revoked);
    assert!(!store.activate(&session.id).await.unwrap());
    let ttl: i64 = cmd("TTL")
        .arg(&session_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "revoked session keeps its expiry ({ttl})");
    assert!(!store.revoke("ses_missing").await.unwrap());
    let exists: i64 = cmd("EXISTS")
        .arg("t:session:ses_missing")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "revoking a missing session creates nothing");
}

/// Two nodes sharing one Redis, node B listening for session changes, and a session node A
/// created.
async fn two_nodes_and_a_session() -> (
    RedisServer,
    RedisStore,
    RedisStore,
    tokio::sync::broadcast::Receiver<String>,
    Session,
) {
    let server = RedisServer::start().unwrap();
    let node_a = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let node_b = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let on_b = node_b.revocations();
    let key = MasterKey::generate().unwrap();
    let (session, _) = node_a
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    (server, node_a, node_b, on_b, session)
}

#[tokio::test]
async fn revocation_is_pushed_to_another_node() {
    let (_server, node_a, node_b, mut on_b, session) = two_nodes_and_a_session().await;
    assert!(node_a.revoke(&session.id).await.unwrap());
    let got = tokio::time::timeout(HANG_GUARD, on_b.recv())
        .await
        .expect("node B is told of the revocation")
        .unwrap();
    assert_eq!(got, session.id);
    assert_eq!(
        node_b.get(&session.id).await.unwrap().unwrap().state,
        SessionState::Revoked
    );
}

#[tokio::test]
async fn a_new_policy_reaches_another_node() {
    let (server, node_a, node_b, mut on_b, session) = two_nodes_and_a_session().await;
    let policy = crate::policy::PolicySpec {
        deny: vec!["*.blocked.test".into()],
        ..Default::default()
    };
    assert!(node_a.set_policy(&session.id, &policy).await.unwrap());
    let got = tokio::time::timeout(HANG_GUARD, on_b.recv())
        .await
        .expect("node B is told to read the session again")
        .unwrap();
    assert_eq!(got, session.id);
    let on_node_b = node_b.get(&session.id).await.unwrap().unwrap();
    assert_eq!(on_node_b.policy, policy);
    assert_eq!(on_node_b.state, SessionState::Pending);
    assert!(!node_a.set_policy("ses_missing", &policy).await.unwrap());
    let mut conn = raw(&server).await;
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg("t:session:ses_missing")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a policy for a missing session creates nothing");
}

#[tokio::test]
async fn keyspace_holds_no_plaintext_secret_or_token() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let key = MasterKey::generate().unwrap();
    let (session, token) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    store.activate(&session.id).await.unwrap();

    let mut conn = raw(&server).await;
    let keys: Vec<String> = cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let mut dump: Vec<u8> = Vec::new();
    for key in &keys {
        dump.extend_from_slice(key.as_bytes());
        let kind: String = cmd("TYPE").arg(key).query_async(&mut conn).await.unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![cmd("GET").arg(key).query_async(&mut conn).await.unwrap()],
            "hash" => cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => cmd("SMEMBERS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => unreachable!("unexpected key type {other}"),
        };
        for value in values {
            dump.extend_from_slice(&value);
            dump.push(b'\n');
        }
    }
    let contains = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    assert!(contains(session.id.as_bytes()), "the dump is real");
    assert!(!contains(SECRET), "credential value in Redis");
    assert!(
        !contains(PROXY_PASSWORD.as_bytes()),
        "proxy password in Redis"
    );
    assert!(!contains(token.expose().as_bytes()), "token in Redis");
    assert!(
        !contains(&token.expose().as_bytes()[11..]),
        "token body in Redis"
    );
}

#[tokio::test]
async fn resubscribes_after_an_outage_and_signals_resync() {
    let mut server = RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let mut revocations = store.revocations();
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = store.list().await.unwrap_err();
    assert!(err.to_string().starts_with("store: unreachable ("), "{err}");
    server.restart().unwrap();
    let got = tokio::time::timeout(HANG_GUARD, revocations.recv())
        .await
        .expect("resync")
        .unwrap();
    assert_eq!(got, RESYNC);
    // Revocations flow again.
    let key = MasterKey::generate().unwrap();
    let (session, _) = store
        .create(new_session(Duration::from_secs(600)), &key)
        .await
        .unwrap();
    store.revoke(&session.id).await.unwrap();
    let got = tokio::time::timeout(HANG_GUARD, revocations.recv())
        .await
        .expect("revocations flow again")
        .unwrap();
    assert_eq!(got, session.id);
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis+unix://{}/absent.sock", dir.path().display());
    let err = RedisStore::connect(&url, "t:").await.unwrap_err();
    assert!(err.to_string().starts_with("store: unreachable ("), "{err}");
    let err = RedisStore::connect("http://user:hunter2@host", "t:")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not a usable Redis URL"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn stored_proxies_follow_the_store_contract_reach_other_nodes_and_stay_sealed() {
    use crate::session::proxies::tests::{STORED_PASSWORD, kept_spec, proxies_contract};
    let server = RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let other = RedisStore::connect(&server.url(), "t:").await.unwrap();
    let mut other_changes = other.proxy_changes();
    proxies_contract(&store).await;
    let heard = tokio::time::timeout(HANG_GUARD, other_changes.recv()).await;
    assert!(
        matches!(heard, Ok(Ok(()))),
        "another node hears of the change"
    );

    let key = MasterKey::generate().unwrap();
    let spec = kept_spec(true, &[]);
    let stored = crate::session::StoredProxy::seal(&spec, &key).unwrap();
    assert!(
        store
            .put_proxy(stored.clone(), crate::session::Put::Create)
            .await
            .unwrap()
    );
    let default = crate::session::StoredDefault::seal("kept", &key).unwrap();
    assert!(store.set_default_proxy(default).await.unwrap());
    let seen = other.proxies().await.unwrap();
    assert_eq!(seen.proxies, [stored]);
    assert_eq!(seen.default_id(), Some("kept"));

    let mut conn = raw(&server).await;
    let dump: Vec<(String, String)> = cmd("HGETALL")
        .arg("t:proxies")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dump.len(), 1);
    assert!(!dump[0].1.contains(STORED_PASSWORD), "{}", dump[0].1);

    // What nobody with this code wrote is reported per entry, never fatal, never dropped.
    let _: () = cmd("HSET")
        .arg("t:proxies")
        .arg("junk")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = cmd("SET")
        .arg("t:proxy-default")
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();
    let table = store.proxies().await.unwrap();
    assert_eq!(table.proxies.len(), 1, "the readable entry stays");
    assert_eq!(table.unreadable[0].0, "junk");
    assert!(table.default.is_none() && table.default_unreadable.is_some());
    assert!(
        store.unset_default_proxy("kept").await.unwrap(),
        "an unreadable default can be cleared"
    );
}
