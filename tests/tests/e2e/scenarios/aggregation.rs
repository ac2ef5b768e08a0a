//! The design's multi-pod aggregation test at the load the issue sets: 50 monitors,
//! about 1000 events/s in total for 30 s, all through one collector pipeline (one
//! Vector per node) into one sink. Every event must be stored exactly once, checked per
//! monitor with `seq`: the `("monitors", id)` row and the stored records both hold
//! exactly 1..=N for a monitor that wrote N lines.

use std::time::{Duration, Instant};

use e2e_tests::harness::k8s_wrap::PodMeta;
use e2e_tests::scenario::{assert_stored_exactly_once, Attribution, Monitor};

use super::Stack;

const MONITORS: usize = 50;
const TOTAL_EVENTS_PER_SEC: u64 = 1000;
const SECONDS: u64 = 30;
/// Each workspace gets a new file every 50 ms for 30 s (if the machine keeps up; the
/// count, not the wall clock, is fixed, so a loaded machine only takes longer).
const FILES_PER_MONITOR: u64 = TOTAL_EVENTS_PER_SEC * SECONDS / MONITORS as u64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_monitors_at_1000_events_per_second_are_stored_exactly_once() {
    let setup = Instant::now();
    let stack = Stack::start().await;
    // Start the 50 sidecars concurrently (each waits for its own /readyz).
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..MONITORS {
        let pod = PodMeta::workspace_sidecar(
            &format!("user-workspace-u{i:02}"),
            &format!("tenant-{:02}", i % 5),
            &format!("u{i:02}"),
            &format!("s{i:02}"),
        );
        let ws = stack.workspace(&format!("u{i:02}"));
        let (bins, pipeline) = (stack.bins.clone(), stack.pipeline.clone());
        starting.spawn(async move {
            Monitor::start(&bins, &ws, pod, Attribution::Metadata, 50, pipeline).await
        });
    }
    let mut monitors = Vec::new();
    while let Some(m) = starting.join_next().await {
        monitors.push(m.expect("start task").unwrap_or_else(|e| panic!("{e}")));
    }

    eprintln!(
        "aggregation: {MONITORS} monitors ready after {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    // Each workspace gets a new file every 50 ms: 50 × 20/s = 1000 files/s.
    let period = Duration::from_micros(1_000_000 * MONITORS as u64 / TOTAL_EVENTS_PER_SEC);
    let started = Instant::now();
    let writers: Vec<_> = monitors
        .iter()
        .map(|m| {
            let root = m.root.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for n in 0..FILES_PER_MONITOR {
                    tick.tick().await;
                    tokio::fs::write(root.join(format!("f{n:05}.txt")), b"x")
                        .await
                        .expect("write");
                }
                FILES_PER_MONITOR
            })
        })
        .collect();
    let mut files = 0;
    for w in writers {
        files += w.await.expect("writer");
    }
    let write_secs = started.elapsed().as_secs_f64();
    // A sidecar reports what the kernel told it; on a loaded machine it may still be
    // working through its queue when the writers finish. Stop the monitors only once
    // each has caught up (or after a generous bound, so a real loss still fails below).
    let caught_up = Instant::now();
    while caught_up.elapsed() < Duration::from_secs(120)
        && monitors
            .iter()
            .any(|m| (m.emitted_lines() as u64) < FILES_PER_MONITOR)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut stopping = tokio::task::JoinSet::new();
    for m in monitors {
        stopping.spawn(m.stop());
    }
    let mut emitted = Vec::new();
    while let Some(e) = stopping.join_next().await {
        emitted.push(e.expect("stop task").unwrap_or_else(|e| panic!("{e}")));
    }
    let stopped = Instant::now();
    let (report, store) = stack.finish().await;
    eprintln!(
        "aggregation: delivered and read back {:.1} s after the monitors stopped",
        stopped.elapsed().as_secs_f64()
    );

    let total: usize = emitted.iter().map(|e| e.seqs.len()).sum();
    eprintln!(
        "aggregation: {files} files written in {write_secs:.1} s, {total} events emitted \
         ({:.0}/s), {} requests",
        total as f64 / write_secs,
        report.attempts()
    );
    assert_eq!(files, TOTAL_EVENTS_PER_SEC * SECONDS);
    assert!(
        total as u64 >= files,
        "every new file is at least one event: {total} < {files}"
    );
    assert_eq!(report.dropped_events(), 0);
    assert_eq!(report.delivered_events(), total);
    assert_eq!(store.records.len(), total);
    assert_eq!(store.monitors.len(), MONITORS);
    for e in &emitted {
        assert_stored_exactly_once(e, &store);
    }
    let mut ids: Vec<&str> = store
        .records
        .iter()
        .map(|r| r.3["event_id"].as_str().unwrap_or_default())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "duplicate event ids in the store");
}
