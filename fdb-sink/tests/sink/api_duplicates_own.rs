//! `GET /api/v5/files/duplicates` for role `user` answers only from the
//! caller's own records: a path only when one of the caller's records at
//! that path had the content, `last_seen` the caller's latest such record.
//! Role `admin` keeps the whole tenant's view.

use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{ev, token, ts, Api};

const M_ALICE: &str = "0190b5a0-0000-7000-8000-0000000000c1";
const M_DAVE: &str = "0190b5a0-0000-7000-8000-0000000000c2";

fn sum(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// An event of `user` at `path` with content `checksum`, `secs` after
/// 2026-11-26T00:00:00Z.
fn touch(user: &str, secs: u64, event_type: &str, path: &str, checksum: &str) -> Value {
    let monitor = if user == "alice" { M_ALICE } else { M_DAVE };
    let mut e = ev(
        "acme",
        user,
        &format!("s-{user}"),
        monitor,
        secs,
        &ts(secs),
        event_type,
        path,
    );
    e["checksum"] = json!(checksum);
    e
}

/// `(path, last_seen)` of each listed path, and `complete`.
fn duplicates(api: &Api, tok: &str, checksum: &str) -> (Vec<(String, String)>, Value) {
    let (s, r) = api.get(
        tok,
        &format!("/api/v5/files/duplicates?checksum={checksum}"),
    );
    assert_eq!(s, 200, "{r}");
    let paths = r["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            (
                p["path"].as_str().expect("path").to_owned(),
                p["last_seen"].as_str().expect("last_seen").to_owned(),
            )
        })
        .collect();
    (paths, r["complete"].clone())
}

/// Whether `last_seen` is the time `secs` after 2026-11-26T00:00:00Z.
fn at(last_seen: &str, secs: u64) -> bool {
    let want = &ts(secs)[..19];
    last_seen.starts_with(want)
}

#[test]
fn user_last_seen_is_her_own_latest_touch_not_another_users() {
    let api = Api::start(&[]);
    let c = sum(1);
    let other = sum(2);
    // alice: notes.md with C at 00:08:22, then with other content at 00:20:00;
    // dave: notes.md with C at 00:53:32.
    api.ingest(&[
        touch("alice", 8 * 60 + 22, "create", "notes.md", &c),
        touch("alice", 20 * 60, "update", "notes.md", &other),
        touch("dave", 53 * 60 + 32, "update", "notes.md", &c),
    ]);
    let alice = token("acme", "alice", Role::User);
    let admin = token("acme", "ops", Role::Admin);

    let (paths, complete) = duplicates(&api, &alice, &c);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(paths[0].0, "notes.md");
    assert!(
        at(&paths[0].1, 8 * 60 + 22),
        "alice's own last touch with C is 00:08:22, not dave's 00:53:32: {paths:?}"
    );
    assert_eq!(complete, true);

    // Admin: the tenant's latest time.
    let (paths, _) = duplicates(&api, &admin, &c);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(at(&paths[0].1, 53 * 60 + 32), "{paths:?}");
}

#[test]
fn user_does_not_learn_content_another_user_wrote_to_her_path() {
    let api = Api::start(&[]);
    let c1 = sum(11);
    let c2 = sum(12);
    api.ingest(&[
        touch("u0", 100, "create", "secret-plan.md", &c1),
        touch("u1", 200, "update", "secret-plan.md", &c2),
    ]);
    let u0 = token("acme", "u0", Role::User);
    let u1 = token("acme", "u1", Role::User);
    let admin = token("acme", "ops", Role::Admin);

    let (paths, complete) = duplicates(&api, &u0, &c2);
    assert!(
        paths.is_empty(),
        "u0 never wrote C2 to secret-plan.md: {paths:?}"
    );
    assert_eq!(complete, true);
    // What she wrote herself she still sees.
    let (paths, _) = duplicates(&api, &u0, &c1);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(at(&paths[0].1, 100), "{paths:?}");
    // u1 sees her own content; the admin sees both.
    let (paths, _) = duplicates(&api, &u1, &c2);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(at(&paths[0].1, 200), "{paths:?}");
    for (c, secs) in [(&c1, 100), (&c2, 200)] {
        let (paths, _) = duplicates(&api, &admin, c);
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert_eq!(paths[0].0, "secret-plan.md");
        assert!(at(&paths[0].1, secs), "{paths:?}");
    }
}

#[test]
fn user_sees_her_own_duplicates_and_admin_the_tenants() {
    let api = Api::start(&[]);
    let c = sum(21);
    api.ingest(&[
        touch("alice", 10, "create", "a/one.rs", &c),
        touch("alice", 30, "create", "a/two.rs", &c),
        touch("alice", 40, "update", "a/one.rs", &c),
        // A move of hers to `a/three.rs`: the content is at the destination.
        touch("alice", 50, "move", "a/three.rs", &c),
        touch("dave", 60, "create", "d/copy.rs", &c),
        // dave touches alice's path with the same content, later.
        touch("dave", 70, "update", "a/two.rs", &c),
    ]);
    let alice = token("acme", "alice", Role::User);
    let admin = token("acme", "ops", Role::Admin);

    let (paths, complete) = duplicates(&api, &alice, &c);
    let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["a/one.rs", "a/three.rs", "a/two.rs"], "{paths:?}");
    assert!(
        at(&paths[0].1, 40),
        "her latest touch of a/one.rs: {paths:?}"
    );
    assert!(at(&paths[1].1, 50), "{paths:?}");
    assert!(at(&paths[2].1, 30), "her own, not dave's 70: {paths:?}");
    assert_eq!(complete, true);

    let (paths, complete) = duplicates(&api, &admin, &c);
    let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["a/one.rs", "a/three.rs", "a/two.rs", "d/copy.rs"],
        "{paths:?}"
    );
    assert!(at(&paths[2].1, 70), "the tenant's latest: {paths:?}");
    assert!(at(&paths[3].1, 60), "{paths:?}");
    assert_eq!(complete, true);
}

/// Content a user wrote once and then overwrote many times is found: the
/// search starts at the tenant's last sight of it.
#[test]
fn users_own_content_under_a_busy_path_is_found() {
    let api = Api::start(&[]);
    let x = sum(41);
    let other = sum(42);
    // alice wrote X to hot.txt once, then other content 12 000 times: no
    // entry newer than the tenant's last sight of X can hold it, so her
    // search starts there, not at the newest of the 12 000.
    let mut lines = vec![touch("alice", 1, "create", "hot.txt", &x)];
    lines.extend((0..12_000).map(|i| touch("alice", 2 + i, "update", "hot.txt", &other)));
    for chunk in lines.chunks(5000) {
        api.ingest(chunk);
    }
    let alice = token("acme", "alice", Role::User);
    let (paths, complete) = duplicates(&api, &alice, &x);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(at(&paths[0].1, 1), "{paths:?}");
    assert_eq!(complete, true);
}

/// Checking the caller's own records is bounded: every `by_path` entry
/// and every record read counts against the request's 20 000, and an
/// answer cut short says so.
#[test]
fn reading_own_records_counts_against_the_scan_budget() {
    let api = Api::start(&[]);
    let c = sum(31);
    let other = sum(32);
    let alice = token("acme", "alice", Role::User);
    let url_c = c.clone();
    // alice wrote C to a/busy.rs once, then other content 9 000 times, and
    // bob wrote C there last: her search starts at bob's sight of C and
    // reads 9 001 of her entries and as many records, within the budget.
    let mut lines = vec![touch("alice", 1, "create", "a/busy.rs", &c)];
    lines.extend((0..9_000).map(|i| touch("alice", 2 + i, "update", "a/busy.rs", &other)));
    lines.push(touch("bob", 50_000, "update", "a/busy.rs", &c));
    for chunk in lines.chunks(5000) {
        api.ingest(chunk);
    }
    let (paths, complete) = duplicates(&api, &alice, &url_c);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(at(&paths[0].1, 1), "{paths:?}");
    assert_eq!(complete, true);
    // 1 001 more: 10 002 entries and 10 002 records exceed 20 000.
    let more: Vec<Value> = (0..1_001)
        .map(|i| touch("alice", 20_000 + i, "update", "a/busy.rs", &other))
        .collect();
    api.ingest(&more);
    let (paths, complete) = duplicates(&api, &alice, &url_c);
    assert!(paths.is_empty(), "{paths:?}");
    assert_eq!(complete, false, "the budget ran out on a/busy.rs");
}
