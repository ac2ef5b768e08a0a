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

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `event(…)` with `over`'s fields set (a `null` removes the field).
fn event_with(monitor: &str, seq: u64, over: serde_json::Value) -> String {
    let mut ev: serde_json::Value =
        serde_json::from_str(&event(monitor, seq, "s-rules")).expect("json");
    if let (Some(ev), Some(over)) = (ev.as_object_mut(), over.as_object()) {
        for (k, v) in over {
            if v.is_null() {
                ev.remove(k);
            } else {
                ev.insert(k.clone(), v.clone());
            }
        }
    }
    ev.to_string()
}

/// Posts `good` and `bad` lines; asserts every good one is stored and every
/// bad one is a `bad_field` dead letter whose detail contains its `why`.
fn only_good_are_stored(good: Vec<String>, bad: Vec<(String, String)>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let mut lines = good.clone();
    lines.extend(bad.iter().map(|(l, _)| l.clone()));
    let (status, summary) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["written"].as_u64(),
        Some(good.len() as u64),
        "{summary}"
    );
    assert_eq!(
        summary["dead_lettered"].as_u64(),
        Some(bad.len() as u64),
        "{summary}"
    );
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), good.len());
    assert_eq!(stored.dead_letters.len(), bad.len());
    let mut details = Vec::new();
    for (line, why) in &bad {
        let d = stored
            .dead_letters
            .iter()
            .find(|d| d.letter.raw == *line)
            .unwrap_or_else(|| panic!("no dead letter for {line}"));
        assert_eq!(d.letter.reason, "bad_field", "{line}: {}", d.letter.detail);
        assert!(
            d.letter.detail.contains(why.as_str()),
            "{line}: detail {:?} does not say {why:?}",
            d.letter.detail
        );
        details.push(d.letter.detail.clone());
    }
    details
}

/// Paths the monitor never writes (absolute, escaping the root, empty, with
/// NUL, or spelled with empty or `.` segments) are refused at ingest in
/// every field that carries one: stored, they would be indexed under a name
/// that the history endpoint refuses to look up.
#[test]
fn paths_the_monitor_cannot_write_are_bad_field_dead_letters() {
    let monitor = uuid::Uuid::new_v4().to_string();
    let bad_paths: [(&str, &str); 7] = [
        ("/etc/passwd", "starts with `/`"),
        ("../../x", "`..` segment"),
        ("", "is empty"),
        ("nul\u{0}in", "NUL"),
        ("a//b", "empty segment"),
        ("./a", "`.` segment"),
        ("a/", "empty segment"),
    ];
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    let mut bad = Vec::new();
    for (p, _) in bad_paths {
        let cases = [
            ("path", serde_json::json!({ "path": p })),
            (
                "path_b64",
                serde_json::json!({ "path": "ok.txt", "path_b64": b64(p.as_bytes()) }),
            ),
            (
                "from",
                serde_json::json!({ "event_type": "move", "path": "b.txt", "from": p, "to": "b.txt" }),
            ),
            (
                "to",
                serde_json::json!({ "event_type": "move", "path": "b.txt", "from": "a.txt", "to": p }),
            ),
            (
                "from_b64",
                serde_json::json!({
                    "event_type": "move", "path": "b.txt", "from": "a.txt",
                    "from_b64": b64(p.as_bytes()), "to": "b.txt"
                }),
            ),
            (
                "to_b64",
                serde_json::json!({
                    "event_type": "move", "path": "b.txt", "path_b64": b64(b"b.txt"),
                    "from": "a.txt", "to": "b.txt", "to_b64": b64(p.as_bytes())
                }),
            ),
        ];
        for (field, over) in cases {
            bad.push((event_with(&monitor, next(), over), format!("`{field}`")));
        }
    }
    let good = vec![
        event_with(
            &monitor,
            next(),
            serde_json::json!({ "path": ".hidden/..x" }),
        ),
        event_with(
            &monitor,
            next(),
            serde_json::json!({ "path": "caf\u{fffd}.txt", "path_b64": b64(b"caf\xe9.txt") }),
        ),
        event_with(
            &monitor,
            next(),
            serde_json::json!({ "event_type": "move", "path": "d/b.txt", "from": "a.txt", "to": "d/b.txt" }),
        ),
    ];
    let details = only_good_are_stored(good, bad);
    for (p, why) in bad_paths {
        let shown = format!("{p:?}");
        assert!(
            details
                .iter()
                .any(|d| d.contains(&shown) && d.contains(why)),
            "no detail names {shown} and says {why:?}: {details:#?}"
        );
    }
    assert!(
        details
            .iter()
            .all(|d| d.contains("relative to the monitored root")),
        "every detail names the rule: {details:#?}"
    );
}

/// `path` is a move's destination: a move whose `path` is not its `to` (or
/// whose `path_b64` is not its `to_b64`) would be indexed under a name it
/// did not move to.
#[test]
fn a_move_whose_path_is_not_its_destination_is_a_bad_field_dead_letter() {
    let monitor = uuid::Uuid::new_v4().to_string();
    let mv = |seq, over: serde_json::Value| {
        let mut base = serde_json::json!({ "event_type": "move", "from": "a.txt" });
        if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
            b.extend(o.clone());
        }
        event_with(&monitor, seq, base)
    };
    let why = "a move's `path` is its destination";
    let bad = vec![
        (
            mv(1, serde_json::json!({ "path": "b.txt", "to": "c.txt" })),
            why,
        ),
        (
            mv(
                2,
                serde_json::json!({
                    "path": "caf\u{fffd}", "path_b64": b64(b"caf\xe9"),
                    "to": "caf\u{fffd}", "to_b64": b64(b"caf\xe8")
                }),
            ),
            why,
        ),
        (
            mv(
                3,
                serde_json::json!({ "path": "caf\u{fffd}", "path_b64": b64(b"caf\xe9"), "to": "caf\u{fffd}" }),
            ),
            why,
        ),
    ];
    let good = vec![
        mv(4, serde_json::json!({ "path": "b.txt", "to": "b.txt" })),
        mv(
            5,
            serde_json::json!({
                "path": "caf\u{fffd}", "path_b64": b64(b"caf\xe9"),
                "to": "caf\u{fffd}", "to_b64": b64(b"caf\xe9")
            }),
        ),
    ];
    let bad = bad.into_iter().map(|(l, w)| (l, w.to_owned())).collect();
    only_good_are_stored(good, bad);
}

/// `seq` is bounded by JSON's safe integer range (RFC 7493, 2^53-1): a
/// larger one would stay the monitor's highest `seq` for ever.
#[test]
fn a_seq_beyond_2_pow_53_minus_1_is_a_bad_field_dead_letter() {
    let monitor = uuid::Uuid::new_v4().to_string();
    let max = (1u64 << 53) - 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let lines = vec![
        event(&monitor, u64::MAX, "s-seq"),
        event(&monitor, max + 1, "s-seq"),
        event(&monitor, max, "s-seq"),
    ];
    let (status, summary) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(1), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(2), "{summary}");
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.monitors.len(), 1);
    assert_eq!(stored.monitors[0].max_seq, max);
    for d in &stored.dead_letters {
        assert_eq!(d.letter.reason, "bad_field", "{}", d.letter.detail);
        assert!(
            d.letter.detail.contains("9007199254740991"),
            "the detail names the limit: {}",
            d.letter.detail
        );
    }
}

/// One UTF-8 byte order mark at the start of a body is not part of its
/// first line, whether the body is NDJSON or a JSON array; one at the start
/// of a later line is (that line is not JSON).
#[test]
fn a_byte_order_mark_before_a_body_is_skipped() {
    const BOM: &[u8] = "\u{feff}".as_bytes();
    let monitor = uuid::Uuid::new_v4().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let mut body = BOM.to_vec();
    body.extend(ndjson(&[
        event(&monitor, 1, "s-bom"),
        event(&monitor, 2, "s-bom"),
    ]));
    let (status, summary) = post(&sink, body, &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(2), "NDJSON: {summary}");
    let mut body = BOM.to_vec();
    body.extend(
        format!(
            "[{},{}]",
            event(&monitor, 3, "s-bom"),
            event(&monitor, 4, "s-bom")
        )
        .into_bytes(),
    );
    let (status, summary) = post(&sink, body, &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(2), "array: {summary}");
    let mut body = BOM.to_vec();
    body.extend(event(&monitor, 5, "s-bom").into_bytes());
    body.push(b'\n');
    body.extend(BOM);
    body.extend(event(&monitor, 6, "s-bom").into_bytes());
    let (status, summary) = post(&sink, body, &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(1), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(1), "{summary}");
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 5);
    assert_eq!(stored.dead_letters.len(), 1);
    assert_eq!(stored.dead_letters[0].letter.reason, "invalid_json");
}

/// `import` and `serve --stdin` skip one byte order mark at the start of
/// their input, and only there.
#[test]
fn a_byte_order_mark_before_a_file_or_stream_is_skipped() {
    use std::io::Write as _;
    let monitor = uuid::Uuid::new_v4().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = "\u{feff}".to_owned();
    for i in 1..=3 {
        text.push_str(&event(&monitor, i, "s-bom-file"));
        text.push('\n');
    }
    text.push('\u{feff}');
    text.push_str(&event(&monitor, 4, "s-bom-file"));
    text.push('\n');
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, &text).expect("write");
    let summary = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("summary")
    };
    let store = format!("embedded:{}", dir.path().join("import").display());
    let s = summary(
        std::process::Command::new(crate::harness::BIN)
            .args(["import", "--store", &store])
            .arg(&file)
            .output()
            .expect("import"),
    );
    assert_eq!(s["written"].as_u64(), Some(3), "import: {s}");
    assert_eq!(s["dead_lettered"].as_u64(), Some(1), "import: {s}");

    let store = format!("embedded:{}", dir.path().join("stdin").display());
    let mut child = crate::stdin::serve_stdin(&store, std::process::Stdio::null());
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // One byte at a time: the mark may arrive split across reads.
        for b in text.as_bytes() {
            stdin.write_all(&[*b]).expect("write");
            stdin.flush().expect("flush");
        }
    }
    let s = summary(child.wait_with_output().expect("wait"));
    assert_eq!(s["written"].as_u64(), Some(3), "--stdin: {s}");
    assert_eq!(s["dead_lettered"].as_u64(), Some(1), "--stdin: {s}");
    let stored = read_store(&dir.path().join("stdin"));
    assert_eq!(stored.dead_letters[0].letter.reason, "invalid_json");
}
