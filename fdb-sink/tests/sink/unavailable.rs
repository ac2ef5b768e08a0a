//! 503 + Retry-After while the store is unavailable, 200 once it is back.
//!
//! The embedded store is made unavailable for real: another process-level
//! holder takes the exclusive `flock` that the embedded store holds on
//! `audit.fjall/lock` (as a second `fdb-sink` on the same directory would), so
//! the sink cannot open it.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};

use crate::harness::{client, event, post, read_store, Sink};
use crate::store_faults::{assert_tells_only_to_retry, log_says};

#[test]
fn store_unavailable_then_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("audit.fjall");
    std::fs::create_dir_all(&db).expect("mkdir");
    let file = File::create(db.join("lock")).expect("create");
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("flock");

    let mut sink = Sink::start(dir.path(), &["--retry-after-secs", "3"]);
    sink.wait_ready(503);
    let monitor = uuid::Uuid::new_v4().to_string();
    let body: Vec<u8> = (1..=50)
        .map(|i| event(&monitor, i, "s-down"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    let resp = client()
        .post(sink.url("/v1/events"))
        .body(body.clone())
        .send()
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let answer: serde_json::Value =
        serde_json::from_str(&resp.text().expect("body")).expect("JSON body");
    assert_tells_only_to_retry(&answer, dir.path());
    assert!(
        log_says(&sink, "locked by another process"),
        "the sink's log keeps the cause"
    );
    let m = sink.metrics();
    assert!(m.contains("fdb_sink_store_up 0"), "{m}");

    drop(lock);
    sink.wait_ready(200);
    let (s, r) = post(&sink, body, &[]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(50)), "{r}");
    let m = sink.metrics();
    assert!(m.contains("fdb_sink_store_up 1"), "{m}");
    assert!(
        m.contains("fdb_sink_http_requests_total{code=\"503\"} 1"),
        "{m}"
    );
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len(), 50);
}
