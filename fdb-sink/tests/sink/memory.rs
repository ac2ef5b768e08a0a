//! The memory of concurrent batches is bounded by `--max-inflight-batches`
//! × (`--max-body-bytes` + one chunk of validated records): eight clients
//! posting the largest plain bodies the default flags allow, at once, stay
//! within the sizing rule for the defaults; the collector DaemonSet's own
//! flags, read from its manifest, keep the sink within its container's
//! memory limit (docs/sink.md, "Memory").

use std::path::Path;

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
fn eight_concurrent_bodies_of_the_largest_size_stay_within_the_sizing_for_the_defaults() {
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
                s.spawn(move || post_until_done(&url, b, *lines))
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
    // held a copy of its body and 8192 validated records); the sizing rule
    // gives about 780 MiB for the defaults. Not the sidecar's 512Mi: the
    // DaemonSet lowers the flags for that (the next test).
    assert!(grown < 650 << 20, "the sink grew by {} MiB", grown >> 20);
}

/// The `fdb-sink` container of the collector DaemonSet: its `--max-*`
/// flags and its memory limit in bytes.
fn daemonset_sink() -> (Vec<String>, u64) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/base/collector/daemonset.yaml");
    let text = std::fs::read_to_string(&path).expect("read the DaemonSet");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let containers = doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let sink = containers
        .iter()
        .find(|c| c["name"] == "fdb-sink")
        .expect("an fdb-sink container");
    let flags: Vec<String> = sink["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| a.starts_with("--max-"))
        .map(str::to_owned)
        .collect();
    let limit = sink["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let mib: u64 = limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a memory limit in Mi: {limit}"));
    (flags, mib << 20)
}

/// The value of `--name=value` among `flags`.
fn flag(flags: &[String], name: &str) -> usize {
    flags
        .iter()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {flags:?}"))
}

/// With the flags the collector DaemonSet gives its sidecar, sixteen
/// clients posting bodies of the largest size those flags allow, two
/// each, keep the sink (on the embedded store, whose own memory stands in
/// for the FoundationDB client's, not measured here) within the container's
/// memory limit, with room to spare.
#[test]
fn the_daemonset_flags_keep_the_sink_within_its_memory_limit() {
    let (flags, limit) = daemonset_sink();
    let max_body = flag(&flags, "--max-body-bytes");
    assert!(
        flags
            .iter()
            .any(|f| f.starts_with("--max-inflight-batches=")),
        "{flags:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--request-timeout-secs", "55"]);
    let sink = Sink::start(dir.path(), &args);
    sink.wait_ready(200);
    let written: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|c| {
                let url = sink.url("/v1/events");
                s.spawn(move || {
                    let mut stored = 0;
                    for round in 0..2 {
                        let (b, lines) = small_events(c * 2 + round, max_body);
                        stored += post_until_done(&url, &b, lines);
                    }
                    stored
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    let peak = sink.peak_rss();
    eprintln!("the sink peaked at {} MiB", peak >> 20);
    drop(sink);
    assert_eq!(
        crate::harness::read_store(dir.path()).records.len() as u64,
        written
    );
    // About 400 MiB here; 64 MiB of the limit left for what this test
    // leaves out.
    assert!(
        peak < limit - (64 << 20),
        "the sink peaked at {} MiB with the DaemonSet's flags {flags:?}, limit {} MiB",
        peak >> 20,
        limit >> 20
    );
}

/// An NDJSON body of events of about 400 bytes (the harness's), just under
/// `limit`, all new.
fn small_events(body_no: usize, limit: usize) -> (Vec<u8>, u64) {
    let monitor = uuid::Uuid::new_v4().to_string();
    let session = format!("s-small-{body_no}");
    let mut out = Vec::with_capacity(limit);
    let mut lines = 0u64;
    loop {
        let line = crate::harness::event(&monitor, lines + 1, &session);
        if out.len() + line.len() + 1 > limit {
            return (out, lines);
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        lines += 1;
    }
}

/// Posts `body` until it is answered 200 (503s, and connections closed by
/// a 503 sent before the body was read, retried after a pause, as Vector
/// would); returns how many of its lines were stored.
fn post_until_done(url: &str, body: &[u8], lines: u64) -> u64 {
    // Vector retries for ever; a deadline (not a count) keeps a loaded
    // machine from failing the test for being slow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        let sent = client()
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.to_vec())
            .send();
        let Ok(r) = sent else {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        };
        let status = r.status().as_u16();
        let v: serde_json::Value = serde_json::from_str(&r.text().expect("body")).expect("json");
        if status == 503 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        assert_eq!(status, 200, "{v}");
        let stored = v["written"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0);
        assert_eq!(stored, lines, "{v}");
        return lines;
    }
    panic!("still 503 after 300 s");
}
