//! Cursors are sealed: a user's page that stops on another user's row does
//! not hand over that row's ids, and a cursor works only for the query and
//! the caller it was given to.

use base64::Engine;
use fdb_sink::api::auth::Role;
use serde_json::Value;

use crate::api_harness::{ev, token, ts, Api};

const M1: &str = "0190b5a0-0000-7000-8000-0000000000c1";
const M2: &str = "0190b5a0-0000-7000-8000-0000000000c2";

#[test]
fn a_users_history_cursor_hides_other_users_touches_and_still_reaches_hers() {
    let api = Api::start(&[]);
    // 20 005 touches of one path by u1 (more than one request examines),
    // then one by u0.
    let theirs: Vec<Value> = (0..20_005u64)
        .map(|i| ev("t3", "u1", "s-u1", M1, i + 1, &ts(i), "update", "hot.txt"))
        .collect();
    for chunk in theirs.chunks(5000) {
        api.ingest(chunk);
    }
    let mine = ev("t3", "u0", "s-u0", M2, 1, &ts(30_000), "update", "hot.txt");
    api.ingest(std::slice::from_ref(&mine));
    let u0 = token("t3", "u0", Role::User);
    let (s, page) = api.get(&u0, "/api/v5/files/history?path=hot.txt&limit=10");
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["records"].as_array().map(Vec::len), Some(0), "{page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a cursor past u1's touches");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .expect("base64url");
    let text = String::from_utf8_lossy(&bytes);
    for secret in ["hot.txt", "t3", "by_path"] {
        assert!(
            !text.contains(secret),
            "the cursor shows {secret:?}: {text:?}"
        );
    }
    for e in &theirs {
        let id = e["event_id"].as_str().expect("id");
        assert!(!text.contains(id), "the cursor names u1's event {id}");
    }
    // Following it reaches u0's own touch.
    let (s, next) = api.get(
        &u0,
        &format!("/api/v5/files/history?path=hot.txt&limit=10&cursor={cursor}"),
    );
    assert_eq!(s, 200, "{next}");
    assert_eq!(next["records"][0]["event_id"], mine["event_id"], "{next}");
    // Another user, or the same user in another query, cannot use it.
    let u1 = token("t3", "u1", Role::User);
    let (s, r) = api.get(
        &u1,
        &format!("/api/v5/files/history?path=hot.txt&cursor={cursor}"),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")));
    let admin = token("t3", "root", Role::Admin);
    let (s, r) = api.get(
        &admin,
        &format!("/api/v5/files/history?path=hot.txt&cursor={cursor}"),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")));
    let (s, r) = api.get(&u0, &format!("/api/v5/agents/logs?cursor={cursor}"));
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")));
}

#[test]
fn cursors_survive_a_restart_and_forged_ones_are_refused() {
    let mut api = Api::start(&[]);
    let events: Vec<Value> = (0..5u64)
        .map(|i| ev("acme", "alice", "s-1", M1, i + 1, &ts(i), "create", "a.txt"))
        .collect();
    api.ingest(&events);
    let alice = token("acme", "alice", Role::User);
    let (_, first) = api.get(&alice, "/api/v5/agents/s-1/logs?limit=2");
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    api.restart();
    let (s, second) = api.get(
        &alice,
        &format!("/api/v5/agents/s-1/logs?limit=2&cursor={cursor}"),
    );
    assert_eq!(s, 200, "{second}");
    assert_eq!(second["records"][0]["event_id"], events[2]["event_id"]);
    // A plain record key (what cursors were before they were sealed) is
    // still taken by the records routes, within the caller's scope only, so
    // that streams reconnect across an upgrade; the file history, whose
    // plain cursors could name other users' touches, refuses them.
    let keys = fdb_sink::keys::Keys::default();
    let plain = |k: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
    let own = plain(keys.audit_log("acme", "alice", "s-1", 0, "x"));
    let (s, r) = api.get(&alice, &format!("/api/v5/agents/s-1/logs?cursor={own}"));
    assert_eq!(
        (s, r["records"].as_array().map(Vec::len)),
        (200, Some(5)),
        "{r}"
    );
    let bobs = plain(keys.audit_log("acme", "bob", "s-1", 0, "x"));
    let (s, r) = api.get(&alice, &format!("/api/v5/agents/s-1/logs?cursor={bobs}"));
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")));
    let touch = plain(keys.by_path("acme", "a.txt", 0, "x"));
    let (s, r) = api.get(
        &alice,
        &format!("/api/v5/files/history?path=a.txt&cursor={touch}"),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")));
}
