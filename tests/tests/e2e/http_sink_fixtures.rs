//! The delivery harness against requests a real Vector 0.56.0 sent
//! (`shared/fixtures/vector-http-sink/`): the fixture's own config (stdin source, its
//! small remap, its http sink settings) runs through the harness against a capture
//! server that answers the statuses the original server answered. Every request must
//! match the captured one: method, path, headers, and the body byte for byte (gzip
//! included); retries resend the identical body; a 400 drops the batch.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use e2e_tests::harness::capture_server::CaptureServer;
use e2e_tests::harness::http_sink::BatchOutcome;
use e2e_tests::harness::k8s_wrap::wrap_stdin;
use e2e_tests::harness::pipeline::{Pipeline, Topology};
use e2e_tests::{paths, vector_config};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Captured {
    method: String,
    path: String,
    headers: std::collections::BTreeMap<String, String>,
    body_b64: String,
    body_decoded: String,
    answered: u16,
}

/// The fixture's collection time of the line that became a dead letter: the only
/// source timestamp that reaches the wire. Injecting it makes bodies comparable byte
/// for byte.
fn dead_letter_time(captured: &[Captured]) -> DateTime<Utc> {
    captured
        .iter()
        .flat_map(|r| -> Vec<serde_json::Value> {
            if r.body_decoded.starts_with('[') {
                serde_json::from_str(&r.body_decoded).unwrap_or_default()
            } else {
                r.body_decoded
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            }
        })
        .find(|e| e["dead_letter"] == true)
        .and_then(|e| e["timestamp"].as_str().map(str::to_owned))
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("every fixture has a dead letter")
}

async fn replay(name: &str) {
    e2e_tests::harness::env::init();
    let dir = paths::http_sink_fixtures();
    let config = vector_config::load(&dir.join(format!("{name}.toml")), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let captured: Vec<Captured> = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.requests.json")))
            .expect("fixture readable"),
    )
    .expect("fixture parses");
    let input = std::fs::read_to_string(dir.join("input.ndjson")).expect("input readable");
    let at = dead_letter_time(&captured);

    let server = CaptureServer::start(captured.iter().map(|r| r.answered).collect())
        .await
        .expect("capture server starts");
    let topology = Arc::new(
        Topology::from_config(&config, &dir, "in", "out").unwrap_or_else(|e| panic!("{e}")),
    );
    let sink_path = topology
        .sink_config()
        .uri
        .parse::<hyper::Uri>()
        .expect("uri")
        .path()
        .to_owned();
    let pipeline = Pipeline::start(topology, &server.url(&sink_path));
    for line in input.lines() {
        pipeline
            .push(wrap_stdin(line.as_bytes(), "vm", at))
            .await
            .expect("sink running");
    }
    let report = pipeline.finish().await;

    let got = server.requests();
    assert_eq!(
        got.len(),
        captured.len(),
        "{name}: request count; got {got:#?}"
    );
    for (i, (g, want)) in got.iter().zip(&captured).enumerate() {
        assert_eq!(g.method, want.method, "{name}#{i}");
        assert_eq!(g.path, want.path, "{name}#{i}");
        let mut want_headers = want.headers.clone();
        // The capture server listens on another port than the original one.
        want_headers.insert("host".into(), server.addr().to_string());
        assert_eq!(g.headers, want_headers, "{name}#{i}: headers");
        let want_body = base64::engine::general_purpose::STANDARD
            .decode(&want.body_b64)
            .expect("base64");
        assert_eq!(
            String::from_utf8_lossy(&decoded(&g.body, &g.headers)),
            want.body_decoded,
            "{name}#{i}: decoded body"
        );
        assert_eq!(g.body, want_body, "{name}#{i}: body bytes");
        assert!(!want.body_decoded.ends_with('\n'));
        assert_eq!(g.answered, want.answered, "{name}#{i}");
    }

    match name {
        "ndjson_gzip" => {
            // 503 then 200 for the first batch: retried with the identical body.
            assert_eq!(got[0].body, got[1].body);
            assert_eq!(report.batches.len(), 2);
            assert!(report
                .batches
                .iter()
                .all(|b| b.outcome == BatchOutcome::Delivered));
            assert_eq!(report.delivered_events(), 5);
            assert_eq!(report.attempts(), 3);
        }
        "reject400" => {
            assert_eq!(report.delivered_events(), 0);
            assert_eq!(report.dropped_events(), 5);
            assert!(report
                .batches
                .iter()
                .all(|b| b.outcome == BatchOutcome::Dropped { status: 400 }));
            assert_eq!(report.attempts(), 2, "a 400 is never retried");
        }
        _ => assert_eq!(report.delivered_events(), 5),
    }
}

fn decoded(body: &[u8], headers: &std::collections::BTreeMap<String, String>) -> Vec<u8> {
    if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        body.to_vec()
    }
}

#[tokio::test]
async fn ndjson_gzip_with_a_503_retry_matches_vector() {
    replay("ndjson_gzip").await;
}

#[tokio::test]
async fn default_json_array_framing_matches_vector() {
    replay("default_framing").await;
}

#[tokio::test]
async fn a_400_drops_each_batch_once_like_vector() {
    replay("reject400").await;
}
