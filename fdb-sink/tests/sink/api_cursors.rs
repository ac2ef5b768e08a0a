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

/// GET `route` with the query pairs, encoded.
fn get_q(api: &Api, tok: &str, route: &str, query: &[(&str, &str)]) -> (u16, Value) {
    crate::api_harness::send(
        crate::api_harness::http()
            .get(api.url(route))
            .bearer_auth(tok)
            .query(query),
    )
}

/// A line of tenant `cur-t`, user `u`, session `s-1`: `event_type` of a
/// `kind` at `path` (a move from `from`), `secs` seconds into the day.
fn cur_line(
    seq: u64,
    secs: u64,
    event_type: &str,
    kind: &str,
    path: &str,
    from: Option<&str>,
) -> Value {
    let mut v = ev("cur-t", "u", "s-1", M1, seq, &ts(secs), event_type, path);
    v["kind"] = kind.into();
    match from {
        Some(f) => {
            v["from"] = f.into();
            v["to"] = path.into();
        }
        None => {
            if let Some(o) = v.as_object_mut() {
                o.remove("from");
                o.remove("to");
            }
        }
    }
    if kind == "dir" {
        if let Some(o) = v.as_object_mut() {
            o.remove("size");
            o.remove("checksum");
        }
    }
    v
}

fn bad_cursor(r: &(u16, Value)) -> bool {
    r.0 == 400 && r.1["error"].as_str() == Some("bad_cursor")
}

#[test]
fn a_history_cursor_is_taken_only_by_the_query_it_came_from() {
    let api = Api::start(&[]);
    // p/a.txt and p/b.txt created, p moved to q, a new p and new files.
    api.ingest(&[
        cur_line(1, 1, "create", "file", "p/a.txt", None),
        cur_line(2, 2, "create", "file", "p/b.txt", None),
        cur_line(3, 3, "move", "dir", "q", Some("p")),
        cur_line(4, 4, "create", "dir", "p", None),
        cur_line(5, 5, "create", "file", "p/b.txt", None),
        cur_line(6, 6, "create", "file", "p/a.txt", None),
    ]);
    let tok = token("cur-t", "u", Role::Admin);
    let route = "/api/v5/files/history";
    let a_anc = [("path", "p/a.txt"), ("include_ancestors", "true")];
    let (s, first) = get_q(&api, &tok, route, &[&a_anc[..], &[("limit", "2")]].concat());
    assert_eq!(s, 200, "{first}");
    let types: Vec<&str> = first["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|t| t["event_type"].as_str())
        .collect();
    assert_eq!(types, ["create", "move"], "{first}");
    let c = first["next_cursor"].as_str().expect("a cursor").to_owned();

    // Another path, the same path without ancestors, or other filters:
    // refused, never a page that starts partway.
    let others: [Vec<(&str, &str)>; 6] = [
        vec![("path", "p/b.txt"), ("include_ancestors", "true")],
        vec![("path", "p/a.txt")],
        vec![("path_b64", "cC9hLnR4dA=="), ("include_ancestors", "true")],
        [&a_anc[..], &[("event_type", "create")]].concat(),
        [&a_anc[..], &[("start", "2026-11-26T00:00:02Z")]].concat(),
        [&a_anc[..], &[("end", "2026-11-27T00:00:00Z")]].concat(),
    ];
    for q in &others {
        let r = get_q(
            &api,
            &tok,
            route,
            &[&q[..], &[("cursor", c.as_str())]].concat(),
        );
        assert!(bad_cursor(&r), "{q:?}: {r:?}");
    }
    // A cursor of the plain history is refused with ancestors merged in.
    let (_, plain) = get_q(&api, &tok, route, &[("path", "p/a.txt"), ("limit", "1")]);
    let pc = plain["next_cursor"].as_str().expect("a cursor");
    let r = get_q(&api, &tok, route, &[&a_anc[..], &[("cursor", pc)]].concat());
    assert!(bad_cursor(&r), "{r:?}");

    // The same query (any `limit`) continues.
    let (s, rest) = get_q(
        &api,
        &tok,
        route,
        &[&a_anc[..], &[("cursor", c.as_str())]].concat(),
    );
    assert_eq!(s, 200, "{rest}");
    let times: Vec<&str> = rest["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|t| t["timestamp"].as_str())
        .collect();
    assert_eq!(times, [ts(6)], "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");

    // Event types name the same filter in any order.
    let (_, typed) = get_q(
        &api,
        &tok,
        route,
        &[
            ("path", "p/a.txt"),
            ("event_type", "create,move"),
            ("limit", "1"),
        ],
    );
    let tc = typed["next_cursor"].as_str().expect("a cursor");
    let (s, r) = get_q(
        &api,
        &tok,
        route,
        &[
            ("path", "p/a.txt"),
            ("event_type", "move,create"),
            ("cursor", tc),
        ],
    );
    assert_eq!(s, 200, "{r}");
}

#[test]
fn a_records_cursor_is_taken_only_with_its_filters() {
    let api = Api::start(&[]);
    let events: Vec<Value> = (0..6u64)
        .map(|i| {
            let (ty, path) = if i % 2 == 0 {
                ("create", "src/a.rs")
            } else {
                ("update", "doc/b.md")
            };
            ev("acme", "alice", "s-1", M1, i + 1, &ts(i), ty, path)
        })
        .collect();
    api.ingest(&events);
    let admin = token("acme", "root", Role::Admin);
    let route = "/api/v5/agents/logs";
    let base = [("user_id", "alice"), ("event_type", "create")];
    let (s, first) = get_q(
        &api,
        &admin,
        route,
        &[&base[..], &[("limit", "1")]].concat(),
    );
    assert_eq!(s, 200, "{first}");
    let c = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let others: [Vec<(&str, &str)>; 5] = [
        vec![("user_id", "alice")],
        vec![("user_id", "alice"), ("event_type", "update")],
        [&base[..], &[("path_prefix", "src/")]].concat(),
        [&base[..], &[("start", "2026-11-26T00:00:00Z")]].concat(),
        vec![("event_type", "create")],
    ];
    for q in &others {
        let r = get_q(
            &api,
            &admin,
            route,
            &[&q[..], &[("cursor", c.as_str())]].concat(),
        );
        assert!(bad_cursor(&r), "{q:?}: {r:?}");
    }
    let r = get_q(
        &api,
        &admin,
        "/api/v5/agents/s-1/logs",
        &[("event_type", "create"), ("cursor", c.as_str())],
    );
    assert!(bad_cursor(&r), "{r:?}");
    let (s, rest) = get_q(
        &api,
        &admin,
        route,
        &[&base[..], &[("cursor", c.as_str())]].concat(),
    );
    assert_eq!(s, 200, "{rest}");
    assert_eq!(rest["records"].as_array().map(Vec::len), Some(2), "{rest}");
    assert_eq!(
        rest["records"][0]["event_id"], events[2]["event_id"],
        "{rest}"
    );
}

#[test]
fn an_empty_cursor_is_the_first_page_on_every_route() {
    let api = Api::start(&[]);
    let events: Vec<Value> = (0..3u64)
        .map(|i| ev("acme", "alice", "s-1", M1, i + 1, &ts(i), "create", "a.txt"))
        .collect();
    api.ingest(&events);
    let alice = token("acme", "alice", Role::User);
    let (s, hb) = api.post(
        &alice,
        "/api/v5/agents/heartbeat",
        &serde_json::json!({"session_id": "s-1", "agent_type": "claude-code", "status": "Active"}),
    );
    assert_eq!(s, 200, "{hb}");
    for (route, query) in [
        ("/api/v5/agents/logs", vec![]),
        ("/api/v5/agents/s-1/logs", vec![]),
        ("/api/v5/files/history", vec![("path", "a.txt")]),
        ("/api/v5/agents", vec![]),
    ] {
        let (s, want) = get_q(&api, &alice, route, &query);
        assert_eq!(s, 200, "{route}: {want}");
        for empty in ["", " "] {
            let (s, got) = get_q(
                &api,
                &alice,
                route,
                &[&query[..], &[("cursor", empty)]].concat(),
            );
            assert_eq!(s, 200, "{route} cursor={empty:?}: {got}");
            let (mut a, mut b) = (want.clone(), got.clone());
            for v in [&mut a, &mut b] {
                v["next_cursor"] = Value::Null;
                if let Some(agents) = v["agents"].as_array_mut() {
                    for x in agents {
                        x["liveness"] = Value::Null;
                    }
                }
            }
            assert_eq!(a, b, "{route}");
        }
    }
}

#[test]
fn rejected_values_are_shown_cut_in_messages() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let long_path = "p".repeat(20_000);
    let (s, r) = api.post(
        &alice,
        "/api/v5/agents/claims",
        &serde_json::json!({"session_id": "s-1", "agent_type": "claude-code",
                            "paths": [long_path], "ttl_seconds": 60}),
    );
    let short = |s: u16, r: &Value, bytes: usize| {
        assert_eq!(s, 400, "{r}");
        let m = r["message"].as_str().expect("message");
        assert!(
            m.chars().count() < 400,
            "{} characters: {}",
            m.len(),
            &m[..200]
        );
        assert!(m.contains(&format!("… ({bytes} bytes)")), "{m}");
    };
    short(s, &r, 20_000);
    // A path spelled otherwise than file events spell it, on a query.
    let odd = format!("/{}", "q".repeat(5_000));
    let (s, r) = get_q(
        &api,
        &alice,
        "/api/v5/files/history",
        &[("path", odd.as_str())],
    );
    short(s, &r, 5_001);
    let types = "x".repeat(5_000);
    let (s, r) = get_q(
        &api,
        &alice,
        "/api/v5/agents/logs",
        &[("event_type", types.as_str())],
    );
    short(s, &r, 5_000);
    let (s, r) = api.post(
        &alice,
        "/api/v5/agents/heartbeat",
        &serde_json::json!({"session_id": "s-1", "agent_type": "claude-code",
                            "status": "Active", "last_heartbeat": "9".repeat(20_000)}),
    );
    short(s, &r, 20_000);
    // Texts of other parts (a time of a query, a JSON body's rejection) are
    // cut at 1000 characters.
    let time = "7".repeat(5_000);
    let (s, r) = get_q(
        &api,
        &alice,
        "/api/v5/agents/logs",
        &[("start", time.as_str())],
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["message"].as_str().expect("message").chars().count() < 1100,
        "{r}"
    );
    let (s, r) = api.post(
        &alice,
        "/api/v5/agents/heartbeat",
        &serde_json::json!({"session_id": "s-1", "agent_type": "claude-code",
                            "status": "A".repeat(20_000)}),
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["message"].as_str().expect("message").chars().count() < 1100,
        "{r}"
    );
}

#[test]
fn a_delayed_heartbeat_does_not_bring_a_stopped_agent_back() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    let beat = |status: &str, at: &str| {
        api.post(
            &alice,
            "/api/v5/agents/heartbeat",
            &serde_json::json!({"session_id": "s-a", "agent_type": "claude-code",
                                "status": status, "last_heartbeat": at}),
        )
    };
    let (s, r) = beat("Active", "2026-11-26T13:18:00Z");
    assert_eq!((s, r["liveness"].as_str()), (200, Some("active")), "{r}");
    let claim = |tok: &str, session: &str| {
        api.post(
            tok,
            "/api/v5/agents/claims",
            &serde_json::json!({"session_id": session, "agent_type": "claude-code",
                                "paths": ["r.rs"], "ttl_seconds": 3600}),
        )
    };
    let (s, r) = claim(&alice, "s-a");
    assert_eq!(s, 200, "{r}");
    let (s, r) = beat("Stopped", "2026-11-26T13:18:30Z");
    assert_eq!((s, r["liveness"].as_str()), (200, Some("stopped")), "{r}");
    // The copy of the first heartbeat, delayed: answered with the stored
    // state, which it does not change.
    let (s, r) = beat("Active", "2026-11-26T13:18:00Z");
    assert_eq!((s, r["liveness"].as_str()), (200, Some("stopped")), "{r}");
    assert_eq!(
        r["last_heartbeat"].as_str(),
        Some("2026-11-26T13:18:30Z"),
        "{r}"
    );
    let (s, list) = api.get(&alice, "/api/v5/agents");
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list["agents"][0]["liveness"].as_str(),
        Some("stopped"),
        "{list}"
    );
    // The stopped agent's claim blocks no one.
    let (s, r) = claim(&bob, "s-b");
    assert_eq!(s, 200, "{r}");
    // A later heartbeat is taken.
    let (s, r) = beat("Active", "2026-11-26T13:19:00Z");
    assert_eq!((s, r["liveness"].as_str()), (200, Some("active")), "{r}");
}

#[test]
fn an_empty_last_event_id_starts_a_follow_stream() {
    let api = Api::start(&[]);
    let events: Vec<Value> = (0..2u64)
        .map(|i| ev("acme", "alice", "s-1", M1, i + 1, &ts(i), "create", "a.txt"))
        .collect();
    api.ingest(&events);
    let alice = token("acme", "alice", Role::User);
    let open = |query: &str, id: &str| {
        crate::api_harness::http()
            .get(api.url(&format!("/api/v5/agents/s-1/logs?follow=true{query}")))
            .bearer_auth(&alice)
            .header("last-event-id", id)
            .send()
            .expect("follow")
    };
    let resp = open("", "");
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    let resp = open("&cursor=", "");
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    // A stream's id resumes the same query only.
    let (_, page) = api.get(&alice, "/api/v5/agents/s-1/logs?limit=1&event_type=create");
    let c = page["next_cursor"].as_str().expect("a cursor");
    let resp = open("&event_type=create", c);
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    let resp = open("", c);
    assert_eq!(resp.status().as_u16(), 400);
}
