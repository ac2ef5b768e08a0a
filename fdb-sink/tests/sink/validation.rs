//! Bad lines among good ones: the good are stored, the bad dead-lettered with
//! their reasons, and the batch is answered 200.

use crate::harness::{event, ndjson, post, read_store, Sink};

#[test]
fn three_bad_lines_among_997_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut lines: Vec<String> = (1..=997).map(|i| event(&monitor, i, "s-val")).collect();
    lines.insert(10, "{this is not json".to_string());
    let mut bad_type: serde_json::Value =
        serde_json::from_str(&event(&monitor, 5000, "s-val")).expect("json");
    bad_type["event_type"] = "explode".into();
    lines.insert(500, bad_type.to_string());
    let mut bad_tenant: serde_json::Value =
        serde_json::from_str(&event(&monitor, 5001, "s-val")).expect("json");
    bad_tenant["tenant_id"] = "../etc/passwd".into();
    lines.push(bad_tenant.to_string());
    assert_eq!(lines.len(), 1000);
    let (status, summary) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(997), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(3), "{summary}");
    let metrics = sink.metrics();
    for reason in ["invalid_json", "unknown_event_type", "bad_id"] {
        assert!(
            metrics.contains(&format!(
                "fdb_sink_dead_letter_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 997);
    let mut reasons: Vec<&str> = stored
        .dead_letters
        .iter()
        .map(|d| d.letter.reason.as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec!["bad_id", "invalid_json", "unknown_event_type"]
    );
    for d in &stored.dead_letters {
        assert!(!d.letter.detail.is_empty(), "every dead letter says why");
        assert!(
            !d.letter.raw.is_empty(),
            "every dead letter keeps its input"
        );
    }
    let k8s = &stored.records[0].record.k8s;
    assert_eq!(
        (k8s.namespace.as_deref(), k8s.pod_name.as_deref()),
        (Some("ide"), Some("ws-1")),
        "Kubernetes fields stored"
    );
}
