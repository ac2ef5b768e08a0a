//! Retention's guard against a clock set far ahead: a run that would empty
//! (nearly) every session removes nothing and fails, unless allowed.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::api_harness::ev;
use crate::harness::{read_store, run, Sink};

const MONITOR: &str = "0190b5a0-0000-7000-8000-0000000000d1";

/// RFC 3339 time `days` days before now.
fn days_ago(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("fmt")
}

/// Imports one record per `(session, days ago)` into a new store in `dir`.
fn seed(dir: &Path, sessions: &[(&str, i64)]) -> String {
    let file = dir.join("events.ndjson");
    let body: Vec<String> = sessions
        .iter()
        .enumerate()
        .map(|(i, (s, days))| {
            ev(
                "acme",
                "alice",
                s,
                MONITOR,
                i as u64 + 1,
                &days_ago(*days),
                "update",
                &format!("src/{s}.rs"),
            )
            .to_string()
        })
        .collect();
    std::fs::write(&file, body.join("\n")).expect("write");
    let store = format!("embedded:{}", dir.join("store").display());
    let out = run(&["import", "--store", &store, file.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    store
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `fdb-sink retention --store STORE --older-than 90d EXTRA…`.
fn retention_90d(store: &str, extra: &[&str]) -> Output {
    let mut args = vec!["retention", "--store", store, "--older-than", "90d"];
    args.extend_from_slice(extra);
    run(&args)
}

/// The JSON totals of a run that succeeded.
fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

#[test]
fn retention_refuses_to_empty_every_session_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every record is far older than the period: what a node whose clock
    // is years ahead sees.
    let sessions: Vec<(String, i64)> = (0..10).map(|i| (format!("s{i}"), 2000 + i)).collect();
    let sessions: Vec<(&str, i64)> = sessions.iter().map(|(s, d)| (s.as_str(), *d)).collect();
    let store = seed(dir.path(), &sessions);
    let store_dir = dir.path().join("store");

    let out = retention_90d(&store, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no totals for a refused run");
    for part in [
        "refusing to remove anything",
        "10 of the store's 10 sessions",
        "--allow-removing-all",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    assert_eq!(read_store(&store_dir).records.len(), 10, "nothing removed");

    // A dry run counts, exits 0 and says that a real run would refuse.
    let out = retention_90d(&store, &["--dry-run"]);
    let dry = ok_json(&out);
    assert_eq!(
        (
            dry["would_refuse"].as_bool(),
            dry["records_removed"].as_u64(),
            dry["sessions_removed"].as_u64(),
            dry["sessions_total"].as_u64()
        ),
        (Some(true), Some(10), Some(10), Some(10)),
        "{dry}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("would refuse"));

    let out = retention_90d(&store, &["--allow-removing-all"]);
    let rep = ok_json(&out);
    assert_eq!(
        (
            rep["records_removed"].as_u64(),
            rep["sessions_removed"].as_u64()
        ),
        (Some(10), Some(10)),
        "{rep}"
    );
    let after = read_store(&store_dir);
    assert!(after.records.is_empty() && after.sessions.is_empty());
}

#[test]
fn retention_runs_when_most_sessions_keep_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An idle store: nothing new for weeks, one session in ten past the
    // period (9 of 10 emptied is not more than 90 %).
    let mut sessions = vec![("recent", 40)];
    let old: Vec<String> = (0..9).map(|i| format!("old{i}")).collect();
    sessions.extend(old.iter().map(|s| (s.as_str(), 120)));
    let store = seed(dir.path(), &sessions);
    let out = retention_90d(&store, &["--dry-run"]);
    let dry = ok_json(&out);
    assert_eq!(dry["would_refuse"], false, "{dry}");
    let out = retention_90d(&store, &[]);
    let rep = ok_json(&out);
    assert_eq!(
        (
            rep["records_removed"].as_u64(),
            rep["sessions_removed"].as_u64(),
            rep["sessions_total"].as_u64()
        ),
        (Some(9), Some(9), Some(10)),
        "{rep}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("9 of 10 emptied"));
    let after = read_store(&dir.path().join("store"));
    assert_eq!(after.sessions.len(), 1);
    assert_eq!(after.sessions[0].session, "recent");
}

/// `serve --retention-older-than` has the same guard; a refused run is
/// logged and removes nothing, and `--retention-allow-removing-all` passes it.
#[test]
fn serve_retention_has_the_guard_and_its_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sessions: Vec<(String, i64)> = (0..10).map(|i| (format!("s{i}"), 2000 + i)).collect();
    let sessions: Vec<(&str, i64)> = sessions.iter().map(|(s, d)| (s.as_str(), *d)).collect();
    seed(dir.path(), &sessions);
    let store_dir = dir.path().join("store");
    let log_says = |sink: &Sink, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
            if log.contains(what) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what:?} never logged:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let mut sink = Sink::start(&store_dir, &["--retention-older-than", "90d"]);
    let log = log_says(&sink, "retention run refused");
    assert!(log.contains("--retention-allow-removing-all"), "{log}");
    sink.stop();
    assert_eq!(read_store(&store_dir).records.len(), 10, "nothing removed");

    let mut sink = Sink::start(
        &store_dir,
        &[
            "--retention-older-than",
            "90d",
            "--retention-allow-removing-all",
        ],
    );
    log_says(&sink, "retention run finished");
    sink.stop();
    assert!(read_store(&store_dir).records.is_empty(), "all removed");
}
