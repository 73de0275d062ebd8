use std::io::Write;

use serde_json::json;

use super::*;
use crate::audit::{AuditLog, AuditTarget, Kind, Record, Who};
use crate::testing::RedisServer;

fn q(session: Option<&str>, kind: Option<&str>, after: Option<&str>, limit: usize) -> AuditQuery {
    AuditQuery {
        session: session.map(str::to_owned),
        kind: kind.map(str::to_owned),
        after: after.map(str::to_owned),
        limit,
    }
}

fn sessions(page: &AuditPage) -> Vec<String> {
    page.records
        .iter()
        .map(|r| format!("{}/{}", r["session"].as_str().unwrap_or("-"), r["n"]))
        .collect()
}

#[test]
fn filters_as_a_table() {
    let rec = json!({"session": "s1", "kind": "dns"});
    let bare = json!({"kind": "sandbox"});
    for (session, kind, record, want) in [
        (None, None, &rec, true),
        (Some("s1"), None, &rec, true),
        (Some("s2"), None, &rec, false),
        (None, Some("dns"), &rec, true),
        (None, Some("request"), &rec, false),
        (Some("s1"), Some("dns"), &rec, true),
        (Some("s1"), Some("request"), &rec, false),
        (Some("s1"), None, &bare, false),
        (None, Some("sandbox"), &bare, true),
    ] {
        assert_eq!(
            matches(&q(session, kind, None, 1), record),
            want,
            "{session:?} {kind:?} {record}"
        );
    }
}

#[test]
fn stream_ids_as_a_table() {
    for (cursor, ok) in [
        ("0-0", true),
        ("1700000000000-12", true),
        ("-", false),
        ("+", false),
        ("$", false),
        ("12", false),
        ("1-2-3", false),
        ("(1-2", false),
        ("1-", false),
        ("a-1", false),
        ("", false),
    ] {
        assert_eq!(valid_stream_id(cursor), ok, "{cursor:?}");
    }
}

/// A file of 10 records: n = 0..10, sessions a/b alternating, every third one `dns`.
fn sample_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for n in 0..10 {
        let session = if n % 2 == 0 { "a" } else { "b" };
        let kind = if n % 3 == 0 { "dns" } else { "connection" };
        writeln!(
            file,
            "{}",
            json!({"n": n, "session": session, "kind": kind})
        )
        .unwrap();
    }
    writeln!(file, "not json").unwrap();
    (dir, path)
}

#[test]
fn file_query_filters_by_session_and_kind() {
    let (_dir, path) = sample_file();
    let page = query_file(&path, &q(Some("a"), None, None, 100)).unwrap();
    assert_eq!(sessions(&page), ["a/0", "a/2", "a/4", "a/6", "a/8"]);
    let page = query_file(&path, &q(None, Some("dns"), None, 100)).unwrap();
    assert_eq!(sessions(&page), ["a/0", "b/3", "a/6", "b/9"]);
    let page = query_file(&path, &q(Some("b"), Some("dns"), None, 100)).unwrap();
    assert_eq!(sessions(&page), ["b/3", "b/9"]);
}

#[test]
fn file_query_returns_the_newest_then_pages_forward() {
    let (_dir, path) = sample_file();
    let newest = query_file(&path, &q(None, None, None, 3)).unwrap();
    assert_eq!(sessions(&newest), ["b/7", "a/8", "b/9"]);
    let end = newest.next.clone();
    assert_eq!(end, std::fs::metadata(&path).unwrap().len().to_string());

    let first = query_file(&path, &q(None, None, Some("0"), 4)).unwrap();
    assert_eq!(sessions(&first), ["a/0", "b/1", "a/2", "b/3"]);
    let second = query_file(&path, &q(None, None, Some(&first.next), 4)).unwrap();
    assert_eq!(sessions(&second), ["a/4", "b/5", "a/6", "b/7"]);
    let third = query_file(&path, &q(None, None, Some(&second.next), 4)).unwrap();
    assert_eq!(sessions(&third), ["a/8", "b/9"]);
    assert_eq!(third.next, end);
    let past = (std::fs::metadata(&path).unwrap().len() + 1).to_string();
    assert!(matches!(
        query_file(&path, &q(None, None, Some(&past), 4)),
        Err(QueryError::BadCursor(_))
    ));
}

#[test]
fn file_query_leaves_a_partial_last_line_for_later() {
    let (_dir, path) = sample_file();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(file, r#"{{"n": 10, "session": "a", "ki"#).unwrap();
    let page = query_file(&path, &q(None, None, None, 1)).unwrap();
    assert_eq!(sessions(&page), ["b/9"]);
    writeln!(file, r#"nd": "dns"}}"#).unwrap();
    let page = query_file(&path, &q(None, None, Some(&page.next), 5)).unwrap();
    assert_eq!(sessions(&page), ["a/10"]);
}

#[tokio::test]
async fn file_follow_returns_new_records() {
    let (_dir, path) = sample_file();
    let only_a = q(Some("a"), None, None, 10);
    let waited = follow_file(&path, &only_a, Duration::from_millis(300)).await;
    assert!(waited.unwrap().records.is_empty());
    let follow = {
        let path = path.clone();
        tokio::spawn(async move {
            follow_file(&path, &q(Some("c"), None, None, 10), Duration::from_secs(5)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(file, "{}", json!({"n": 11, "session": "c", "kind": "dns"})).unwrap();
    let page = follow.await.unwrap().unwrap();
    assert_eq!(sessions(&page), ["c/11"]);
}

#[tokio::test]
async fn file_mode_writes_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::start(AuditTarget::File { path: path.clone() }).unwrap();
    for (session, kind) in [
        ("x", Kind::Dns),
        ("y", Kind::Connection),
        ("x", Kind::Request),
    ] {
        let mut record = Record::new(kind);
        record.who = Some(Who {
            session: Some(session.to_owned()),
            ..Who::default()
        });
        if kind == Kind::Connection {
            record.decision = crate::audit::Decision::Deny;
        }
        log.write(record);
    }
    // What /metrics shows as sluice_requests_total and sluice_refusals_total.
    assert_eq!((log.requests(), log.refusals()), (1, 1));
    drop(log);
    writer.finish().await.unwrap();
    let page = query_file(&path, &q(Some("x"), None, None, 10)).unwrap();
    let kinds: Vec<&str> = page
        .records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dns", "request"]);
    assert!(
        page.records
            .iter()
            .all(|r| r.get("seq").is_none() && r.get("node").is_none())
    );
}

#[tokio::test]
async fn redis_query_pages_and_follows() {
    let redis = RedisServer::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let target = AuditTarget::Redis {
        url: redis.url(),
        stream_key: "q:audit".to_owned(),
        max_len: 100_000,
        spool_dir: spool.path().to_path_buf(),
        spool_max_bytes: 1 << 20,
        node_id: "n".to_owned(),
    };
    let (log, writer) = AuditLog::start(target).unwrap();
    let write = |log: &AuditLog, count: usize| {
        for i in 0..count {
            let mut record = Record::new(if i % 2 == 0 {
                Kind::Dns
            } else {
                Kind::Connection
            });
            record.who = Some(Who {
                session: Some(["a", "b", "c"][i % 3].to_owned()),
                ..Who::default()
            });
            log.write(record);
        }
    };
    write(&log, 1200);
    let mut conn = redis.connection().await.unwrap();
    let seqs = |page: &AuditPage| -> Vec<u64> {
        page.records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let mut tail = AuditPage::default();
    for _ in 0..500 {
        tail = query_redis(&mut conn, "q:audit", &q(None, None, None, 2))
            .await
            .unwrap();
        if seqs(&tail) == [1199, 1200] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seqs(&tail), [1199, 1200]);

    // Session a is seq 1, 4, 7, …; paging forward crosses the 500-entry Redis pages.
    let mut after = "0-0".to_owned();
    let mut all = Vec::new();
    loop {
        let page = query_redis(&mut conn, "q:audit", &q(Some("a"), None, Some(&after), 150))
            .await
            .unwrap();
        if page.records.is_empty() {
            break;
        }
        all.extend(seqs(&page));
        after = page.next;
    }
    assert_eq!(all, (0..400).map(|i| 1 + 3 * i).collect::<Vec<u64>>());
    let dns_b = query_redis(&mut conn, "q:audit", &q(Some("b"), Some("dns"), None, 3))
        .await
        .unwrap();
    assert_eq!(seqs(&dns_b), [1187, 1193, 1199]);
    let bad = query_redis(&mut conn, "q:audit", &q(None, None, Some("-"), 3)).await;
    assert!(matches!(bad, Err(QueryError::BadCursor(_))));

    // Following: nothing new within the wait, then a new record for session c.
    let quiet = follow_redis(
        &mut conn,
        "q:audit",
        &q(Some("c"), None, Some(&tail.next), 10),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert!(quiet.records.is_empty());
    assert_eq!(quiet.next, tail.next);
    write(&log, 3); // sessions a, b, c → seq 1201..=1203
    let mut follow_conn = redis.connection().await.unwrap();
    let page = follow_redis(
        &mut follow_conn,
        "q:audit",
        &q(Some("c"), None, Some(&tail.next), 10),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(seqs(&page), [1203]);
    drop(log);
    writer.finish().await.unwrap();
}
