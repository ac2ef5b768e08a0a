//! `fdb_sink_delivery_missing_events`: a monitor with an absurd gap does
//! not hide the later gaps of the others.

use std::time::{Duration, Instant};

use crate::harness::{event, post, Sink};

/// The largest `seq` validation accepts (2^53-1).
const MAX_SEQ: u64 = (1 << 53) - 1;

fn gauge(sink: &Sink) -> Option<f64> {
    sink.metrics().lines().find_map(|l| {
        l.strip_prefix("fdb_sink_delivery_missing_events ")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Waits until the gauge differs from `from`; its value then, as a
/// Prometheus server reads it (a float).
fn gauge_change(sink: &Sink, from: Option<f64>) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = gauge(sink);
        if g.is_some() && g != from {
            return g.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "fdb_sink_delivery_missing_events stayed at {from:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn line(monitor: &str, seq: u64) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&event(monitor, 1, "s-gap")).expect("event");
    v["seq"] = seq.into();
    v.to_string()
}

/// 1025 monitors that each claim a gap of 2^53-2 (one event with the
/// highest `seq`), then one monitor with a real gap of 3: the gauge rises
/// by 3, exactly as Prometheus reads it.
#[test]
fn a_gap_after_monitors_with_absurd_gaps_still_raises_the_gauge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &["--delivery-refresh-secs", "1"]);
    let bogus: Vec<String> = (0..1025)
        .map(|_| line(&uuid::Uuid::new_v4().to_string(), MAX_SEQ))
        .collect();
    let (s, r) = post(&sink, bogus.join("\n").into_bytes(), &[]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(1025)), "{r}");
    // Each of them counts for the documented cap, 10^9 (a refresh while
    // the batch was being committed may have seen only some of them).
    let all = 1025.0 * 1e9;
    let mut before = gauge_change(&sink, Some(0.0));
    while before < all {
        before = gauge_change(&sink, Some(before));
    }
    assert_eq!(
        before, all,
        "the gauge stays where a float counts by one (below 2^53)"
    );

    let monitor = uuid::Uuid::new_v4().to_string();
    let (s, _) = post(
        &sink,
        [line(&monitor, 1), line(&monitor, 5)]
            .join("\n")
            .into_bytes(),
        &[],
    );
    assert_eq!(s, 200);
    let after = gauge_change(&sink, Some(before));
    assert_eq!(after - before, 3.0, "before {before}, after {after}");
    let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        log.contains("monitors=1025") && log.contains("a wrong seq?"),
        "the capped monitors are logged: {log}"
    );
}
