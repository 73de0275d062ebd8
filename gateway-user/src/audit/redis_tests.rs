use std::time::{Duration, Instant};

use super::*;
use crate::audit::{AuditLog, AuditTarget, Kind, Who};
use crate::testing::RedisServer;

const KEY: &str = "sluice:audit";

fn target(redis: &RedisServer, spool: &std::path::Path, max_len: u64) -> AuditTarget {
    AuditTarget::Redis {
        url: redis.url(),
        stream_key: KEY.to_owned(),
        max_len,
        spool_dir: spool.to_path_buf(),
        spool_max_bytes: 1 << 30,
        node_id: "node-a".to_owned(),
    }
}

fn record(session: &str, kind: Kind) -> Record {
    let mut record = Record::new(kind);
    record.who = Some(Who {
        session: Some(session.to_owned()),
        ..Who::default()
    });
    record
}

fn write_n(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.write(record(&format!("s{}", i % 3), Kind::Connection));
    }
}

/// Longest any wait here may take before the test fails as hung; not a speed requirement.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Waits until `done` holds (failing the test if it never does).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG_GUARD, "hung waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every entry in the stream: (seq field, record JSON).
async fn stream(redis: &RedisServer) -> Vec<(u64, serde_json::Value)> {
    let mut conn = redis.connection().await.unwrap();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(KEY)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .map(|id| {
            let seq: u64 = id.get("seq").unwrap();
            let json: String = id.get("record").unwrap();
            (seq, serde_json::from_str(&json).unwrap())
        })
        .collect()
}

fn assert_contiguous(entries: &[(u64, serde_json::Value)], first: u64, count: u64) {
    let seqs: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
    let want: Vec<u64> = (first..first + count).collect();
    assert_eq!(
        seqs,
        want,
        "stream seqs are not exactly {first}..{}",
        first + count
    );
    for (seq, record) in entries {
        assert_eq!(record["seq"], *seq);
        assert_eq!(record["node"], "node-a");
    }
}

fn spool_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
        .collect()
}

#[tokio::test]
async fn records_arrive_in_order_with_seq_and_filter_fields() {
    let redis = RedisServer::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    write_n(&log, 600);
    log.write(record("other", Kind::Dns));
    until("601 written", || log.written() == 601).await;
    assert_eq!((log.spooled(), log.dropped()), (0, 0));
    drop(log);
    writer.finish().await.unwrap();

    let entries = stream(&redis).await;
    assert_contiguous(&entries, 1, 601);
    assert_eq!(entries[600].1["kind"], "dns");
    let mut conn = redis.connection().await.unwrap();
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(KEY)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let last = &last.ids[0];
    assert_eq!(last.get::<String>("session").unwrap(), "other");
    assert_eq!(last.get::<String>("kind").unwrap(), "dns");
    assert_eq!(last.get::<String>("node").unwrap(), "node-a");
    let stored: u64 = redis::cmd("GET")
        .arg(last_seq_key(KEY, "node-a"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 601);
}

#[tokio::test]
async fn stream_length_stays_near_its_bound() {
    let redis = RedisServer::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 200)).unwrap();
    write_n(&log, 3000);
    drop(log);
    writer.finish().await.unwrap();
    let mut conn = redis.connection().await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default).
    assert!((200..=400).contains(&len), "stream length {len}");
}

#[tokio::test]
async fn outage_spools_then_replays_every_record_exactly_once() {
    let mut redis = RedisServer::start_durable().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    write_n(&log, 100);
    until("100 written", || log.written() == 100).await;

    redis.kill();
    // Writing is a channel send: it returns whatever Redis does, and the writer spools.
    write_n(&log, 1000);
    until("1000 spooled", || log.spooled() == 1000).await;
    let files = spool_files(spool.path());
    assert!(!files.is_empty());
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(bytes > 1000 * 50, "spool holds {bytes} bytes");
    assert_eq!(log.written(), 100);

    redis.restart().unwrap();
    until("replay", || log.written() == 1100).await;
    write_n(&log, 10); // direct again once the spool is empty
    until("10 more", || log.written() == 1110).await;
    assert_eq!((log.replayed(), log.dropped()), (1000, 0));
    assert!(
        spool_files(spool.path()).is_empty(),
        "replayed spool files are removed"
    );
    drop(log);
    writer.finish().await.unwrap();
    assert_contiguous(&stream(&redis).await, 1, 1110);
}

#[tokio::test]
async fn a_hung_redis_times_out_and_the_late_batch_is_not_duplicated() {
    let redis = RedisServer::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    write_n(&log, 10);
    until("10 written", || log.written() == 10).await;

    redis.pause().unwrap(); // the next batch is sent, then its reply never comes
    write_n(&log, 50);
    assert_eq!(
        log.written(),
        10,
        "the writes returned while Redis is frozen"
    );
    // Spooled while the server is still frozen and the connection still open: only the
    // writer's own timeout can have given up on the call.
    until("the hung batch spooled", || log.spooled() == 50).await;
    assert_eq!(log.written(), 10);

    redis.resume().unwrap(); // runs the hung call (an ambiguous success), then the replay
    until("replay", || log.written() == 60).await;
    drop(log);
    writer.finish().await.unwrap();
    assert_contiguous(&stream(&redis).await, 1, 60);
}

#[tokio::test]
async fn the_same_batch_sent_twice_is_stored_once() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis.connection().await.unwrap();
    let script = append_script();
    let keys = (KEY, "sluice:audit:node:n:last_seq");
    let entries: Vec<Entry> = (1..=3)
        .map(|seq| {
            let mut r = record("s", Kind::Dns);
            r.seq = seq;
            Entry::from_record(&r).unwrap()
        })
        .collect();
    let add = async |conn: &mut redis::aio::MultiplexedConnection, batch: &[Entry]| {
        append_batch(&script, conn, keys, 1000, "n", batch)
            .await
            .unwrap()
    };
    assert_eq!(add(&mut conn, &entries).await, 3);
    assert_eq!(
        add(&mut conn, &entries).await,
        0,
        "a retried batch adds nothing"
    );
    let mut overlapping = entries[1..].to_vec();
    let mut fourth = record("s", Kind::Dns);
    fourth.seq = 4;
    overlapping.push(Entry::from_record(&fourth).unwrap());
    assert_eq!(
        add(&mut conn, &overlapping).await,
        1,
        "only the new record of a mixed batch"
    );
    let seqs: Vec<u64> = stream(&redis).await.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_restarted_writer_continues_the_sequence() {
    let redis = RedisServer::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
        write_n(&log, 10);
        drop(log);
        writer.finish().await.unwrap();
    }
    assert_contiguous(&stream(&redis).await, 1, 20);

    // A lost counter file (spool dir reset): numbers continue after Redis's, never reused.
    std::fs::remove_file(spool.path().join("seq")).unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    write_n(&log, 5);
    drop(log);
    writer.finish().await.unwrap();
    assert_contiguous(&stream(&redis).await, 1, 25);
}

#[tokio::test]
async fn spool_left_at_shutdown_is_replayed_by_the_next_writer() {
    let mut redis = RedisServer::start_durable().unwrap();
    let spool = tempfile::tempdir().unwrap();
    redis.kill();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    write_n(&log, 300);
    drop(log);
    writer.finish().await.unwrap();
    assert!(!spool_files(spool.path()).is_empty());

    redis.restart().unwrap();
    let (log, writer) = AuditLog::start(target(&redis, spool.path(), 100_000)).unwrap();
    until("replay at start", || log.replayed() == 300).await;
    write_n(&log, 1);
    drop(log);
    writer.finish().await.unwrap();
    assert_contiguous(&stream(&redis).await, 1, 301);
}

#[tokio::test]
async fn full_spool_drops_new_records_and_counts_them() {
    let mut redis = RedisServer::start().unwrap();
    redis.kill();
    let spool = tempfile::tempdir().unwrap();
    let mut target = target(&redis, spool.path(), 100_000);
    if let AuditTarget::Redis {
        spool_max_bytes, ..
    } = &mut target
    {
        *spool_max_bytes = 4096;
    }
    let (log, writer) = AuditLog::start(target).unwrap();
    for _ in 0..20 {
        write_n(&log, 10); // one batch each: ~1.5 KiB
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    until("all accounted", || log.spooled() + log.dropped() == 200).await;
    assert!(
        log.spooled() > 0 && log.dropped() > 0,
        "{} {}",
        log.spooled(),
        log.dropped()
    );
    drop(log);
    writer.finish().await.unwrap();
}

#[tokio::test]
async fn misconfigured_targets_are_refused_at_start() {
    let spool = tempfile::tempdir().unwrap();
    let base = |url: &str, key: &str, max_len: u64, node: &str| AuditTarget::Redis {
        url: url.to_owned(),
        stream_key: key.to_owned(),
        max_len,
        spool_dir: spool.path().to_path_buf(),
        spool_max_bytes: 1 << 20,
        node_id: node.to_owned(),
    };
    let ok = "redis+unix:///nonexistent.sock";
    for (target, says) in [
        (base("http://u:hunter2@x", KEY, 10, "n"), "URL"),
        (base(ok, "", 10, "n"), "stream key"),
        (base(ok, KEY, 0, "n"), "max length"),
        (base(ok, KEY, 10, ""), "node id"),
    ] {
        let err = AuditLog::start(target.clone()).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{target:?}").contains("hunter2"));
    }
    // One writer per spool dir.
    let (log, writer) = AuditLog::start(base(ok, KEY, 10, "n")).unwrap();
    let err = AuditLog::start(base(ok, KEY, 10, "n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use"), "{err}");
    drop(log);
    writer.finish().await.unwrap();
}
