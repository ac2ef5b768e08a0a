//! Records whose own time is far from when they arrive. Those that arrive
//! after their day's end (a backlog drained after an outage) are counted
//! and logged: the daily export of their day, which selects records by
//! their own time, may have run without them. Those dated more than a day
//! ahead (a producer's clock far off) are dead letters.

use crate::harness::{event, ndjson, post, read_store, Sink};

fn at(monitor: &str, seq: u64, tenant: &str, timestamp: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&event(monitor, seq, "s-late")).expect("event");
    v["timestamp"] = timestamp.into();
    v["tenant_id"] = tenant.into();
    v.to_string()
}

fn late_total(sink: &Sink) -> Option<u64> {
    sink.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("fdb_sink_events_late_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn records_received_after_their_days_end_are_counted_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(&dir.path().join("store"), &["--late-after", "1h"]);
    assert_eq!(late_total(&sink), Some(0), "exported from the start");
    let m = uuid::Uuid::new_v4().to_string();
    // A monitor belongs to one tenant: globex's events come from its own.
    let g = uuid::Uuid::new_v4().to_string();
    let now = file_event::Timestamp::now().to_string();
    let lines = vec![
        at(&m, 1, "acme", &now),
        at(&m, 2, "acme", "2026-11-20T23:59:59.999999999Z"),
        at(&g, 3, "globex", "2026-11-21T00:00:00Z"),
    ];
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(3)), "{r}");
    assert_eq!(late_total(&sink), Some(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let logged = || {
        let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        log.lines()
            .find(|l| l.contains("received after their day's end"))
            .map(str::to_owned)
    };
    while logged().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = logged().expect("a warning for the late records");
    for want in [
        "records=2",
        "2026-11-20,2026-11-21",
        "days_total=2",
        "acme,globex",
        "tenants_total=2",
        "lists_cut=false",
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }
    // Delivered again, they are duplicates: the day's archive is not short
    // of them because of this delivery.
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, r["duplicates"].as_u64()), (200, Some(3)), "{r}");
    assert_eq!(
        late_total(&sink),
        Some(2),
        "redeliveries are not late records"
    );
    // A generous --late-after counts none of them.
    drop(sink);
    let sink = Sink::start(&dir.path().join("store2"), &["--late-after", "36500d"]);
    let (s, _) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(s, 200);
    assert_eq!(late_total(&sink), Some(0));
}

#[test]
fn a_record_dated_more_than_a_day_ahead_is_a_dead_letter_keyed_by_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let m = uuid::Uuid::new_v4().to_string();
    let ns = |t: file_event::Timestamp| t.unix_nanos();
    let ahead = |hours: i128| {
        let now = ns(file_event::Timestamp::now());
        file_event::Timestamp::from_unix_nanos(now + hours * 3_600_000_000_000)
            .expect("time")
            .to_string()
    };
    let lines = vec![
        at(&m, 1, "acme", &ahead(23)),
        at(&m, 2, "acme", &ahead(25)),
        at(&m, 3, "acme", "2200-01-01T00:00:00Z"),
    ];
    let before = ns(file_event::Timestamp::now());
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["written"].as_u64(), r["dead_lettered"].as_u64()),
        (Some(1), Some(2)),
        "{r}"
    );
    assert!(sink
        .metrics()
        .contains("fdb_sink_dead_letter_total{reason=\"timestamp_in_future\"} 2"));
    // Sent again: stored once (the summary counts them as duplicates), the
    // dead letters too.
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, r["duplicates"].as_u64()), (200, Some(3)), "{r}");
    let after = ns(file_event::Timestamp::now());
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 1);
    let future: Vec<_> = stored
        .dead_letters
        .iter()
        .filter(|d| d.letter.reason == "timestamp_in_future")
        .collect();
    assert_eq!(future.len(), 2, "stored once, whatever the deliveries");
    const HOUR: i128 = 3_600_000_000_000;
    for d in future {
        let received = ns(file_event::Timestamp::parse(&d.letter.received_at).expect("time"));
        assert!(before <= received && received <= after, "{received}");
        assert!(d.letter.keyed_by_receipt);
        assert_eq!(
            i128::from(d.ts_ns),
            received - received.rem_euclid(HOUR),
            "keyed by the hour of its receipt"
        );
        assert!(d.letter.detail.contains("24 hours"), "{}", d.letter.detail);
    }
}

/// `fdb-sink late` on the store in `dir`: its exit code, stdout, stderr.
fn late_cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let store = format!("embedded:{}", dir.display());
    let mut all = vec!["late", "--store", &store];
    all.extend_from_slice(args);
    let out = crate::harness::run(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Late new records are marked per day and tenant in the transaction that
/// stores them (the marker survives a killed sink); duplicates and records
/// of today are not; `fdb-sink late` lists the markers and clears one only
/// at the count the caller saw.
#[test]
fn late_records_are_marked_and_cleared_at_the_count_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let mut sink = Sink::start(&store_dir, &["--late-after", "1h"]);
    let m = uuid::Uuid::new_v4().to_string();
    // A monitor belongs to one tenant: globex's events come from its own.
    let g = uuid::Uuid::new_v4().to_string();
    let now = file_event::Timestamp::now().to_string();
    let lines = vec![
        at(&m, 1, "acme", "2026-11-20T10:00:00Z"),
        at(&m, 2, "acme", "2026-11-20T23:59:59.999999999Z"),
        at(&g, 3, "globex", "2026-11-20T08:00:00Z"),
        at(&m, 4, "acme", "2026-11-21T00:00:00Z"),
        at(&m, 5, "acme", &now),
    ];
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(5)), "{r}");
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!((s, r["duplicates"].as_u64()), (200, Some(5)), "{r}");
    // Acknowledged means committed with its marker: a kill loses neither.
    sink.kill();
    let (code, out, err) = late_cli(&store_dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "2026-11-20 acme 2\n2026-11-20 globex 1\n2026-11-21 acme 1\n",
        "oldest first, duplicates and today's record not counted"
    );
    assert!(err.contains("late: 3 markers"), "{err}");

    // One more late record of acme's 2026-11-20 after the list was read.
    let mut sink = Sink::start(&store_dir, &["--late-after", "1h"]);
    let (s, _) = post(
        &sink,
        ndjson(&[at(&m, 6, "acme", "2026-11-20T12:00:00Z")]),
        &[],
    );
    assert_eq!(s, 200);
    sink.stop();
    let clear = |day: &str, tenant: &str, n: &str| {
        late_cli(
            &store_dir,
            &["--clear", "--day", day, "--tenant", tenant, "--if-count", n],
        )
    };
    let (code, _, err) = clear("2026-11-20", "acme", "2");
    assert_eq!(code, 3, "a count seen before the new record: {err}");
    assert!(err.contains("has count 3, not --if-count 2"), "{err}");
    let (code, _, err) = clear("2026-11-20", "acme", "3");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cleared day=2026-11-20 tenant=acme count=3"),
        "{err}"
    );
    let (code, _, err) = clear("2026-11-20", "acme", "3");
    assert_eq!(code, 3, "cleared already: {err}");
    assert!(err.contains("no marker"), "{err}");
    let (_, out, _) = late_cli(&store_dir, &[]);
    assert_eq!(out, "2026-11-20 globex 1\n2026-11-21 acme 1\n");

    // Bad input: exit 2 with a message, nothing cleared.
    for (args, want) in [
        (
            &[
                "--clear",
                "--day",
                "2026-02-30",
                "--tenant",
                "globex",
                "--if-count",
                "1",
            ][..],
            "bad day",
        ),
        (
            &[
                "--clear",
                "--day",
                "20-11-2026",
                "--tenant",
                "globex",
                "--if-count",
                "1",
            ][..],
            "YYYY-MM-DD",
        ),
        (
            &[
                "--clear",
                "--day",
                "2026-11-20",
                "--tenant",
                "a b",
                "--if-count",
                "1",
            ][..],
            "--tenant",
        ),
        (
            &[
                "--clear",
                "--day",
                "2026-11-20",
                "--tenant",
                "globex",
                "--if-count",
                "0",
            ][..],
            "--if-count",
        ),
        (
            &["--clear", "--day", "2026-11-20", "--tenant", "globex"][..],
            "--if-count",
        ),
        (
            &["--day", "2026-11-20"][..],
            "--day only goes with --clear: `fdb-sink late` lists every marker",
        ),
        (
            &["--tenant", "acme", "--if-count", "2"][..],
            "--tenant, --if-count only go with --clear",
        ),
    ] {
        let (code, _, err) = late_cli(&store_dir, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want} in {err}");
    }
    let (code, _, err) = late_cli(&dir.path().join("missing"), &[]);
    assert_eq!(code, 2, "no store there: {err}");
    let (_, out, _) = late_cli(&store_dir, &[]);
    assert_eq!(out, "2026-11-20 globex 1\n2026-11-21 acme 1\n");
}

/// `import` (a restore of an export) marks nothing, however old its records.
#[test]
fn imported_records_are_not_marked_late() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = uuid::Uuid::new_v4().to_string();
    let file = dir.path().join("old.ndjson");
    std::fs::write(&file, ndjson(&[at(&m, 1, "acme", "2026-11-20T10:00:00Z")])).expect("write");
    let store = format!("embedded:{}", dir.path().join("store").display());
    let file = file.display().to_string();
    let out = crate::harness::cli(&["import", "--store", &store, &file]);
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).expect("totals");
    assert_eq!(totals["written"], 1);
    assert!(totals.get("marked_late").is_none(), "{totals}");
    let (code, out, err) = late_cli(&dir.path().join("store"), &[]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// `fdb-sink import` on a fresh store in `dir`: its stdout (the totals) and
/// stderr.
fn import(dir: &std::path::Path, lines: &[String], args: &[&str]) -> (String, String) {
    let file = dir.join("recovered.ndjson");
    std::fs::write(&file, ndjson(lines)).expect("write");
    let store = format!("embedded:{}", dir.join("store").display());
    let file = file.display().to_string();
    let mut all = vec!["import", "--store", &store];
    all.extend_from_slice(args);
    all.push(&file);
    let out = crate::harness::cli(&all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `import --mark-late` (events recovered from the monitor's output) marks
/// the new records of a day past --late-after as `serve` does, so that the
/// daily export archives that day again; a record of today, and a second
/// import of the same lines, add nothing.
#[test]
fn import_with_mark_late_marks_the_new_records_of_earlier_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = uuid::Uuid::new_v4().to_string();
    // A monitor belongs to one tenant: globex's events come from its own.
    let g = uuid::Uuid::new_v4().to_string();
    let now = file_event::Timestamp::now().to_string();
    let lines = vec![
        at(&m, 1, "acme", "2026-11-20T10:00:00Z"),
        at(&m, 2, "acme", "2026-11-20T11:00:00Z"),
        at(&g, 3, "globex", "2026-11-21T08:00:00Z"),
        at(&m, 4, "acme", &now),
    ];
    let (out, err) = import(dir.path(), &lines, &["--mark-late"]);
    let totals: serde_json::Value = serde_json::from_str(&out).expect("totals");
    assert_eq!(totals["written"], 4, "{out}");
    assert_eq!(totals["marked_late"], 3, "{out}");
    assert!(err.contains("import: 3 records marked late"), "{err}");
    let (code, listed, err) = late_cli(&dir.path().join("store"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed, "2026-11-20 acme 2\n2026-11-21 globex 1\n");
    // The same lines again: stored already, so not late again.
    let (out, _) = import(dir.path(), &lines, &["--mark-late", "--late-after", "0s"]);
    let totals: serde_json::Value = serde_json::from_str(&out).expect("totals");
    assert_eq!(
        (
            totals["duplicates"].as_u64(),
            totals["marked_late"].as_u64()
        ),
        (Some(4), Some(0)),
        "{out}"
    );
    let (_, again, _) = late_cli(&dir.path().join("store"), &[]);
    assert_eq!(again, listed);
    // A --late-after past the records' days marks none.
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = import(
        dir.path(),
        &lines,
        &["--mark-late", "--late-after", "36500d"],
    );
    let totals: serde_json::Value = serde_json::from_str(&out).expect("totals");
    assert_eq!(totals["marked_late"], 0, "{out}");
    let (_, none, _) = late_cli(&dir.path().join("store"), &[]);
    assert_eq!(none, "");
    // --late-after alone is a usage error: it would mark nothing.
    let store = format!("embedded:{}", dir.path().join("store").display());
    let out = crate::harness::run(&["import", "--store", &store, "--late-after", "1h", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mark-late"));
}
