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

/// `/metrics` speaks OpenMetrics to a scraper that asks for it (Prometheus)
/// and the text format 0.0.4 to the others (Vector's `prometheus_scrape`),
/// where a counter's `# TYPE` line names it as its samples are named.
#[test]
fn metrics_are_negotiated_between_openmetrics_and_text_0_0_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &[]);
    let get = |accept: Option<&str>| {
        let mut req = crate::harness::client().get(sink.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().expect("metrics");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (ct, r.text().expect("body"))
    };
    let (ct, om) = get(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n"));
    assert!(
        om.contains("# TYPE fdb_sink_events_received counter\n"),
        "{om}"
    );
    let (ct, text) = get(Some("text/plain"));
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!text.contains("# EOF"));
    assert!(
        text.contains("# TYPE fdb_sink_events_received_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("\nfdb_sink_events_received_total 0\n"),
        "{text}"
    );
    let (ct, _) = get(None);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
}

/// A body of 600,000 two-byte lines, each one a dead letter: lines are
/// validated and committed a chunk at a time, so memory does not grow with
/// the number of lines (all at once, the dead letters took about 320 bytes
/// each, 190 MiB here and gigabytes for a 32 MiB body).
#[test]
fn a_body_of_many_tiny_lines_is_ingested_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &["--request-timeout-secs", "55"]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut body = b"1\n".repeat(600_000);
    for i in 1..=3 {
        body.extend_from_slice(event(&monitor, i, "s-tiny").as_bytes());
        body.push(b'\n');
    }
    let before = sink.peak_rss();
    let (s, r) = post(&sink, body, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["received"].as_u64(), Some(600_003), "{r}");
    assert_eq!(r["dead_lettered"].as_u64(), Some(600_000), "{r}");
    assert_eq!(r["written"].as_u64(), Some(3), "{r}");
    let peak = sink.peak_rss();
    assert!(
        peak < before + (64 << 20),
        "600,000 tiny lines took the sink from {} to {} MiB",
        before >> 20,
        peak >> 20
    );
    let m = sink.metrics();
    assert!(
        m.contains("fdb_sink_batches_total{outcome=\"committed\"} 1"),
        "one batch, however many chunks: {m}"
    );
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 3);
    assert!(!stored.dead_letters.is_empty());
}
