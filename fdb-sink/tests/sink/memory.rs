//! The memory of concurrent batches is bounded by `--max-inflight-batches`
//! × (`--max-body-bytes` + one chunk of validated records): eight clients
//! posting the largest plain bodies the default flags allow, at once, stay
//! within the sidecar's memory limit (docs/sink.md, "Memory").

use crate::harness::{client, Sink};

/// An NDJSON body of valid events of about 4 kB each, just under `limit`.
fn body(client_no: usize, limit: usize) -> (Vec<u8>, u64) {
    let monitor = uuid::Uuid::new_v4().to_string();
    let pad = "x".repeat(3_600);
    let mut out = Vec::with_capacity(limit);
    let mut lines = 0u64;
    loop {
        let line = serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": monitor,
            "seq": lines + 1,
            "timestamp": format!("2026-11-26T18:00:00.{:09}Z", lines),
            "event_type": "update",
            "kind": "file",
            "path": format!("src/c{client_no}/file{lines}.rs"),
            "tenant_id": "acme",
            "user_id": "alice",
            "session_id": format!("s-mem-{client_no}"),
            "metadata": {"pad": pad},
        })
        .to_string();
        if out.len() + line.len() + 1 > limit {
            return (out, lines);
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        lines += 1;
    }
}

#[test]
fn eight_concurrent_bodies_of_the_largest_size_stay_within_the_sidecar_limit() {
    const LIMIT: usize = 32 * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &["--request-timeout-secs", "55"]);
    sink.wait_ready(200);
    let start = sink.peak_rss();
    let bodies: Vec<(Vec<u8>, u64)> = (0..8).map(|c| body(c, LIMIT)).collect();
    let written: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|(b, lines)| {
                let url = sink.url("/v1/events");
                s.spawn(move || {
                    // Retried on 503 as Vector would (a commit slower than
                    // the deadline on a loaded machine completes anyway).
                    for _ in 0..20 {
                        let r = client()
                            .post(url.as_str())
                            .header("content-type", "application/x-ndjson")
                            .body(b.clone())
                            .send()
                            .expect("post");
                        let status = r.status().as_u16();
                        let v: serde_json::Value =
                            serde_json::from_str(&r.text().expect("body")).expect("json");
                        if status == 503 {
                            std::thread::sleep(std::time::Duration::from_secs(2));
                            continue;
                        }
                        assert_eq!(status, 200, "{v}");
                        let stored = v["written"].as_u64().unwrap_or(0)
                            + v["duplicates"].as_u64().unwrap_or(0);
                        assert_eq!(stored, *lines, "{v}");
                        return *lines;
                    }
                    panic!("still 503 after 20 attempts");
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    assert_eq!(written, bodies.iter().map(|b| b.1).sum::<u64>());
    let grown = sink.peak_rss().saturating_sub(start);
    eprintln!("the sink grew by {} MiB", grown >> 20);
    drop(sink);
    assert_eq!(
        crate::harness::read_store(dir.path()).records.len() as u64,
        written,
        "every event stored once"
    );
    // About 450 MiB more than at start here (750 MiB when each batch also
    // held a copy of its body and 8192 validated records).
    assert!(grown < 650 << 20, "the sink grew by {} MiB", grown >> 20);
}
