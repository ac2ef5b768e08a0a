//! `import` and `serve --stdin` group a file's invalid lines as the ingest
//! endpoint groups a request's: a bounded number of dead letters that still
//! give every byte back through `fdb-sink dead-letters --raw`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{cli, event, read_store, BIN};
use crate::stdin::serve_stdin;

const INVALID: usize = 30_000;
const VALID: u64 = 10;

/// 30,000 distinct invalid lines (some not UTF-8) with 10 events among them.
fn input() -> (Vec<u8>, Vec<Vec<u8>>) {
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut body = Vec::new();
    let mut invalid = Vec::new();
    for i in 0..INVALID {
        let line = if i % 97 == 0 {
            let mut l = format!("{{\"n\":{i},\"p\":\"").into_bytes();
            l.extend_from_slice(&[0xff, b'"', b'}']);
            l
        } else {
            format!("{{\"n\":{i}}}").into_bytes()
        };
        body.extend_from_slice(&line);
        body.push(b'\n');
        invalid.push(line);
        if i % 3000 == 0 {
            let e = event(&monitor, (i / 3000) as u64 + 1, "s-group");
            body.extend_from_slice(e.as_bytes());
            body.push(b'\n');
        }
    }
    (body, invalid)
}

/// Checks the store in `dir` after `input()` went in: at most `max_rows`
/// dead letters.
fn check(dir: &Path, summary: &serde_json::Value, invalid: &[Vec<u8>], max_rows: usize) {
    assert_eq!(summary["written"].as_u64(), Some(VALID), "{summary}");
    assert_eq!(
        summary["dead_lettered"].as_u64(),
        Some(INVALID as u64),
        "{summary}"
    );
    let stored = read_store(dir);
    assert_eq!(stored.records.len() as u64, VALID);
    let lines: u64 = stored
        .dead_letters
        .iter()
        .map(|d| d.letter.line_count())
        .sum();
    assert_eq!(lines, INVALID as u64);
    assert!(
        stored.dead_letters.len() <= max_rows,
        "{} dead-letter rows for {INVALID} invalid lines",
        stored.dead_letters.len()
    );
    let store = format!("embedded:{}", dir.display());
    let out = Command::new(BIN)
        .args(["dead-letters", "--store", &store, "--raw", "--limit", "0"])
        .output()
        .expect("dead-letters");
    assert!(out.status.success());
    let mut got: Vec<&[u8]> = out.stdout.split(|b| *b == b'\n').collect();
    assert_eq!(got.pop(), Some(&b""[..]), "ends with a newline");
    let mut want: Vec<&[u8]> = invalid.iter().map(Vec::as_slice).collect();
    got.sort();
    want.sort();
    assert!(got == want, "every invalid line given back, byte for byte");
}

#[test]
fn import_groups_a_files_invalid_lines_and_keeps_every_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (body, invalid) = input();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, &body).expect("write");
    let store_dir = dir.path().join("store");
    let store = format!("embedded:{}", store_dir.display());
    let out = cli(&["import", "--store", &store, file.to_str().expect("utf8")]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    // One batch: 1000 single lines and about 5 groups.
    check(&store_dir, &summary, &invalid, 1010);
}

#[test]
fn serve_stdin_groups_invalid_lines_and_keeps_every_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (body, invalid) = input();
    let store = format!("embedded:{}", dir.path().display());
    let mut child = serve_stdin(&store, Stdio::null());
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&body).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    // A batch also ends 200 ms after its first line: a slow machine may
    // cut the input in a few batches, each with its 1000 single lines.
    check(dir.path(), &summary, &invalid, 5000);
}
