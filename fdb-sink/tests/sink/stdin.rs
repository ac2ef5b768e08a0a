//! `serve --stdin` and `import`: the same validation and write path.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::{event, read_store, BIN};

#[test]
fn serve_stdin_ingests_until_eof_then_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--stdin",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let monitor = uuid::Uuid::new_v4().to_string();
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for i in 1..=2500 {
            writeln!(stdin, "{}", event(&monitor, i, "s-stdin")).expect("write");
        }
        writeln!(stdin, "garbage line").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("summary on stdout");
    assert_eq!(summary["written"].as_u64(), Some(2500), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(1), "{summary}");
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 2500);
    assert_eq!(stored.monitors[0].max_seq, 2500);
    assert_eq!(stored.dead_letters.len(), 1);
}

#[test]
fn import_reads_files_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("store").display());
    let monitor = uuid::Uuid::new_v4().to_string();
    let file = dir.path().join("events.ndjson.zst");
    let text: String = (1..=1200)
        .map(|i| event(&monitor, i, "s-imp") + "\n")
        .collect();
    std::fs::write(&file, zstd::encode_all(text.as_bytes(), 3).expect("zstd")).expect("write");
    for expect_written in [1200, 0] {
        let out = Command::new(BIN)
            .args(["import", "--store", &store])
            .arg(&file)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
        assert_eq!(s["written"].as_u64(), Some(expect_written), "{s}");
        assert_eq!(s["received"].as_u64(), Some(1200), "{s}");
    }
    let stored = read_store(&dir.path().join("store"));
    assert_eq!(stored.records.len(), 1200);
    assert_eq!(stored.sessions[0].events, 1200);
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    let out = Command::new(BIN)
        .args(["import", "--store", "redis:localhost"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("embedded:<dir>"));
}
