//! Retention and export/import through the real binary.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fdb_sink::keys::{KeyRange, Keys};
use fdb_sink::store::embedded::EmbeddedStore;
use fdb_sink::store::{Kv, StoreExt};
use serde_json::{json, Value};

use crate::api_harness::ev;
use crate::harness::{cli, post, read_store, Sink, BIN};

const M_ACME: &str = "0190b5a0-0000-7000-8000-0000000000c1";
const M_BOB: &str = "0190b5a0-0000-7000-8000-0000000000c2";
const M_GLOBEX: &str = "0190b5a0-0000-7000-8000-0000000000c3";
const M_ACME2: &str = "0190b5a0-0000-7000-8000-0000000000c4";

/// `fdb-sink export` of `tenant` from `store` into `file`, with `extra` flags.
fn export_tenant(store: &str, tenant: &str, file: &Path, extra: &[&str]) -> Output {
    let file = file.to_str().expect("utf8");
    let mut args = vec![
        "export", "--store", store, "--tenant", tenant, "--output", file,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

/// `fdb-sink import FILE` into `store`; its JSON totals.
fn import(store: &str, file: &str) -> Value {
    let out = cli(&["import", "--store", store, file]);
    serde_json::from_slice(&out.stdout).expect("import totals")
}

fn ingest(sink: &Sink, lines: &[Value]) {
    let body: Vec<String> = lines.iter().map(Value::to_string).collect();
    let (s, r) = post(sink, body.join("\n").into_bytes(), &[]);
    assert_eq!((s, r["dead_lettered"].as_u64()), (200, Some(0)), "{r}");
}

/// RFC 3339 time as nanoseconds since the epoch.
fn ns(t: &str) -> u64 {
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("time");
    u64::try_from(t.unix_timestamp_nanos()).expect("after 1970")
}

/// RFC 3339 time `days` days before now.
fn days_ago(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("fmt")
}

fn range(dir: &Path, r: &KeyRange) -> Vec<Kv> {
    let store = EmbeddedStore::open(dir).expect("open");
    store
        .read(|t| t.get_range(&r.begin, &r.end, 0, false))
        .expect("read")
}

#[test]
fn retention_removes_only_old_records_and_fixes_summaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let mut sink = Sink::start(&store_dir, &[]);
    let cs = format!("sha256:{:064x}", 9);
    let mut lines = vec![
        ev(
            "acme",
            "alice",
            "s-old",
            M_ACME,
            1,
            &days_ago(200),
            "create",
            "old/a.rs",
        ),
        ev(
            "acme",
            "alice",
            "s-old",
            M_ACME,
            2,
            &days_ago(199),
            "move",
            "old/b.rs",
        ),
        ev(
            "acme",
            "alice",
            "s-mixed",
            M_ACME,
            3,
            &days_ago(120),
            "update",
            "mixed/c.rs",
        ),
        ev(
            "acme",
            "alice",
            "s-mixed",
            M_ACME,
            4,
            &days_ago(10),
            "update",
            "mixed/c.rs",
        ),
        ev(
            "acme",
            "alice",
            "s-mixed",
            M_ACME,
            5,
            &days_ago(1),
            "delete",
            "mixed/d.rs",
        ),
    ];
    for l in &mut lines {
        l["checksum"] = json!(cs);
    }
    ingest(&sink, &lines);
    sink.stop();
    let store = format!("embedded:{}", store_dir.display());
    let before = read_store(&store_dir);
    assert_eq!(before.records.len(), 5);

    let out = cli(&[
        "retention",
        "--store",
        &store,
        "--older-than",
        "90d",
        "--dry-run",
    ]);
    let dry: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (
            dry["dry_run"].as_bool(),
            dry["records_removed"].as_u64(),
            dry["sessions_removed"].as_u64()
        ),
        (Some(true), Some(3), Some(1)),
        "{dry}"
    );
    let after_dry = read_store(&store_dir);
    assert_eq!(after_dry.records.len(), 5, "dry run changes nothing");
    assert_eq!(after_dry.sessions, before.sessions);

    let out = cli(&[
        "retention",
        "--store",
        &store,
        "--older-than",
        "90d",
        "--batch-records",
        "1",
    ]);
    let rep: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rep["records_removed"], 3, "{rep}");
    assert_eq!(
        rep["by_path_removed"], 4,
        "a move has two by_path entries: {rep}"
    );
    assert_eq!(rep["by_checksum_removed"], 2, "{rep}");
    for field in [
        "records_removed",
        "by_path_removed",
        "by_checksum_removed",
        "sessions_removed",
    ] {
        assert_eq!(
            dry[field], rep[field],
            "the dry run counted {field} right: {dry} {rep}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 3 records"));
    let after = read_store(&store_dir);
    let kept: Vec<&str> = after
        .records
        .iter()
        .map(|r| r.record.event.path.as_str())
        .collect();
    assert_eq!(kept, ["mixed/c.rs", "mixed/d.rs"]);
    assert_eq!(after.sessions.len(), 1, "the all-old session is gone");
    let s = &after.sessions[0];
    assert_eq!((s.session.as_str(), s.events), ("s-mixed", 2));
    assert_eq!(s.by_type.get("update"), Some(&1));
    assert_eq!(s.by_type.get("delete"), Some(&1));
    assert_eq!(s.first_ns, after.records[0].key.ts_ns as u64);
    let keys = Keys::default();
    let paths: Vec<String> = range(&store_dir, &keys.by_path_tenant("acme"))
        .iter()
        .map(|(k, _)| keys.decode_by_path(k).expect("key").path)
        .collect();
    assert_eq!(paths, ["mixed/c.rs", "mixed/d.rs"]);
    let dups: Vec<String> = range(&store_dir, &keys.by_checksum_tenant("acme"))
        .iter()
        .map(|(k, _)| keys.decode_by_checksum(k).expect("key").path)
        .collect();
    assert_eq!(
        dups,
        ["mixed/c.rs", "mixed/d.rs"],
        "old content locations are gone"
    );

    let out = cli(&["retention", "--store", &store, "--older-than", "90d"]);
    let again: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(again["records_removed"], 0, "idempotent");
}

#[test]
fn serve_runs_retention_periodically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let mut sink = Sink::start(
        &store_dir,
        &[
            "--retention-older-than",
            "30d",
            "--retention-interval",
            "1s",
        ],
    );
    ingest(
        &sink,
        &[
            ev(
                "acme",
                "alice",
                "s-1",
                M_ACME,
                1,
                &days_ago(40),
                "create",
                "a",
            ),
            ev(
                "acme",
                "alice",
                "s-1",
                M_ACME,
                2,
                &days_ago(2),
                "create",
                "b",
            ),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sink
        .log
        .lock()
        .map(|l| l.contains("records_removed=1"))
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "no retention run removed the old record"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sink.stop();
    let after = read_store(&store_dir);
    assert_eq!(after.records.len(), 1);
    assert_eq!(after.records[0].record.event.path, "b");
}

#[test]
fn export_then_import_into_an_empty_store_reproduces_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    let mut odd = ev(
        "acme",
        "alice",
        "s-1",
        M_ACME,
        3,
        "2026-11-20T10:00:02.5Z",
        "create",
        "caf\u{fffd}.txt",
    );
    odd["path_b64"] = json!("Y2Fm6S50eHQ=");
    odd["metadata"] = json!({"team": "core", "ticket": 42, "nested": {"a": [1, 2]}});
    ingest(
        &sink,
        &[
            ev(
                "acme",
                "alice",
                "s-1",
                M_ACME,
                1,
                "2026-11-20T10:00:00Z",
                "create",
                "src/a.rs",
            ),
            ev(
                "acme",
                "alice",
                "s-1",
                M_ACME,
                2,
                "2026-11-20T10:00:01Z",
                "move",
                "src/b.rs",
            ),
            odd,
            ev(
                "acme",
                "bob",
                "s-2",
                M_BOB,
                1,
                "2026-11-21T10:00:00Z",
                "update",
                "src/a.rs",
            ),
            ev(
                "acme",
                "bob",
                "s-2",
                M_BOB,
                2,
                "2026-11-22T10:00:00Z",
                "access",
                "README.md",
            ),
            ev(
                "globex",
                "carol",
                "s-3",
                M_GLOBEX,
                1,
                "2026-11-21T10:00:00Z",
                "create",
                "x",
            ),
        ],
    );
    sink.stop();
    let src_store = format!("embedded:{}", src.display());

    // Subsets: one user, a time range, one session, to stdout.
    let lines = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["export", "--store", &src_store];
        all.extend_from_slice(args);
        let out = cli(&all);
        String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    // A whole-tenant export ends with the tenant's monitor counters.
    let all = lines(&["--tenant", "acme"]);
    assert_eq!(all.len(), 7);
    assert!(all[..5].iter().all(|l| l["schema"] == "file-event/1"));
    assert_eq!(
        all[5..],
        [
            json!({"schema": "fdb-sink-monitor/1", "monitor_id": M_ACME, "tenant_id": "acme",
                   "received": 3, "highest_seq": 3, "last_ns": ns("2026-11-20T10:00:02.5Z")}),
            json!({"schema": "fdb-sink-monitor/1", "monitor_id": M_BOB, "tenant_id": "acme",
                   "received": 2, "highest_seq": 2, "last_ns": ns("2026-11-22T10:00:00Z")}),
        ]
    );
    assert_eq!(lines(&["--tenant", "acme", "--user", "bob"]).len(), 2);
    assert_eq!(lines(&["--tenant", "acme", "--session", "s-1"]).len(), 3);
    // A time range keeps the monitor lines (a daily export carries them).
    let day = lines(&[
        "--tenant",
        "acme",
        "--since",
        "2026-11-21T00:00:00Z",
        "--until",
        "2026-11-22T00:00:00Z",
    ]);
    let schemas: Vec<&str> = day.iter().filter_map(|l| l["schema"].as_str()).collect();
    assert_eq!(
        schemas,
        ["file-event/1", "fdb-sink-monitor/1", "fdb-sink-monitor/1"]
    );
    let one = lines(&[
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--session",
        "s-1",
        "--until",
        "2026-11-20T10:00:01Z",
    ]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["schema"], "file-event/1");
    assert_eq!(
        one[0]["pod_name"], "ws-alice",
        "Kubernetes fields are exported"
    );
    assert!(lines(&["--tenant", "nobody"]).is_empty());

    let keys = Keys::default();
    for (name, extra) in [
        ("acme.ndjson.zst", vec![]),
        ("acme.ndjson.gz", vec!["--compress", "gzip"]),
    ] {
        let file = dir.path().join(name);
        let out = export_tenant(&src_store, "acme", &file, &extra);
        assert!(String::from_utf8_lossy(&out.stderr).contains("export: 5 records and 2 monitors"));
        let dst = dir.path().join(format!("dst-{name}"));
        let dst_store = format!("embedded:{}", dst.display());
        let summary = import(&dst_store, file.to_str().expect("utf8"));
        assert_eq!(
            (
                summary["written"].as_u64(),
                summary["dead_lettered"].as_u64()
            ),
            (Some(5), Some(0)),
            "{summary}"
        );
        for r in [
            keys.audit_logs_tenant("acme"),
            keys.sessions_tenant("acme"),
            keys.by_path_tenant("acme"),
            keys.by_checksum_tenant("acme"),
            keys.monitor(M_ACME),
            keys.monitor(M_BOB),
        ] {
            let a = range(&src, &r);
            assert!(!a.is_empty());
            assert_eq!(
                a,
                range(&dst, &r),
                "{name}: keys and values differ in {r:?}"
            );
        }
        assert!(range(&dst, &keys.audit_logs_tenant("globex")).is_empty());
        assert!(range(&dst, &keys.dead_letter_all()).is_empty());
    }
}

#[test]
fn a_restore_after_retention_keeps_the_monitor_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    let lines: Vec<Value> = (1..=4)
        .map(|seq| {
            let age = if seq <= 2 { 100 } else { 1 };
            ev(
                "acme",
                "alice",
                "s-1",
                M_ACME,
                seq,
                &days_ago(age),
                "update",
                &format!("f{seq}"),
            )
        })
        .collect();
    ingest(&sink, &lines);
    sink.stop();
    let src_store = format!("embedded:{}", src.display());
    cli(&["retention", "--store", &src_store, "--older-than", "90d"]);
    let file = dir.path().join("acme.ndjson");
    export_tenant(&src_store, "acme", &file, &[]);
    let dst = dir.path().join("dst");
    let dst_store = format!("embedded:{}", dst.display());
    let file = file.to_str().expect("utf8");
    let summary = import(&dst_store, file);
    assert_eq!(
        (
            summary["written"].as_u64(),
            summary["monitors_restored"].as_u64()
        ),
        (Some(2), Some(1)),
        "{summary}"
    );
    let keys = Keys::default();
    let src_monitor = range(&src, &keys.monitor(M_ACME));
    assert_eq!(
        src_monitor,
        range(&dst, &keys.monitor(M_ACME)),
        "4 received, highest seq 4, although 2 records were retained away"
    );
    // Importing again changes nothing.
    cli(&["import", "--store", &dst_store, file]);
    assert_eq!(src_monitor, range(&dst, &keys.monitor(M_ACME)));
}

#[test]
fn dead_letters_are_listed_with_their_reason_and_raw_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    let good = ev(
        "acme",
        "alice",
        "s-1",
        M_ACME,
        1,
        "2026-11-20T10:00:00Z",
        "create",
        "a",
    );
    let mut bad_ts = good.clone();
    bad_ts["timestamp"] = json!("yesterday");
    let body = format!("{good}\nnot json at all\n{bad_ts}");
    let (s, r) = post(&sink, body.into_bytes(), &[]);
    assert_eq!((s, r["dead_lettered"].as_u64()), (200, Some(2)), "{r}");
    sink.stop();
    let store = format!("embedded:{}", src.display());
    let list = |extra: &[&str]| -> (Vec<Value>, String) {
        let mut args = vec!["dead-letters", "--store", &store];
        args.extend_from_slice(extra);
        let out = cli(&args);
        let rows = String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        (rows, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (all, _) = list(&[]);
    let mut reasons: Vec<&str> = all.iter().filter_map(|r| r["reason"].as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["bad_timestamp", "invalid_json"], "{all:?}");
    assert!(all.iter().any(|r| r["raw"] == "not json at all"), "{all:?}");
    let (only, _) = list(&["--reason", "bad_timestamp"]);
    assert_eq!(only.len(), 1);
    assert!(only[0]["raw"]
        .as_str()
        .is_some_and(|r| r.contains("yesterday")));
    let (one, err) = list(&["--limit", "1"]);
    assert_eq!(one.len(), 1);
    assert!(err.contains("more match"), "{err}");
    let (none, _) = list(&["--until", "1971-01-01T00:00:00Z"]);
    assert!(none.is_empty());
    let out = Command::new(BIN)
        .args(["dead-letters", "--store", &store, "--reason", "nonsense"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn retention_removes_the_rows_of_monitors_silent_since_the_cutoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    ingest(
        &sink,
        &[
            ev(
                "acme",
                "alice",
                "s-old",
                M_ACME,
                1,
                &days_ago(100),
                "create",
                "a",
            ),
            ev(
                "acme",
                "bob",
                "s-new",
                M_BOB,
                1,
                &days_ago(100),
                "create",
                "b",
            ),
            ev(
                "acme",
                "bob",
                "s-new",
                M_BOB,
                2,
                &days_ago(1),
                "update",
                "b",
            ),
        ],
    );
    sink.stop();
    let store = format!("embedded:{}", src.display());
    let run = |extra: &[&str]| -> Value {
        let mut args = vec!["retention", "--store", &store, "--older-than", "90d"];
        args.extend_from_slice(extra);
        serde_json::from_slice(&cli(&args).stdout).expect("json")
    };
    assert_eq!(run(&["--dry-run"])["monitors_removed"], 1);
    let keys = Keys::default();
    assert!(!range(&src, &keys.monitor(M_ACME)).is_empty(), "dry run");
    assert_eq!(run(&[])["monitors_removed"], 1);
    assert!(
        range(&src, &keys.monitor(M_ACME)).is_empty(),
        "silent for 100 days: its row goes with its records"
    );
    let bob = range(&src, &keys.monitor(M_BOB));
    assert_eq!(bob.len(), 4, "received, max_seq, tenant, last_ns: {bob:?}");
    assert_eq!(run(&[])["monitors_removed"], 0, "idempotent");
}

#[test]
fn a_record_whose_metadata_was_cut_keeps_saying_so_through_export_and_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mut sink = Sink::start(&src, &[]);
    let mut big = ev(
        "acme",
        "alice",
        "s-cut",
        M_ACME,
        1,
        "2026-11-20T10:00:00Z",
        "update",
        "src/a.rs",
    );
    big["metadata"] = json!({"note": "n".repeat(150_000), "team": "core"});
    ingest(&sink, &[big]);
    sink.stop();
    let stored = read_store(&src);
    assert!(stored.records[0].record.metadata_truncated, "cut on ingest");

    let src_store = format!("embedded:{}", src.display());
    let first = dir.path().join("first.ndjson");
    export_tenant(&src_store, "acme", &first, &[]);
    let restored = dir.path().join("restored");
    let restored_store = format!("embedded:{}", restored.display());
    import(&restored_store, first.to_str().expect("utf8"));
    let back = read_store(&restored);
    assert!(
        back.records[0].record.metadata_truncated,
        "the restored record still says its metadata was cut"
    );
    let second = dir.path().join("second.ndjson");
    export_tenant(&restored_store, "acme", &second, &[]);
    assert_eq!(
        std::fs::read(&first).expect("first"),
        std::fs::read(&second).expect("second"),
        "export → import → export is byte for byte the same"
    );

    // Over HTTP too, the mark must be a boolean.
    let mut sink = Sink::start(&restored, &[]);
    let mut wrong = ev(
        "acme",
        "alice",
        "s-cut",
        M_ACME,
        2,
        "2026-11-20T10:00:01Z",
        "update",
        "src/a.rs",
    );
    wrong["metadata_truncated"] = json!("yes");
    let (status, body) = post(&sink, wrong.to_string().into_bytes(), &[]);
    assert_eq!((status, body["dead_lettered"].as_u64()), (200, Some(1)));
    sink.stop();
    let letters = read_store(&restored).dead_letters;
    assert_eq!(letters[0].letter.reason, "bad_field");
    assert!(letters[0].letter.detail.contains("metadata_truncated"));
}

#[test]
fn export_into_a_pipe_closed_early_exits_0_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("store").display());
    let file = dir.path().join("events.ndjson");
    let lines: Vec<String> = (1..=3000)
        .map(|i| crate::harness::event(M_ACME, i, "s-pipe"))
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("write");
    import(&store, file.to_str().expect("utf8"));
    // `fdb-sink export … | head -c 100`
    let mut child = Command::new(BIN)
        .args(["export", "--store", &store, "--tenant", "acme"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn export");
    let mut head = [0u8; 100];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("read");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn tenants_lists_every_tenant_with_records_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let store = format!("embedded:{}", src.display());
    let t = "2026-11-20T10:00:00Z";
    let lines = [
        ev("globex", "eve", "s-9", M_GLOBEX, 1, t, "create", "g"),
        ev("acme", "alice", "s-1", M_ACME, 1, t, "create", "a"),
        ev("acme", "alice", "s-2", M_ACME, 2, t, "create", "b"),
        ev("acme", "bob", "s-3", M_BOB, 1, t, "create", "c"),
        ev("acme-2", "zed", "s-1", M_ACME2, 1, t, "create", "d"),
    ];
    let file = dir.path().join("events.ndjson");
    let body: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, body.join("\n")).expect("write");
    import(&store, file.to_str().expect("utf8"));
    let out = cli(&["tenants", "--store", &store]);
    let listed = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(listed, "acme\nacme-2\nglobex\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenants: 3"));

    let missing = format!("embedded:{}", dir.path().join("nope").display());
    let out = Command::new(BIN)
        .args(["tenants", "--store", &missing])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
}
