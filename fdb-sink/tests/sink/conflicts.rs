//! A line whose key (tenant, user, session, time, event id) is already
//! stored but whose event says something else is never dropped: it becomes a
//! `conflicting_redelivery` dead letter. A true redelivery, through any
//! route (other Kubernetes fields, fields the collector adds, an export
//! imported back), stays a duplicate.

use serde_json::Value;

use crate::harness::{cli, counts, event, import_stdin, ndjson, post, read_store, Sink};

const MONITOR: &str = "0190b5a0-0000-7000-8000-00000000c0f1";

fn conflicting_metric(sink: &Sink) -> String {
    sink.metrics()
        .lines()
        .find(|l| l.starts_with("fdb_sink_dead_letter_total{reason=\"conflicting_redelivery\"}"))
        .unwrap_or("fdb_sink_dead_letter_total{reason=\"conflicting_redelivery\"} absent")
        .to_owned()
}

/// The same event (same key) with another path, event type and checksum.
fn altered(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).expect("json");
    v["path"] = "etc/shadow".into();
    v["event_type"] = "delete".into();
    v["checksum"] = format!("sha256:{:064x}", 0xdead_u64).into();
    v.to_string()
}

#[test]
fn a_redelivery_with_other_content_is_dead_lettered_not_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let first = event(MONITOR, 1, "s-conflict");
    let other = altered(&first);
    let event_id = serde_json::from_str::<Value>(&first).expect("json")["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();

    let (s, r) = post(&sink, ndjson(std::slice::from_ref(&first)), &[]);
    assert_eq!((s, counts(&r)), (200, [1, 0, 0, 0]), "{r}");
    let (s, r) = post(&sink, ndjson(std::slice::from_ref(&other)), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 0, 1, 0]), "{r}");
    assert!(
        conflicting_metric(&sink).ends_with(" 1"),
        "{}",
        conflicting_metric(&sink)
    );
    // The conflicting copy delivered again: the same dead letter, not a second.
    let (s, r) = post(&sink, ndjson(std::slice::from_ref(&other)), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 1, 0, 1]), "{r}");
    // The first copy delivered again: a duplicate.
    let (s, r) = post(&sink, ndjson(std::slice::from_ref(&first)), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 1, 0, 0]), "{r}");
    assert!(
        conflicting_metric(&sink).ends_with(" 1"),
        "{}",
        conflicting_metric(&sink)
    );
    let log = sink.log.lock().expect("log").clone();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("conflicting_redelivery"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    assert!(
        warning.contains(&event_id) && warning.contains("s-conflict"),
        "{warning}"
    );
    sink.stop();

    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 1);
    assert_eq!(stored.records[0].record.event.path, "src/file1.rs");
    assert_eq!(stored.sessions[0].events, 1, "counted once");
    assert_eq!(stored.monitors[0].received, 1, "counted once");
    assert_eq!(stored.dead_letters.len(), 1, "{:?}", stored.dead_letters);
    let d = &stored.dead_letters[0].letter;
    assert_eq!(d.reason, "conflicting_redelivery");
    assert!(d.detail.contains(&event_id), "{}", d.detail);
    for field in ["path", "event_type", "checksum"] {
        assert!(d.detail.contains(field), "{field}: {}", d.detail);
    }
    let raw: Value = serde_json::from_str(&d.raw).expect("raw is the refused record");
    assert_eq!(raw["path"], "etc/shadow");
    assert_eq!(raw["event_type"], "delete");
    assert_eq!(raw["event_id"], event_id.as_str());
}

#[test]
fn two_contents_under_one_key_in_one_request_keep_the_first_and_dead_letter_the_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let mut lines: Vec<String> = (1..=20).map(|i| event(MONITOR, i, "s-one")).collect();
    let first = lines[4].clone();
    lines.push(altered(&first));
    lines.push(first.clone());
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, counts(&r)), (200, [20, 1, 1, 0]), "{r}");
    // The whole request again: duplicates, the conflicting line's dead
    // letter among them.
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 22, 0, 1]), "{r}");
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 20);
    assert_eq!(stored.sessions[0].events, 20);
    assert_eq!(stored.dead_letters.len(), 1);
    assert_eq!(
        stored.dead_letters[0].letter.reason,
        "conflicting_redelivery"
    );
}

#[test]
fn a_redelivery_through_another_route_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let lines: Vec<String> = (1..=10).map(|i| event(MONITOR, i, "s-route")).collect();
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, counts(&r)), (200, [10, 0, 0, 0]), "{r}");
    // Through another collector: other Kubernetes fields, fields of its
    // own, another field order and another spelling of the same time.
    let rerouted: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let mut o = serde_json::Map::new();
            o.insert("host".into(), "node-7".into());
            o.insert("source_type".into(), "kubernetes_logs".into());
            o.insert("timestamp_received".into(), "2026-11-28T00:00:00Z".into());
            o.insert("namespace".into(), "other".into());
            o.insert("pod_name".into(), "ws-2".into());
            o.insert("cluster_name".into(), "eu-1".into());
            let ts = v["timestamp"].as_str().expect("ts").replace('Z', "+00:00");
            for (k, val) in v.as_object().expect("object").iter().rev() {
                if !o.contains_key(k) {
                    o.insert(k.clone(), val.clone());
                }
            }
            o.insert("timestamp".into(), ts.into());
            Value::Object(o).to_string()
        })
        .collect();
    let (s, r) = post(&sink, ndjson(&rerouted), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 10, 0, 0]), "{r}");
    sink.stop();
    assert!(read_store(dir.path()).dead_letters.is_empty());
}

#[test]
fn an_export_imported_back_is_all_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    let mut lines: Vec<String> = (1..=30).map(|i| event(MONITOR, i, "s-round")).collect();
    // One whose metadata must be cut to fit, and a move.
    let mut big: Value = serde_json::from_str(&event(MONITOR, 31, "s-round")).expect("json");
    for i in 0..40 {
        big["metadata"][format!("k{i:02}")] = "x".repeat(4_000).into();
    }
    lines.push(big.to_string());
    let mut mv: Value = serde_json::from_str(&event(MONITOR, 32, "s-round")).expect("json");
    mv["event_type"] = "move".into();
    mv["from"] = "src/old.rs".into();
    mv["to"] = mv["path"].clone();
    lines.push(mv.to_string());
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, counts(&r)), (200, [32, 0, 0, 0]), "{r}");
    sink.stop();
    let stored = read_store(&src);
    assert!(
        stored.records.iter().any(|r| r.record.metadata_truncated),
        "one record had its metadata cut"
    );

    let store = format!("embedded:{}", src.display());
    let file = dir.path().join("acme.ndjson");
    let file = file.to_str().expect("utf8");
    cli(&[
        "export", "--store", &store, "--tenant", "acme", "--output", file,
    ]);
    let out = cli(&["import", "--store", &store, file]);
    let summary: Value = serde_json::from_slice(&out.stdout).expect("import totals");
    assert_eq!(counts(&summary), [0, 32, 0, 0], "{summary}");
    // The original lines, read from standard input: duplicates too.
    let stdin = run_stdin(&store, &ndjson(&lines));
    assert_eq!(counts(&stdin), [0, 32, 0, 0], "{stdin}");
    assert!(read_store(&src).dead_letters.is_empty());
}

/// `fdb-sink import -` of `body` into `store`: its JSON totals.
fn run_stdin(store: &str, body: &[u8]) -> Value {
    let out = import_stdin(store, body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("totals")
}
