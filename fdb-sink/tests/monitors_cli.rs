//! `fdb-sink monitors`: an operator lists the monitors with their owners,
//! gives a monitor that another tenant took to its real tenant, and imports
//! that tenant's dead-lettered events again, so that they become audit
//! records, each once. The real binary on a real embedded store.

#[path = "sink/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use harness::{cli, counts, import_stdin, run};

const MONITOR: &str = "0190b5a0-0000-7000-8000-00000000abcd";
/// A second monitor, of tenant `bee` only.
const OTHER: &str = "0190b5a0-0000-7000-8000-00000000beef";

/// One valid event of `tenant` from `monitor`, numbered `seq`.
fn event(tenant: &str, monitor: &str, seq: u64) -> String {
    serde_json::json!({
        "schema": "file-event/1",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "monitor_id": monitor,
        "seq": seq,
        "timestamp": format!("2026-11-26T10:00:{seq:02}Z"),
        "event_type": "update",
        "kind": "file",
        "path": format!("src/{tenant}/file{seq}.rs"),
        "tenant_id": tenant,
        "user_id": "u1",
        "session_id": "s1",
        "namespace": "ide",
    })
    .to_string()
}

fn import(store: &str, lines: &[String]) -> Value {
    let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let out = import_stdin(store, body.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("import totals")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect()
}

/// `monitors list ARGS` on `store`, one value per line.
fn list(store: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["monitors", "list", "--store", store];
    all.extend_from_slice(args);
    json_lines(&cli(&all).stdout)
}

fn row(monitor: &str, tenant: &str, received: u64, highest_seq: u64) -> Value {
    serde_json::json!({
        "monitor_id": monitor, "tenant": tenant, "received": received,
        "highest_seq": highest_seq, "missing": highest_seq.saturating_sub(received),
    })
}

/// The records `export --tenant` writes for `tenant` (not its monitor lines).
fn exported(store: &str, tenant: &str) -> Vec<Value> {
    json_lines(&cli(&["export", "--store", store, "--tenant", tenant]).stdout)
        .into_iter()
        .filter(|l| l["schema"] == "file-event/1")
        .collect()
}

/// Writes the raw lines of the `monitor_of_other_tenant` dead letters to
/// `file` (what the operator keeps and imports).
fn refused_lines(store: &str, file: &Path) -> Vec<u8> {
    let out = cli(&[
        "dead-letters",
        "--store",
        store,
        "--reason",
        "monitor_of_other_tenant",
        "--raw",
        "--limit",
        "0",
    ]);
    std::fs::write(file, &out.stdout).expect("write the refused lines");
    out.stdout
}

#[test]
fn a_monitor_taken_by_another_tenant_is_given_back_and_its_dead_letters_become_records_once() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("embedded:{}", dir.path().join("store").display());

    // bee stores the first event of MONITOR and owns it; ay's 3 events of
    // it are dead-lettered.
    let r = import(&store, &[event("bee", MONITOR, 1), event("bee", OTHER, 7)]);
    assert_eq!(counts(&r), [2, 0, 0, 0], "{r}");
    let ay: Vec<String> = (1..=3).map(|s| event("ay", MONITOR, s)).collect();
    let r = import(&store, &ay);
    assert_eq!(counts(&r), [0, 0, 3, 0], "{r}");
    assert!(exported(&store, "ay").is_empty());

    let bee_owns = vec![row(MONITOR, "bee", 1, 1), row(OTHER, "bee", 1, 7)];
    assert_eq!(list(&store, &[]), bee_owns);
    assert_eq!(list(&store, &["--tenant", "bee"]), bee_owns);
    assert_eq!(list(&store, &["--tenant", "ay"]), Vec::<Value>::new());
    let out = cli(&["monitors", "list", "--store", &store, "--limit", "1"]);
    assert_eq!(json_lines(&out.stdout), bee_owns[..1]);
    assert!(stderr(&out).contains("raise --limit"), "{}", stderr(&out));

    // A dry run says what would change and changes nothing.
    let set_owner = |extra: &[&str]| {
        let mut args = vec!["monitors", "set-owner", "--store", &store];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = set_owner(&[MONITOR, "ay", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_lines(&out.stdout),
        vec![
            serde_json::json!({"monitor_id": MONITOR, "old_tenant": "bee",
            "new_tenant": "ay", "changed": true, "dry_run": true})
        ]
    );
    assert_eq!(list(&store, &[]), bee_owns, "a dry run changes nothing");
    // The id as an operator may copy it: upper case, or without hyphens.
    for spelled in [MONITOR.to_uppercase(), MONITOR.replace('-', "")] {
        let out = set_owner(&[&spelled, "ay", "--dry-run"]);
        assert!(out.status.success(), "{spelled}: {}", stderr(&out));
        assert_eq!(
            json_lines(&out.stdout)[0]["monitor_id"],
            MONITOR,
            "{spelled}"
        );
        assert_eq!(json_lines(&out.stdout)[0]["changed"], true, "{spelled}");
    }

    // Ids no monitor can have, and a monitor without a row: clear errors,
    // nothing changed.
    for (args, code, says) in [
        (vec!["bad id", "ay"], 2, "not a UUID"),
        (vec![MONITOR, "ay/x"], 2, "not a valid id"),
        (
            vec!["0190b5a0-0000-7000-8000-000000000000", "ay"],
            1,
            "not found",
        ),
    ] {
        let out = set_owner(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let missing = format!("embedded:{}", dir.path().join("nothing").display());
    let out = run(&["monitors", "list", "--store", &missing]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no embedded store"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("nothing").exists());
    assert_eq!(list(&store, &[]), bee_owns);

    // The owner is rewritten; the counters are kept.
    let out = set_owner(&[MONITOR, "ay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_lines(&out.stdout),
        vec![
            serde_json::json!({"monitor_id": MONITOR, "old_tenant": "bee",
            "new_tenant": "ay", "changed": true, "dry_run": false})
        ]
    );
    let log = stderr(&out);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("owner changed"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    for part in [MONITOR, "old_owner=bee", "new_owner=ay"] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    assert_eq!(
        list(&store, &[]),
        vec![row(MONITOR, "ay", 1, 1), row(OTHER, "bee", 1, 7)]
    );

    // ay's dead-lettered events are imported again: stored once, as the
    // records they would have been.
    let file = dir.path().join("refused.ndjson");
    let raw = refused_lines(&store, &file);
    assert_eq!(json_lines(&raw).len(), 3);
    // With --mark-late, as the procedure says: the daily export has archived
    // their day without them.
    let import_marked = || {
        let file = file.to_str().expect("utf-8");
        let out = cli(&["import", "--mark-late", "--store", &store, file]);
        let r: Value = serde_json::from_slice(&out.stdout).expect("totals");
        r
    };
    let r = import_marked();
    assert_eq!(counts(&r), [3, 0, 0, 0], "{r}");
    assert_eq!(r["marked_late"], 3, "{r}");
    let late = cli(&["late", "--store", &store]);
    let late = String::from_utf8_lossy(&late.stdout);
    assert!(late.contains("2026-11-26") && late.contains("ay"), "{late}");
    let records = exported(&store, "ay");
    let ids = |lines: &[Value]| {
        let mut ids: Vec<String> = lines.iter().map(|l| l["event_id"].to_string()).collect();
        ids.sort();
        ids
    };
    let sent: Vec<Value> = ay
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(ids(&records), ids(&sent));
    assert_eq!(ids(&json_lines(&raw)), ids(&records));
    assert!(records.iter().all(|r| r["tenant_id"] == "ay"));
    assert_eq!(exported(&store, "bee").len(), 2, "bee's records stay");
    assert_eq!(
        list(&store, &[]),
        vec![row(MONITOR, "ay", 4, 3), row(OTHER, "bee", 1, 7)],
        "the counters add ay's events to what they counted before"
    );

    // Again: nothing new is stored.
    let again = refused_lines(&store, &file);
    assert_eq!(again, raw, "the dead letters stay as they were");
    let r = import_marked();
    assert_eq!(counts(&r), [0, 3, 0, 0], "{r}");
    assert_eq!(r["marked_late"], 0, "{r}");
    assert_eq!(exported(&store, "ay").len(), 3);
    assert_eq!(list(&store, &[])[0], row(MONITOR, "ay", 4, 3));

    // The owner it has already: nothing to change.
    let out = set_owner(&[MONITOR, "ay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out.stdout)[0]["changed"], false);
    assert!(
        stderr(&out).contains("already belongs to ay"),
        "{}",
        stderr(&out)
    );

    // bee's events of the monitor are dead-lettered from now on.
    let r = import(&store, &[event("bee", MONITOR, 9)]);
    assert_eq!(counts(&r), [0, 0, 1, 0], "{r}");
}
