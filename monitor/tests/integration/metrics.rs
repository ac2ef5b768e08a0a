//! Metrics, health and readiness over real HTTP.

use crate::support::*;

#[test]
fn metrics_health_and_readiness() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &[]);
    let port = m.metrics_port.unwrap();
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert_eq!(http_get(port, "/nope").0, 404);
    sh(root, "echo 1 > a && mkdir b && mv a b/a && rm -r b");
    m.wait_for("delete b", |e| has(e, "delete dir b"));
    let text = m.metrics();
    for name in [
        "fs_monitor_events_published_total{event_type=\"create\"}",
        "fs_monitor_events_dropped_total{reason=\"kernel_queue_overflow\"}",
        "fs_monitor_events_coalesced_total",
        "fs_monitor_rescans_total",
        "fs_monitor_watches",
        "fs_monitor_watch_limit_reached_total",
        "fs_monitor_polled_subtrees",
        "fs_monitor_queue_depth",
        "fs_monitor_checksum_bytes_total",
        "fs_monitor_processing_latency_seconds_count",
    ] {
        metric_value(&text, name);
    }
    let evs = m.events();
    let count = |t: &str| evs.iter().filter(|e| e.event_type.as_str() == t).count() as f64;
    for t in ["create", "update", "delete", "move"] {
        let sample = format!("fs_monitor_events_published_total{{event_type=\"{t}\"}}");
        assert_eq!(metric_value(&text, &sample), count(t), "{t}");
    }
    assert_eq!(
        metric_value(&text, "fs_monitor_processing_latency_seconds_count"),
        evs.len() as f64
    );
    assert_eq!(metric_value(&text, "fs_monitor_rescans_total"), 0.0);
}

#[test]
fn processing_latency_does_not_count_the_debounce() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--debounce=1500"]);
    let t = std::time::Instant::now();
    sh(root, "echo 1 > a && echo 2 >> a && echo 3 > b");
    m.wait_for("create b", |e| has(e, "create file b"));
    assert!(t.elapsed() >= std::time::Duration::from_millis(1500));
    let text = m.metrics();
    let count = metric_value(&text, "fs_monitor_processing_latency_seconds_count");
    assert!(count >= 2.0, "{text}");
    // Held 1.5 s on purpose, processed in far less than 1 s.
    assert_eq!(
        metric_value(
            &text,
            "fs_monitor_processing_latency_seconds_bucket{le=\"1.0\"}"
        ),
        count,
        "{text}"
    );
}
