//! A container line that is not UTF-8, dead-lettered by the collector: Vector's
//! JSON encoder replaces its invalid bytes in `message` (U+FFFD), so the
//! collector also sends them in `message_b64`. The stored dead letter keeps
//! those exact bytes (`dead-letters --raw`, `export --dead-letters`), a
//! copy that cannot be used is reported in the detail, and no line is
//! dropped.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{cli, post, Sink};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A dead letter as the collector's VRL makes it for `line` and Vector's
/// JSON encoder writes it (invalid bytes of `message` as U+FFFD).
fn marked(line: &[u8], second: u32, extra: Value) -> Vec<u8> {
    let mut record = json!({
        "dead_letter": true,
        "reason": "invalid_json: invalid unicode code point at line 1 column 3",
        "message": String::from_utf8_lossy(line),
        "timestamp": format!("2026-11-26T18:00:{second:02}.5Z"),
        "source_type": "kubernetes_logs",
        "cluster_name": "dev",
        "namespace": "coditect-app",
        "pod_name": "user-workspace-alice",
        "pod_uid": "0b9d2c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
        "node_name": "gke-ide-pool-1-node-a",
        "container_name": "file-monitor",
    });
    if let (Some(r), Value::Object(extra)) = (record.as_object_mut(), extra) {
        r.extend(extra);
    }
    serde_json::to_vec(&record).expect("json")
}

/// The stored dead letters, as `fdb-sink dead-letters` prints them.
fn listed(store: &str) -> Vec<Value> {
    let out = cli(&["dead-letters", "--store", store, "--limit", "0"]);
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a dead letter is JSON"))
        .collect()
}

fn decoded(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("raw_b64 is a string"))
        .expect("raw_b64 is base64")
}

#[test]
fn a_marked_line_that_is_not_utf8_keeps_the_bytes_the_container_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);

    let exact: &[u8] = b"{\"path\":\"caf\xe9.txt\",\"x\":\"\xff\xfe\"}";
    // A long line the collector cut to 65536 bytes: more than a dead letter
    // holds exactly.
    let long: Vec<u8> = (0..65_536u32)
        .map(|i| {
            if i % 7 == 0 {
                0xff
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let lines = [
        marked(exact, 1, json!({ "message_b64": b64(exact) })),
        marked(exact, 2, json!({ "message_b64": "not base64!" })),
        marked(
            &long,
            3,
            json!({
                "message_b64": b64(&long),
                "message_bytes": 70_000,
                "message_truncated": true,
            }),
        ),
        // A copy of other bytes than `message`'s.
        marked(exact, 4, json!({ "message_b64": b64(b"something else") })),
    ];
    let (status, answer) = post(&sink, lines.join(&b'\n'), &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dead_lettered"], 4, "{answer}");
    sink.stop();

    let letters = listed(&store);
    assert_eq!(letters.len(), 4, "{letters:#?}");
    // The exact bytes, and a reading aid without the base64 copy.
    let d = &letters[0];
    assert_eq!(decoded(&d["raw_b64"]), exact, "{d}");
    assert_eq!(d["raw_len"], exact.len());
    assert!(d.get("raw_truncated").is_none(), "{d}");
    let aid = d["raw"].as_str().expect("raw");
    assert!(!aid.contains("message_b64"), "{aid}");
    let aid: Value = serde_json::from_str(aid).expect("the aid is the collector's record");
    assert_eq!(aid["message"], String::from_utf8_lossy(exact).as_ref());
    assert_eq!(aid["reason"], d["detail"]);

    for d in &letters {
        assert_eq!(d["reason"], "upstream_dead_letter", "{d}");
        assert!(
            d["detail"]
                .as_str()
                .is_some_and(|s| s.starts_with("invalid_json: ")),
            "the collector's reason is kept: {d}"
        );
        assert!(
            d["raw"]
                .as_str()
                .is_some_and(|s| s.contains("user-workspace-alice")),
            "the pod is kept: {d}"
        );
    }

    // `dead-letters --raw` prints exactly what the container wrote.
    let raw = cli(&[
        "dead-letters",
        "--store",
        &store,
        "--raw",
        "--since",
        "2026-11-26T18:00:01Z",
        "--until",
        "2026-11-26T18:00:02Z",
    ]);
    assert_eq!(raw.stdout, [exact, b"\n"].concat());

    // Bad base64: the record as received, and the detail says why.
    let d = &letters[1];
    assert!(d.get("raw_b64").is_none(), "{d}");
    assert_eq!(d["raw"].as_str().map(str::as_bytes), Some(&lines[1][..]));
    assert!(
        d["detail"]
            .as_str()
            .is_some_and(|s| s.contains("message_b64 is not standard base64")),
        "{d}"
    );

    // Longer than a dead letter holds exactly: its first 60,000 bytes, cut
    // and sized as the collector said.
    let d = &letters[2];
    assert_eq!(decoded(&d["raw_b64"]), &long[..60_000]);
    assert_eq!(d["raw_len"], 70_000);
    assert_eq!(d["raw_truncated"], true);
    assert!(
        d["detail"]
            .as_str()
            .is_some_and(|s| s.contains("only the first 60000 of the 65536 bytes")),
        "{d}"
    );

    // A copy that is not the message's bytes is not taken for them.
    let d = &letters[3];
    assert!(d.get("raw_b64").is_none(), "{d}");
    assert_eq!(d["raw"].as_str().map(str::as_bytes), Some(&lines[3][..]));
    assert!(
        d["detail"]
            .as_str()
            .is_some_and(|s| s.contains("not the bytes of `message`")),
        "{d}"
    );

    // The archive carries the same exact bytes.
    let export = cli(&[
        "export",
        "--store",
        &store,
        "--dead-letters",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    let first: Value = export
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).expect("export line"))
        .find(|l| l["ts_ns"] == letters[0]["ts_ns"] && l["id"] == letters[0]["id"])
        .expect("exported");
    assert_eq!(decoded(&first["raw_b64"]), exact);
}
