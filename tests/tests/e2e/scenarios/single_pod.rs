//! The design's single-user-pod test: create, update and delete one file
//! (`expected_events=3`) and query the session's records back in order.

use std::time::Duration;

use e2e_tests::harness::env::CLUSTER_NAME;
use e2e_tests::harness::k8s_wrap::PodMeta;
use e2e_tests::scenario::{assert_stored_exactly_once, Attribution, Monitor};

use super::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_of_one_file_is_exactly_three_records_in_order() {
    let stack = Stack::start().await;
    let ws = stack.workspace("alice");
    let pod = PodMeta::workspace_sidecar("user-workspace-alice", "acme", "alice", "test-session");
    let monitor = Monitor::start(
        &stack.bins,
        &ws,
        pod.clone(),
        Attribution::Metadata,
        50,
        stack.pipeline.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The design's script: echo 'test' > test.txt; echo 'update' >> test.txt; rm test.txt
    let settle = Duration::from_millis(500);
    std::fs::write(ws.join("test.txt"), "test\n").expect("create");
    tokio::time::sleep(settle).await;
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(ws.join("test.txt"))
            .expect("open");
        f.write_all(b"update\n").expect("append");
    }
    tokio::time::sleep(settle).await;
    std::fs::remove_file(ws.join("test.txt")).expect("delete");
    tokio::time::sleep(settle).await;

    let emitted = monitor.stop().await.unwrap_or_else(|e| panic!("{e}"));

    // The design's check, through the real query API:
    //   curl -H "Authorization: Bearer $TOKEN" …/api/v5/agents/test-session/logs
    let api = stack
        .query_until("/api/v5/agents/test-session/logs", "acme", "alice", 3)
        .await;
    let api_view: Vec<(&str, &str)> = api
        .iter()
        .map(|r| {
            (
                r["event_type"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        api_view,
        [
            ("create", "test.txt"),
            ("update", "test.txt"),
            ("delete", "test.txt")
        ],
        "expected_events=3, in order: {api:#?}"
    );
    // Another user of the same tenant does not see Alice's session.
    let (_, others) = stack
        .query_records("/api/v5/agents/test-session/logs", "acme", "mallory")
        .await;
    assert!(others.is_empty(), "{others:#?}");

    let (report, store) = stack.finish().await;

    let kinds: Vec<(&str, &str)> = emitted
        .events
        .iter()
        .map(|(t, p)| (t.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("create", "test.txt"),
            ("update", "test.txt"),
            ("delete", "test.txt")
        ]
    );
    assert_eq!(report.delivered_events(), 3);
    assert_eq!(report.dropped_events(), 0);

    // The session's records, in key (= time) order.
    let session: Vec<&serde_json::Value> = store
        .records
        .iter()
        .filter(|(t, u, s, _)| t == "acme" && u == "alice" && s == "test-session")
        .map(|r| &r.3)
        .collect();
    let types: Vec<&str> = session
        .iter()
        .map(|r| r["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["create", "update", "delete"], "{session:#?}");
    assert_eq!(store.records.len(), 3, "no record anywhere else");
    for r in &session {
        assert_eq!(r["path"], "test.txt");
        assert_eq!(r["cluster_name"], CLUSTER_NAME);
        assert_eq!(r["namespace"], "coditect-app");
        assert_eq!(r["pod_name"], "user-workspace-alice");
        assert_eq!(r["pod_uid"], pod.pod_uid.as_str());
        assert_eq!(r["node_name"], "gke-ide-pool-1-node-a");
        assert_eq!(r["container_name"], "file-monitor");
    }
    let event_ids: Vec<&str> = session
        .iter()
        .map(|r| r["event_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        event_ids,
        emitted
            .event_ids
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_stored_exactly_once(&emitted, &store);
    assert!(store.dead_letters.is_empty(), "{:?}", store.dead_letters);
}
