//! A redelivered request (Vector retrying after a timeout or a 503) stores
//! its dead letters once, also those without a usable timestamp of their own
//! (keyed by their receipt): the auditor sees one refusal per refused line,
//! and the redeliveries are counted as duplicates. The same line in another
//! request or file is another refusal, stored on its own.

use std::path::Path;

use serde_json::Value;

use crate::harness::{cli, post, read_store, Sink};

const HOUR_NS: i64 = 3_600_000_000_000;

/// Invalid lines that have no usable timestamp of their own: not JSON, no
/// `timestamp`, a timestamp far in the future (`timestamp_in_future`), the
/// same line three times, and then enough lines without a timestamp that
/// the request's later invalid lines are grouped.
fn body() -> Vec<u8> {
    let mut lines: Vec<String> = vec![
        "not json at all".into(),
        r#"{"no":"timestamp"}"#.into(),
        r#"{"no":"timestamp"}"#.into(),
        r#"{"no":"timestamp"}"#.into(),
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": "019abcde-0000-7000-8000-000000000001",
            "monitor_id": "6f1c2a3e-1111-4222-8333-444455556666",
            "seq": 1,
            "timestamp": "2199-01-01T00:00:00Z",
            "event_type": "create",
            "kind": "file",
            "path": "a.txt",
            "tenant_id": "acme",
            "user_id": "alice",
            "session_id": "s-1",
        })
        .to_string(),
    ];
    lines.extend((0..1200).map(|i| format!("{{\"n\":{i}}}")));
    lines.join("\n").into_bytes()
}

/// Lines of the body: 5 + 1200.
const LINES: u64 = 1205;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn dead_letters(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let store = format!("embedded:{}", dir.display());
    let mut args = vec!["dead-letters", "--store", &store, "--limit", "0"];
    args.extend_from_slice(extra);
    let out = cli(&args);
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect()
}

#[test]
fn a_redelivered_request_stores_its_dead_letters_without_timestamp_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before =
        fdb_sink::timespec::parse_time_ns(&file_event::Timestamp::now().to_string()).expect("now");
    let sink = Sink::start(dir.path(), &[]);
    let (status, first) = post(&sink, body(), &[]);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["dead_lettered"], LINES, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    for _ in 0..2 {
        let (status, again) = post(&sink, body(), &[]);
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            (
                again["dead_lettered"].as_u64(),
                again["duplicates"].as_u64()
            ),
            (Some(0), Some(LINES)),
            "a redelivery stores nothing again: {again}"
        );
    }
    let m = sink.metrics();
    assert_eq!(metric(&m, "fdb_sink_dead_letter_total{"), LINES, "{m}");
    assert_eq!(
        metric(&m, "fdb_sink_dead_letter_duplicate_total"),
        2 * LINES,
        "{m}"
    );
    drop(sink);

    let stored = read_store(dir.path()).dead_letters;
    assert_eq!(
        stored.iter().map(|d| d.letter.line_count()).sum::<u64>(),
        LINES,
        "one refusal per refused line"
    );
    // The same line three times in one request keeps three rows.
    let repeated = stored
        .iter()
        .filter(|d| d.letter.raw == r#"{"no":"timestamp"}"#)
        .count();
    assert_eq!(repeated, 3);
    // Keyed by the hour of their receipt, which `received_at` gives exactly.
    for d in &stored {
        assert!(d.letter.keyed_by_receipt, "{:?}", d.letter);
        let received =
            fdb_sink::timespec::parse_time_ns(&d.letter.received_at).expect("received_at");
        assert!(received >= before);
        assert_eq!(d.ts_ns, received - received.rem_euclid(HOUR_NS));
    }
    // `--since`/`--until` select them by their receipt time, not by the
    // start of its hour.
    let since = file_event::Timestamp::from_unix_nanos(i128::from(before))
        .expect("time")
        .to_string();
    let count = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["lines"].as_u64().unwrap_or(1))
            .sum::<u64>()
    };
    assert_eq!(
        count(&dead_letters(dir.path(), &["--since", &since])),
        LINES
    );
    assert!(dead_letters(dir.path(), &["--until", &since]).is_empty());
}

/// Moves every dead letter of a dead-letter export `hours` back, as if it
/// had been received that much earlier.
fn shifted(export: &[u8], hours: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for line in export.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut v: Value = serde_json::from_slice(line).expect("json");
        let ts = v["ts_ns"].as_i64().expect("ts_ns");
        v["ts_ns"] = Value::from(ts - hours * HOUR_NS);
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn a_redelivery_hours_later_finds_the_first_copy_within_a_day() {
    let first = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(first.path(), &[]);
    let (status, r) = post(&sink, body(), &[]);
    assert_eq!((status, r["dead_lettered"].as_u64()), (200, Some(LINES)));
    drop(sink);
    let store = format!("embedded:{}", first.path().display());
    let export = cli(&["export", "--store", &store, "--dead-letters"]).stdout;

    for (hours, stored_again) in [(3, false), (24, false), (26, true)] {
        // A store where the first delivery was received `hours` earlier.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("dead-letters.ndjson");
        std::fs::write(&file, shifted(&export, hours)).expect("write");
        let store = format!("embedded:{}", dir.path().join("s").display());
        let out = cli(&["import", "--store", &store, file.to_str().expect("utf8")]);
        let totals: Value = serde_json::from_slice(&out.stdout).expect("totals");
        let rows = export
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(totals["dead_letters_restored"], rows as u64, "{totals}");
        let sink = Sink::start(&dir.path().join("s"), &[]);
        let (status, again) = post(&sink, body(), &[]);
        assert_eq!(status, 200, "{again}");
        if stored_again {
            assert_eq!(again["dead_lettered"], LINES, "{hours} h later: {again}");
        } else {
            assert_eq!(
                (
                    again["dead_lettered"].as_u64(),
                    again["duplicates"].as_u64()
                ),
                (Some(0), Some(LINES)),
                "{hours} h later: {again}"
            );
        }
    }
}

/// The lines of `out` (NDJSON) as JSON values.
fn json_lines(out: &[u8]) -> Vec<Value> {
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect()
}

/// The same refused line in two files is two refusals: the second import
/// stores it again (in `dead-letters --since` and the day's dead-letter
/// export), and says so; importing the same file again stores nothing and
/// reports the lines as dead-letter duplicates.
#[test]
fn the_same_line_in_another_import_is_its_own_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    std::fs::write(&a, "panic: disk quota exceeded\n").expect("write");
    std::fs::write(&b, "something else\npanic: disk quota exceeded\n").expect("write");
    let store = format!("embedded:{}", dir.path().join("s").display());
    let import = |file: &Path| {
        let out = cli(&["import", "--store", &store, file.to_str().expect("utf8")]);
        let totals: Value = serde_json::from_slice(&out.stdout).expect("totals");
        (totals, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (first, _) = import(&a);
    assert_eq!(first["dead_lettered"], 1, "{first}");
    let between = file_event::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let (second, said) = import(&b);
    assert_eq!(
        (
            second["received"].as_u64(),
            second["dead_lettered"].as_u64(),
            second["duplicates"].as_u64(),
            second["dead_letter_duplicates"].as_u64()
        ),
        (Some(2), Some(2), Some(0), Some(0)),
        "{second}"
    );
    assert!(
        said.contains("import: 2 of 2 lines were not stored as records: stored as 2 dead letters"),
        "{said}"
    );
    let since = json_lines(&cli(&["dead-letters", "--store", &store, "--since", &between]).stdout);
    let mut raws: Vec<&str> = since.iter().filter_map(|d| d["raw"].as_str()).collect();
    raws.sort_unstable();
    assert_eq!(
        raws,
        ["panic: disk quota exceeded", "something else"],
        "{since:?}"
    );
    let export = json_lines(&cli(&["export", "--store", &store, "--dead-letters"]).stdout);
    let quota = export
        .iter()
        .filter(|d| d["raw"] == "panic: disk quota exceeded")
        .count();
    assert_eq!((export.len(), quota), (3, 2), "{export:?}");

    // The same file again: the same batch, nothing new.
    let (again, said) = import(&b);
    assert_eq!(
        (
            again["dead_lettered"].as_u64(),
            again["duplicates"].as_u64(),
            again["dead_letter_duplicates"].as_u64()
        ),
        (Some(0), Some(2), Some(2)),
        "{again}"
    );
    assert!(
        said.contains(
            "import: 2 of 2 lines were not stored as records: already stored as dead letters (2) \
             by an earlier import of the same input"
        ),
        "{said}"
    );
    let all = json_lines(&cli(&["dead-letters", "--store", &store, "--limit", "0"]).stdout);
    assert_eq!(all.len(), 3, "{all:?}");
}

/// Over HTTP: a line without a timestamp that an earlier request also held
/// is stored again in a later request; only the same request again is a
/// duplicate, and the answer tells dead-letter duplicates from record
/// duplicates.
#[test]
fn the_same_line_in_another_request_is_its_own_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &[]);
    let event = crate::harness::event(&uuid::Uuid::new_v4().to_string(), 1, "s-dl");
    let a = format!("not json\n{event}").into_bytes();
    let b = b"{\"no\":\"timestamp\"}\nnot json".to_vec();
    let (status, first) = post(&sink, a.clone(), &[]);
    assert_eq!(
        (status, first["dead_lettered"].as_u64()),
        (200, Some(1)),
        "{first}"
    );
    let (status, second) = post(&sink, b.clone(), &[]);
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (
            second["dead_lettered"].as_u64(),
            second["duplicates"].as_u64(),
            second["dead_letter_duplicates"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "another request: {second}"
    );
    for (body, records, letters) in [(a, 1, 1), (b, 0, 2)] {
        let (status, again) = post(&sink, body, &[]);
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            (
                again["written"].as_u64(),
                again["dead_lettered"].as_u64(),
                again["duplicates"].as_u64(),
                again["dead_letter_duplicates"].as_u64()
            ),
            (Some(0), Some(0), Some(records + letters), Some(letters)),
            "the same request again: {again}"
        );
    }
    drop(sink);
    let stored = read_store(dir.path()).dead_letters;
    let not_json = stored.iter().filter(|d| d.letter.raw == "not json").count();
    assert_eq!((stored.len(), not_json), (3, 2), "{stored:?}");
}

/// On the embedded store, the lookups of dead letters keyed by their
/// receipt cost no transaction space: 1000 lines that are not JSON,
/// imported as one batch (one chunk, no group commit), are committed in one
/// transaction. Counted as FoundationDB counts them, their lookups alone
/// would take four.
#[test]
fn a_thousand_dead_letters_without_timestamp_commit_in_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lines.ndjson");
    let body: Vec<String> = (0..1000).map(|i| format!("not json {i}")).collect();
    std::fs::write(&file, body.join("\n")).expect("write");
    let store = format!("embedded:{}", dir.path().join("s").display());
    let out = cli(&["import", "--store", &store, file.to_str().expect("utf8")]);
    let r: Value = serde_json::from_slice(&out.stdout).expect("totals");
    assert_eq!(
        (r["dead_lettered"].as_u64(), r["transactions"].as_u64()),
        (Some(1000), Some(1)),
        "{r}"
    );
}
