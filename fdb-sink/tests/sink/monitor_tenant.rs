//! A monitor's delivery counters belong to the first tenant that stores an
//! event of it: an event that names the monitor under another tenant is a
//! `monitor_of_other_tenant` dead letter, not a record, and each tenant's
//! admin keeps seeing what it saw before.

use fdb_sink::api::auth::Role;
use serde_json::Value;

use crate::api_harness::{ev, token, ts, Api};
use crate::harness::{counts, post};

const MONITOR: &str = "0190b5a0-0000-7000-8000-00000000e7e5";

fn reason_metric(api: &Api) -> String {
    let prefix = "fdb_sink_dead_letter_total{reason=\"monitor_of_other_tenant\"}";
    api.sink
        .metrics()
        .lines()
        .find(|l| l.starts_with(prefix))
        .map_or_else(|| format!("{prefix} absent"), str::to_owned)
}

#[test]
fn an_event_naming_another_tenants_monitor_is_dead_lettered_and_leaves_its_counts_alone() {
    let api = Api::start(&[]);
    let acme: Vec<Value> = (1..=10)
        .map(|i| {
            ev(
                "acme",
                "alice",
                "s-a",
                MONITOR,
                i,
                &ts(i),
                "update",
                "src/a.rs",
            )
        })
        .collect();
    api.ingest(&acme);
    let acme_admin = token("acme", "ops", Role::Admin);
    let globex_admin = token("globex", "ops", Role::Admin);
    let delivery = format!("/api/v5/monitors/{MONITOR}/delivery");
    let (s, before) = api.get(&acme_admin, &delivery);
    assert_eq!(s, 200, "{before}");
    assert_eq!(before["received"], 10, "{before}");

    // One event of another tenant that reuses the monitor id.
    let forged = ev(
        "globex",
        "mallory",
        "s-g",
        MONITOR,
        11,
        &ts(11),
        "delete",
        "src/a.rs",
    )
    .to_string();
    let (s, r) = post(&api.sink, forged.clone().into_bytes(), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 0, 1, 0]), "{r}");
    assert!(
        reason_metric(&api).ends_with(" 1"),
        "{}",
        reason_metric(&api)
    );
    // Delivered again: the same dead letter.
    let (s, r) = post(&api.sink, forged.into_bytes(), &[]);
    assert_eq!((s, counts(&r)), (200, [0, 1, 0, 1]), "{r}");
    assert!(
        reason_metric(&api).ends_with(" 1"),
        "{}",
        reason_metric(&api)
    );

    let (s, after) = api.get(&acme_admin, &delivery);
    assert_eq!(
        (s, &after),
        (200, &before),
        "the owner's answer is unchanged"
    );
    let (s, r) = api.get(&globex_admin, &delivery);
    assert_eq!(s, 404, "another tenant's monitor: {r}");
    let (s, r) = api.get(&globex_admin, "/api/v5/files/history?path=src/a.rs");
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["records"],
        Value::Array(vec![]),
        "nothing stored for globex: {r}"
    );
    let (s, r) = api.get(&acme_admin, "/api/v5/files/history?path=src/a.rs");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["records"].as_array().map(Vec::len), Some(10), "{r}");

    let log = api.sink.log.lock().expect("log").clone();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("monitor_of_other_tenant"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    for part in [MONITOR, "acme", "globex"] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    let mut sink = api.sink;
    sink.stop();
    let stored = crate::harness::read_store(&sink.dir);
    assert_eq!(stored.records.len(), 10, "the forged event is not a record");
    assert_eq!(stored.dead_letters.len(), 1, "{:?}", stored.dead_letters);
    let d = &stored.dead_letters[0].letter;
    assert_eq!(d.reason, "monitor_of_other_tenant");
    for part in [MONITOR, "tenant acme", "tenant globex"] {
        assert!(d.detail.contains(part), "{part}: {}", d.detail);
    }

    // An export's monitor line of another tenant does not take it over
    // either; one of a monitor new to the store is restored.
    let fresh = "0190b5a0-0000-7000-8000-00000000f00d";
    let line = |m: &str, n: u64| {
        serde_json::json!({
            "schema": "fdb-sink-monitor/1", "monitor_id": m, "tenant_id": "globex",
            "received": n, "highest_seq": n, "last_ns": 1,
        })
        .to_string()
    };
    let body = format!("{}\n{}\n", line(MONITOR, 1000), line(fresh, 5));
    let store = format!("embedded:{}", sink.dir.display());
    let out = crate::harness::import_stdin(&store, body.as_bytes());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("totals");
    assert_eq!(
        (&summary["monitors_restored"], &summary["monitors_refused"]),
        (&Value::from(1), &Value::from(1)),
        "{summary}"
    );
    assert!(
        log.contains("WARN") && log.contains(MONITOR) && log.contains("another tenant"),
        "{log}"
    );
    let rows = crate::harness::read_store(&sink.dir).monitors;
    let row = |m: &str| rows.iter().find(|r| r.monitor_id == m).cloned();
    let owned = row(MONITOR).expect("acme's monitor");
    assert_eq!(
        (owned.tenant.as_str(), owned.received, owned.max_seq),
        ("acme", 10, 10)
    );
    let restored = row(fresh).expect("the new monitor");
    assert_eq!((restored.tenant.as_str(), restored.received), ("globex", 5));
}
