//! Replays, byte for byte, the requests a real Vector 0.56.0 `http` sink sent
//! (../shared/fixtures/vector-http-sink) and checks what was stored.

use std::path::Path;

use base64::Engine as _;

use crate::harness::{client, read_store, Sink};

const FIXTURES: &str = "/work/shared/fixtures/vector-http-sink";

fn replay(name: &str) {
    let path = Path::new(FIXTURES).join(format!("{name}.requests.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let requests: Vec<serde_json::Value> = serde_json::from_str(&text).expect("fixture json");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let http = client();
    for (i, r) in requests.iter().enumerate() {
        let body = base64::engine::general_purpose::STANDARD
            .decode(r["body_b64"].as_str().expect("body_b64"))
            .expect("base64");
        let mut req = http.post(sink.url(r["path"].as_str().expect("path")));
        for (k, v) in r["headers"].as_object().expect("headers") {
            // The transport sets these itself.
            if k == "host" || k == "content-length" {
                continue;
            }
            req = req.header(k.as_str(), v.as_str().expect("header value"));
        }
        let resp = req.body(body).send().expect("send");
        let status = resp.status().as_u16();
        let summary: serde_json::Value = resp.json().expect("json summary");
        assert_eq!(status, 200, "{name} request {i}: {summary}");
        assert_eq!(
            summary["received"].as_u64(),
            Some(
                summary["written"].as_u64().unwrap_or(0)
                    + summary["duplicates"].as_u64().unwrap_or(0)
                    + summary["dead_lettered"].as_u64().unwrap_or(0)
            ),
            "{name} request {i}: every line accounted for: {summary}"
        );
    }
    sink.stop();
    let stored = read_store(dir.path());
    // input.ndjson: four events of one session and one line that is not JSON.
    assert_eq!(stored.records.len(), 4, "{name}: one copy of each event");
    let seqs: Vec<u64> = stored.records.iter().map(|r| r.record.event.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "{name}: time-ordered");
    let mv = &stored.records[3].record.event;
    assert_eq!(
        (mv.from.as_deref(), mv.to.as_deref()),
        (Some("a.txt"), Some("b.txt"))
    );
    assert_eq!(stored.sessions.len(), 1);
    assert_eq!(stored.sessions[0].events, 4);
    assert_eq!(stored.monitors.len(), 1);
    assert_eq!(
        (stored.monitors[0].received, stored.monitors[0].max_seq),
        (4, 4)
    );
    assert_eq!(stored.dead_letters.len(), 1, "{name}: the bad line is kept");
    let dl = &stored.dead_letters[0].letter;
    assert_eq!(dl.reason, "upstream_dead_letter");
    assert!(
        dl.detail.contains("parse_json"),
        "{name}: Vector's reason kept: {}",
        dl.detail
    );
    assert!(
        dl.raw.contains("not a json line at all"),
        "{name}: raw line kept"
    );
}

#[test]
fn ndjson_gzip_with_a_retried_batch() {
    replay("ndjson_gzip");
}

#[test]
fn default_json_array_framing() {
    replay("default_framing");
}

#[test]
fn batches_vector_dropped_on_400_are_accepted() {
    replay("reject400");
}
