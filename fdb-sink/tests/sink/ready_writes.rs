//! `/readyz` follows whether the store takes writes: at once after a commit
//! failed, and from the start for a store that opens but cannot write (a
//! full disk), without waiting for a client's batch to fail.

use std::time::{Duration, Instant};

use crate::harness::{client, post, read_store, Sink};
use crate::store_faults::{batch, SmallDisk};

fn readyz(sink: &Sink) -> u16 {
    client()
        .get(sink.url("/readyz"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The first batch the full disk refuses makes the sink not ready at
/// once: `/readyz` asked right after the 503 answers 503, and
/// `fdb_sink_store_up` is 0.
#[test]
fn readiness_follows_a_failed_commit_at_once() {
    let Some(disk) = SmallDisk::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store_dir = disk.path().join("store");
    let mut sink = Sink::start(&store_dir, &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut b = 0;
    loop {
        assert!(b < 40, "the disk never filled up");
        let (status, body) = post(&sink, batch(&monitor, b), &[]);
        match status {
            200 => {}
            503 => {
                assert_eq!(readyz(&sink), 503, "right after the refused batch: {body}");
                assert!(sink.metrics().contains("fdb_sink_store_up 0"));
                break;
            }
            other => panic!("batch {b}: {other} {body}"),
        }
        b += 1;
    }
    sink.stop();
}

/// A sink started on a store whose disk is full opens it, but is not
/// ready: its first probe write fails. Once space is freed, it becomes
/// ready by itself and ingests; the probe writes left nothing in the store.
#[test]
fn a_sink_started_on_a_full_disk_is_not_ready_until_it_can_write() {
    let Some(disk) = SmallDisk::mount(8) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store_dir = disk.path().join("store");
    let monitor = uuid::Uuid::new_v4().to_string();
    {
        let mut sink = Sink::start(&store_dir, &[]);
        sink.wait_ready(200);
        let (status, body) = post(&sink, batch(&monitor, 0), &[]);
        assert_eq!(status, 200, "{body}");
        sink.stop();
    }
    let filler = disk.fill();
    let mut sink = Sink::start(&store_dir, &[]);
    // Never ready while the disk stays full (it opens: only writes fail).
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        assert_ne!(readyz(&sink), 200, "ready on a full disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sink.metrics().contains("fdb_sink_store_up 0"));

    std::fs::remove_file(&filler).expect("free space");
    sink.wait_ready(200);
    let (status, body) = post(&sink, batch(&monitor, 1), &[]);
    assert_eq!(
        (status, body["written"].as_u64()),
        (200, Some(500)),
        "{body}"
    );
    sink.stop();
    let stored = read_store(&store_dir);
    assert_eq!(stored.records.len(), 1000);
}
