//! Helpers shared by the test modules.

use chrono::{DateTime, TimeZone as _, Utc};
use e2e_tests::harness::k8s_wrap::{wrap_kubernetes_logs, PodMeta, Stream};
use e2e_tests::harness::remap::{Remap, RemapOutcome};
use e2e_tests::paths;
use vrl::value::Value;

/// The project's event program, compiled once per test.
pub fn parse_events() -> Remap {
    e2e_tests::harness::env::init();
    let path = paths::vector_config_dir().join("parse_events.vrl");
    Remap::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixed collection time.
pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 18, 0, 0)
        .single()
        .expect("valid date")
        + chrono::Duration::nanoseconds(123_456_789)
}

/// Alice's workspace pod (tenant acme, session s-1).
pub fn alice_pod() -> PodMeta {
    PodMeta::workspace_sidecar("user-workspace-alice", "acme", "alice", "s-1")
}

/// Runs `line` from Alice's sidecar (stdout) through the program; the program must
/// run to completion.
pub fn run_line(remap: &Remap, line: &[u8]) -> serde_json::Value {
    run_event(
        remap,
        wrap_kubernetes_logs(line, &alice_pod(), Stream::Stdout, at()),
    )
}

pub fn run_event(remap: &Remap, event: Value) -> serde_json::Value {
    match remap.run(event) {
        RemapOutcome::Done(v) => to_json(&v),
        other => panic!("{} did not run to completion: {other:?}", remap.name()),
    }
}

pub fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).expect("VRL values serialise")
}

/// A valid file-event/1 line as the monitor writes it.
pub fn event_json(seq: u64, event_type: &str) -> serde_json::Value {
    let mut ev = serde_json::json!({
        "schema": "file-event/1",
        "event_id": format!("019abcde-0000-7000-8000-{seq:012}"),
        "monitor_id": "6f1c2a3e-1111-4222-8333-444455556666",
        "seq": seq,
        "timestamp": "2026-11-26T18:00:00.000000001Z",
        "event_type": event_type,
        "kind": "file",
        "path": "src/lib.rs",
        "size": 42,
        "checksum": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": "s-1",
        "metadata": {"ide": "theia"}
    });
    if event_type == "move" {
        ev["from"] = "src/old.rs".into();
        ev["to"] = "src/lib.rs".into();
    }
    ev
}
