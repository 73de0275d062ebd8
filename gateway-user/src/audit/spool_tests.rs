use super::*;

fn entry(seq: u64) -> Entry {
    let json = format!(r#"{{"seq":{seq},"kind":"dns","session":"s"}}"#);
    Entry::from_line(&json).unwrap()
}

fn entries(seqs: std::ops::Range<u64>) -> Vec<Entry> {
    seqs.map(entry).collect()
}

fn drain(spool: &mut Spool, chunk: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let batch: Vec<u64> = spool.peek(chunk).unwrap().iter().map(|e| e.seq).collect();
        if batch.is_empty() {
            return seen;
        }
        spool.confirm(batch.len()).unwrap();
        seen.extend(batch);
    }
}

#[test]
fn replays_in_order_and_removes_confirmed_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.append(&entries(1..4)).unwrap(), Appended::Stored);
    assert_eq!(spool.append(&entries(4..6)).unwrap(), Appended::Stored);
    assert!(!spool.is_empty());
    assert_eq!(drain(&mut spool, 2), vec![1, 2, 3, 4, 5]);
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn appends_during_replay_come_after_the_replayed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append(&entries(1..3)).unwrap();
    assert_eq!(spool.peek(1).unwrap()[0].seq, 1);
    spool.append(&entries(3..5)).unwrap();
    assert_eq!(drain(&mut spool, 10), vec![1, 2, 3, 4]);
}

#[test]
fn unconfirmed_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append(&entries(1..5)).unwrap();
    spool.peek(2).unwrap();
    spool.confirm(2).unwrap(); // the segment is kept until all of it is confirmed
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.max_seq().unwrap(), 4);
    assert_eq!(drain(&mut spool, 10), vec![1, 2, 3, 4]);
}

#[test]
fn full_spool_refuses_new_batches_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let one = entries(1..2)[0].json.len() as u64 + 1;
    let mut spool = Spool::open(dir.path(), one * 3).unwrap();
    assert_eq!(spool.append(&entries(1..3)).unwrap(), Appended::Stored);
    assert_eq!(spool.append(&entries(3..5)).unwrap(), Appended::Full);
    assert_eq!(spool.append(&entries(5..6)).unwrap(), Appended::Stored);
    assert_eq!(drain(&mut spool, 10), vec![1, 2, 5]);
    assert_eq!(spool.append(&entries(6..8)).unwrap(), Appended::Stored);
}

#[test]
fn torn_last_line_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append(&entries(1..3)).unwrap();
    drop(spool);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(r#"{"seq":3,"ki"#);
    std::fs::write(&file, text).unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(drain(&mut spool, 10), vec![1, 2]);
    assert_eq!(spool.take_corrupt(), 1);
    assert_eq!(spool.take_corrupt(), 0);
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut spool = Spool::open(&spool_dir, 1 << 20).unwrap();
    spool.append(&entries(1..2)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    let file = std::fs::read_dir(&spool_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&file), 0o600);
}
