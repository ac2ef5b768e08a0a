//! Dead letters at scale: a body of many distinct invalid lines becomes a
//! bounded number of dead letters that keep every byte, a redelivery stores
//! and counts nothing twice, and a JSON array is walked in bounded memory.

use std::process::Command;

use crate::harness::{event, post, read_store, Sink, BIN};

/// Metric sample value of `name` (exact sample name with labels).
fn sample(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `fdb-sink dead-letters` on the stopped sink's store, with `extra`.
fn dead_letters_cli(dir: &std::path::Path, extra: &[&str]) -> Vec<u8> {
    let store = format!("embedded:{}", dir.display());
    let out = Command::new(BIN)
        .args(["dead-letters", "--store", &store, "--limit", "0"])
        .args(extra)
        .output()
        .expect("run dead-letters");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// 200,000 distinct invalid lines (each with its own timestamp, so that its
/// dead letter's key is its own) and 50 events, sent twice.
#[test]
fn many_distinct_invalid_lines_are_grouped_kept_exactly_and_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &["--request-timeout-secs", "55"]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut invalid: Vec<Vec<u8>> = Vec::new();
    let mut body = Vec::new();
    for i in 0..200_000u64 {
        // Past the first 1000 invalid lines (stored one dead letter each),
        // so that it shares a group (and its key time) with lines that have
        // a timestamp: a line without one is keyed by its receipt time.
        let line = if i % 1000 == 999 && i > 2000 {
            // Not UTF-8: kept byte for byte.
            let mut l = format!("{{\"n\":{i},\"p\":\"").into_bytes();
            l.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
            l
        } else {
            format!("{{\"timestamp\":\"2026-11-26T18:00:00.{i:09}Z\",\"n\":{i}}}").into_bytes()
        };
        body.extend_from_slice(&line);
        body.push(b'\n');
        invalid.push(line);
        if i % 4000 == 0 {
            body.extend_from_slice(event(&monitor, i / 4000 + 1, "s-storm").as_bytes());
            body.push(b'\n');
        }
    }
    let (s, r) = post(&sink, body.clone(), &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["received"].as_u64(), Some(200_050), "{r}");
    assert_eq!(r["written"].as_u64(), Some(50), "{r}");
    assert_eq!(r["dead_lettered"].as_u64(), Some(200_000), "{r}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r}");

    // A redelivery (Vector retrying after a lost answer) stores nothing.
    let (s, r) = post(&sink, body, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["written"].as_u64(), Some(0), "{r}");
    assert_eq!(r["dead_lettered"].as_u64(), Some(0), "{r}");
    assert_eq!(r["duplicates"].as_u64(), Some(200_050), "{r}");
    let m = sink.metrics();
    assert_eq!(
        sample(&m, "fdb_sink_dead_letter_total{reason=\"bad_schema\"}"),
        Some(199_802),
        "lines counted once, by their own reason:\n{m}"
    );
    assert_eq!(
        sample(&m, "fdb_sink_dead_letter_total{reason=\"invalid_utf8\"}"),
        Some(198),
        "{m}"
    );
    assert_eq!(
        sample(&m, "fdb_sink_events_duplicate_total"),
        Some(50),
        "{m}"
    );
    assert_eq!(
        sample(&m, "fdb_sink_dead_letter_duplicate_total"),
        Some(200_000),
        "{m}"
    );
    assert!(!m.contains("invalid_lines_grouped"), "a group is no reason");
    sink.stop();

    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 50);
    let rows = stored.dead_letters.len();
    let invalid_bytes: usize = invalid.iter().map(|l| l.len() + 1).sum();
    assert!(
        rows <= 1000 + invalid_bytes / 59_000 + 1,
        "{rows} dead letters for 200,000 invalid lines"
    );
    let lines: u64 = stored
        .dead_letters
        .iter()
        .map(|d| d.letter.lines.unwrap_or(1))
        .sum();
    assert_eq!(lines, 200_000, "each line in exactly one dead letter");
    for d in &stored.dead_letters {
        assert!(!d.letter.raw_truncated);
        if d.letter.lines.is_some() {
            assert_eq!(d.letter.reason, "invalid_lines_grouped");
            let reasons = d.letter.reasons.as_ref().expect("reasons");
            assert_eq!(reasons.values().sum::<u64>(), d.letter.lines.unwrap_or(0));
        }
    }

    // Every invalid line is recoverable, byte for byte, from the CLI.
    let raw = dead_letters_cli(dir.path(), &["--raw"]);
    let mut got: Vec<&[u8]> = raw.split(|b| *b == b'\n').collect();
    assert_eq!(got.pop(), Some(&b""[..]), "each line ends with a newline");
    got.sort();
    let mut want: Vec<&[u8]> = invalid.iter().map(Vec::as_slice).collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the raw lines differ from those sent");

    // `--reason` finds groups by the reasons of their lines.
    let utf8 = dead_letters_cli(dir.path(), &["--reason", "invalid_utf8"]);
    let rows: Vec<serde_json::Value> = utf8
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect();
    let n: u64 = rows
        .iter()
        .map(|r| {
            r["reasons"]["invalid_utf8"]
                .as_u64()
                .unwrap_or(u64::from(r["reason"] == "invalid_utf8"))
        })
        .sum();
    assert_eq!(n, 198, "{} rows", rows.len());
}

/// The same invalid line many times in one request: each occurrence is
/// stored and counted (one key each), and the redelivery counts them as
/// duplicates.
#[test]
fn a_repeated_invalid_line_is_counted_per_occurrence_and_once_per_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);
    let line = b"{\"timestamp\":\"2026-11-26T18:00:00Z\",\"oops\":1}\n";
    let body = line.repeat(5000);
    let (s, r) = post(&sink, body.clone(), &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["dead_lettered"].as_u64(), r["duplicates"].as_u64()),
        (Some(5000), Some(0)),
        "{r}"
    );
    let (s, r) = post(&sink, body, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["dead_lettered"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(5000)),
        "{r}"
    );
    let m = sink.metrics();
    assert_eq!(
        sample(&m, "fdb_sink_dead_letter_total{reason=\"bad_schema\"}"),
        Some(5000),
        "{m}"
    );
    assert_eq!(
        sample(&m, "fdb_sink_dead_letter_duplicate_total"),
        Some(5000),
        "{m}"
    );
    sink.stop();
    let raw = dead_letters_cli(dir.path(), &["--raw"]);
    assert_eq!(raw, line.repeat(5000));
}

/// A JSON array of 12 million tiny elements (24 MB): walked one element at
/// a time (a list of all elements first took 16 bytes each, 180 MiB here).
#[test]
fn a_json_array_of_many_tiny_elements_is_walked_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &["--request-timeout-secs", "55"]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut body = b"[".to_vec();
    for _ in 0..12_000_000 {
        body.extend_from_slice(b"1,");
    }
    body.extend_from_slice(event(&monitor, 1, "s-array").as_bytes());
    body.push(b']');
    let before = sink.peak_rss();
    let (s, r) = post(&sink, body, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["received"].as_u64(), Some(12_000_001), "{r}");
    assert_eq!(r["written"].as_u64(), Some(1), "{r}");
    assert_eq!(r["dead_lettered"].as_u64(), Some(12_000_000), "{r}");
    let peak = sink.peak_rss();
    assert!(
        peak < before + (100 << 20),
        "a 24 MB array took the sink from {} to {} MiB",
        before >> 20,
        peak >> 20
    );
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 1);
    assert!(stored.dead_letters.len() < 1000 + 24_000_000 / 60_000 + 2);
}

/// An array element whose strings are not UTF-8 is dead-lettered with its
/// exact bytes, and the elements after it are still stored.
#[test]
fn an_array_element_that_is_not_utf8_does_not_cut_the_array_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let bad = b"{\"path\":\"caf\xe9\"}".to_vec();
    let mut body = b"[".to_vec();
    body.extend_from_slice(event(&monitor, 1, "s-utf8").as_bytes());
    body.push(b',');
    body.extend_from_slice(&bad);
    body.push(b',');
    body.extend_from_slice(event(&monitor, 2, "s-utf8").as_bytes());
    body.push(b']');
    let (s, r) = post(&sink, body, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["received"].as_u64(),
            r["written"].as_u64(),
            r["dead_lettered"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{r}"
    );
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 2);
    assert_eq!(
        dead_letters_cli(dir.path(), &["--raw"]),
        [&bad[..], b"\n"].concat()
    );
}
