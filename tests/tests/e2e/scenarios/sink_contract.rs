//! The records `parse_events.vrl` produces are what the real fdb-sink stores: valid
//! events with their Kubernetes fields and label-filled attribution become audit
//! records; the VRL program's dead letters become the sink's dead letters with the
//! reason and the raw line; the sidecar's stderr never reaches the store. Lines are
//! written here rather than by a monitor so that every case, bad lines included, is
//! covered.

use chrono::Utc;
use e2e_tests::harness::env::CLUSTER_NAME;
use e2e_tests::harness::http_sink::{Attempt, BatchOutcome};
use e2e_tests::harness::k8s_wrap::{wrap_kubernetes_logs, PodMeta, Stream};
use serde_json::json;

use super::Stack;

fn event(seq: u64, event_type: &str, path: &str) -> serde_json::Value {
    let mut ev = json!({
        "schema": "file-event/1",
        "event_id": format!("019abcde-0000-7000-8000-{seq:012}"),
        "monitor_id": "0c0ffee0-0000-4000-8000-000000000001",
        "seq": seq,
        "timestamp": format!("2026-11-26T18:00:0{seq}.000000000Z"),
        "event_type": event_type,
        "kind": "file",
        "path": path,
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": "s-1",
        "metadata": {}
    });
    if event_type == "move" {
        ev["from"] = "old.txt".into();
        ev["to"] = path.into();
    }
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrl_records_and_dead_letters_are_stored_by_the_real_sink() {
    let stack = Stack::start().await;
    let pod = PodMeta::workspace_sidecar("user-workspace-alice", "acme", "alice", "s-1");
    let mut lines: Vec<Vec<u8>> = Vec::new();
    lines.push(event(1, "create", "a.txt").to_string().into_bytes());
    lines.push(event(2, "update", "a.txt").to_string().into_bytes());
    let mut moved = event(3, "move", "b.txt");
    moved["size"] = 12.into();
    lines.push(moved.to_string().into_bytes());
    let mut odd = event(4, "delete", "caf\u{FFFD}.txt");
    odd["path_b64"] = "Y2Fm6S50eHQ=".into();
    lines.push(odd.to_string().into_bytes());
    let mut unattributed = event(5, "access", "README.md");
    for k in ["tenant_id", "user_id", "session_id"] {
        unattributed.as_object_mut().expect("object").remove(k);
    }
    lines.push(unattributed.to_string().into_bytes());
    // A valid event with metadata too large for one record: stored as an audit
    // record with its metadata cut, never a dead letter.
    let mut big = event(7, "create", "d.txt");
    big["metadata"]["blob"] = "z".repeat(150_000).into();
    lines.push(big.to_string().into_bytes());
    // Three bad lines, one of them large.
    lines.push(b"panic: not an event".to_vec());
    let mut wrong = event(6, "create", "c.txt");
    wrong["seq"] = "6".into();
    lines.push(wrong.to_string().into_bytes());
    lines.push("q".repeat(100_000).into_bytes());

    for line in &lines {
        stack
            .pipeline
            .push(wrap_kubernetes_logs(line, &pod, Stream::Stdout, Utc::now()))
            .await
            .expect("pipeline running");
    }
    let log = stack
        .pipeline
        .push(wrap_kubernetes_logs(
            b"INFO file_monitor: watching /workspace",
            &pod,
            Stream::Stderr,
            Utc::now(),
        ))
        .await
        .expect("pipeline running");
    assert!(log.delivered.is_none());

    let (report, store) = stack.finish().await;
    assert_eq!(report.delivered_events(), 9);
    for b in &report.batches {
        assert_eq!(b.outcome, BatchOutcome::Delivered);
        assert_eq!(
            b.attempts,
            [Attempt::Status(200)],
            "the sink accepted each batch at once"
        );
    }

    assert_eq!(store.records.len(), 6, "{:#?}", store.records);
    for (tenant, user, session, r) in &store.records {
        assert_eq!(
            (tenant.as_str(), user.as_str(), session.as_str()),
            ("acme", "alice", "s-1")
        );
        assert_eq!(r["cluster_name"], CLUSTER_NAME);
        assert_eq!(r["namespace"], "coditect-app");
        assert_eq!(r["pod_name"], "user-workspace-alice");
        assert_eq!(r["pod_uid"], pod.pod_uid.as_str());
        assert_eq!(r["node_name"], "gke-ide-pool-1-node-a");
        assert_eq!(r["container_name"], "file-monitor");
    }
    let by_seq = |seq: u64| {
        store
            .records
            .iter()
            .map(|r| &r.3)
            .find(|r| r["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} not stored"))
    };
    assert_eq!(by_seq(3)["from"], "old.txt");
    assert_eq!(by_seq(4)["path_b64"], "Y2Fm6S50eHQ=");
    assert_eq!(
        by_seq(5)["tenant_id"],
        "acme",
        "attribution filled from the pod labels"
    );
    assert_eq!(by_seq(7)["metadata_truncated"], true);
    assert_eq!(by_seq(7)["path"], "d.txt");

    assert_eq!(store.dead_letters.len(), 3, "{:#?}", store.dead_letters);
    let text = serde_json::to_string(&store.dead_letters).expect("json");
    for needle in [
        "invalid_json: ",
        "panic: not an event",
        "invalid_event: seq must be an integer >= 1",
        "qqqqqqqq",
    ] {
        assert!(
            text.contains(needle),
            "no dead letter mentions {needle:?}: {text:.2000}"
        );
    }
    for d in &store.dead_letters {
        assert!(
            d.to_string().contains("user-workspace-alice"),
            "the dead letter keeps the pod: {d}"
        );
    }
    // The monitor row counts only the stored events.
    assert_eq!(
        store.monitors.get("0c0ffee0-0000-4000-8000-000000000001"),
        Some(&(6, 7))
    );
}
