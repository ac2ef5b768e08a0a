//! The same batch sent twice is stored and counted once.

use crate::harness::{event, ndjson, post, read_store, Sink};

#[test]
fn same_batch_twice_stores_one_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let monitor = uuid::Uuid::new_v4().to_string();
    let lines: Vec<String> = (1..=300).map(|i| event(&monitor, i, "s-idem")).collect();
    let body = ndjson(&lines);
    let (s1, r1) = post(&sink, body.clone(), &[]);
    assert_eq!(s1, 200, "{r1}");
    assert_eq!(
        (r1["written"].as_u64(), r1["duplicates"].as_u64()),
        (Some(300), Some(0))
    );
    let (s2, r2) = post(&sink, body, &[]);
    assert_eq!(s2, 200, "{r2}");
    assert_eq!(
        (r2["written"].as_u64(), r2["duplicates"].as_u64()),
        (Some(0), Some(300))
    );
    let metrics = sink.metrics();
    assert!(
        metrics.contains("fdb_sink_events_written_total 300"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fdb_sink_events_duplicate_total 300"),
        "{metrics}"
    );
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 300);
    assert_eq!(stored.sessions[0].events, 300, "session counted once");
    assert_eq!(stored.monitors[0].received, 300, "monitor counted once");
    assert_eq!(stored.monitors[0].max_seq, 300);
}
