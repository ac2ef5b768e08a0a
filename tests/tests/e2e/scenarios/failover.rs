//! Failover: the sink is killed with SIGKILL in the middle of the stream and started
//! again; the http sink's retries (transport errors, then 503 until the store is back)
//! deliver everything, and idempotent writes keep every event exactly once even when a
//! batch committed before the kill is sent again.

use std::time::{Duration, Instant};

use e2e_tests::harness::http_sink::Attempt;
use e2e_tests::harness::k8s_wrap::PodMeta;
use e2e_tests::scenario::{assert_stored_exactly_once, Attribution, Monitor};

use super::Stack;

const MONITORS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sink_mid_stream_loses_and_duplicates_nothing() {
    let mut stack = Stack::start().await;
    let mut monitors = Vec::new();
    for i in 0..MONITORS {
        let pod = PodMeta::workspace_sidecar(
            &format!("user-workspace-f{i}"),
            "acme",
            &format!("f{i}"),
            "s-failover",
        );
        let ws = stack.workspace(&format!("f{i}"));
        monitors.push(
            Monitor::start(
                &stack.bins,
                &ws,
                pod,
                Attribution::Metadata,
                50,
                stack.pipeline.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    // 5 workspaces × 20 files/s for 9 s; the sink is down from 3 s to 6 s.
    let started = Instant::now();
    let writers: Vec<_> = monitors
        .iter()
        .map(|m| {
            let root = m.root.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                let mut n = 0u32;
                while started.elapsed() < Duration::from_secs(9) {
                    tick.tick().await;
                    tokio::fs::write(root.join(format!("f{n:04}.txt")), b"x")
                        .await
                        .expect("write");
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.kill_sink();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.restart_sink().await;
    for w in writers {
        w.await.expect("writer");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut emitted = Vec::new();
    for m in monitors {
        emitted.push(m.stop().await.unwrap_or_else(|e| panic!("{e}")));
    }
    let (report, store) = stack.finish().await;

    let transport_failures = report
        .batches
        .iter()
        .flat_map(|b| &b.attempts)
        .filter(|a| {
            matches!(a, Attempt::Transport(_)) || matches!(a, Attempt::Status(s) if *s >= 500)
        })
        .count();
    assert!(
        transport_failures > 0,
        "the outage was not seen by the sink client: {:?}",
        report.batches.len()
    );
    assert!(
        report.attempts() > report.batches.len(),
        "nothing was retried"
    );
    assert_eq!(report.dropped_events(), 0);

    let total: usize = emitted.iter().map(|e| e.seqs.len()).sum();
    assert!(total >= 500, "only {total} events");
    assert_eq!(report.delivered_events(), total);
    assert_eq!(store.records.len(), total, "stored once each");
    for e in &emitted {
        assert_stored_exactly_once(e, &store);
    }
}
