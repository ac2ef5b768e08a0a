//! Who owns a session: the user whose audit records it holds. Heartbeats,
//! claims and releases by other users (role `user`) are refused, whoever
//! comes first, over real HTTP against a real store.

use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{ev, token, ts, Api};

const MONITOR: &str = "0190b5a0-0000-7000-8000-0000000000c1";

fn heartbeat(api: &Api, tok: &str, session: &str) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": session, "agent_type": "claude", "status": "Active",
                "files_claimed": []}),
    )
}

fn claim(api: &Api, tok: &str, session: &str, path: &str) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "agent_type": "claude", "paths": [path],
                "ttl_seconds": 300}),
    )
}

fn release(api: &Api, tok: &str, session: &str, path: &str) -> (u16, Value) {
    api.delete(
        tok,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "paths": [path]}),
    )
}

/// The agents an admin sees: (session, user).
fn agents(api: &Api) -> Vec<(String, String)> {
    let (s, r) = api.get(&token("acme", "ops", Role::Admin), "/api/v5/agents");
    assert_eq!(s, 200, "{r}");
    r["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| {
            (
                a["session_id"].as_str().unwrap_or_default().to_owned(),
                a["user_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Bob cannot take alice's session, whose records are stored, by sending its
/// first heartbeat or claim; alice keeps using it.
#[test]
fn a_session_with_records_belongs_to_their_user_not_the_first_caller() {
    let api = Api::start(&[]);
    api.ingest(&[ev(
        "acme",
        "alice",
        "s-alice",
        MONITOR,
        1,
        &ts(1),
        "create",
        "src/a.rs",
    )]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);

    for (what, (status, body)) in [
        ("heartbeat", heartbeat(&api, &bob, "s-alice")),
        ("claim", claim(&api, &bob, "s-alice", "src/a.rs")),
        ("release", release(&api, &bob, "s-alice", "src/a.rs")),
    ] {
        assert_eq!(status, 403, "bob's {what}: {body}");
        assert_eq!(body["error"], "forbidden", "{body}");
        // No more than that: not whose it is.
        assert_eq!(
            body["message"], "session \"s-alice\" belongs to another user",
            "{body}"
        );
    }
    // Nothing was written for bob.
    assert!(agents(&api).is_empty());

    let (s, r) = heartbeat(&api, &alice, "s-alice");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["user_id"], "alice");
    let (s, r) = claim(&api, &alice, "s-alice", "src/a.rs");
    assert_eq!(s, 200, "{r}");
    // Bob is still refused once the row exists.
    assert_eq!(heartbeat(&api, &bob, "s-alice").0, 403);
    // A session id nobody has records of is the first caller's.
    let (s, r) = heartbeat(&api, &bob, "s-bob");
    assert_eq!(s, 200, "{r}");
    // An admin's first request for a session with records names their user.
    api.ingest(&[ev(
        "acme",
        "carol",
        "s-carol",
        MONITOR,
        2,
        &ts(2),
        "create",
        "src/c.rs",
    )]);
    let ops = token("acme", "ops", Role::Admin);
    let (s, r) = heartbeat(&api, &ops, "s-carol");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["user_id"], "carol", "{r}");
    let mut listed = agents(&api);
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("s-alice".to_owned(), "alice".to_owned()),
            ("s-bob".to_owned(), "bob".to_owned()),
            ("s-carol".to_owned(), "carol".to_owned())
        ]
    );
}

/// A session whose agent row names a user without records of it (the row
/// came first, the records after) is taken over by the records' user at her
/// next request; the previous user is refused from then on, and the paths
/// he claimed in that session are hers to release.
#[test]
fn the_owner_of_the_records_takes_back_a_session_held_by_another_user() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    // Bob is first, before any record of the session is stored.
    let (s, r) = heartbeat(&api, &bob, "s-alice");
    assert_eq!(s, 200, "{r}");
    let (s, r) = claim(&api, &bob, "s-alice", "src/held.rs");
    assert_eq!(s, 200, "{r}");
    api.ingest(&[ev(
        "acme",
        "alice",
        "s-alice",
        MONITOR,
        1,
        &ts(1),
        "create",
        "src/a.rs",
    )]);

    let (s, r) = heartbeat(&api, &alice, "s-alice");
    assert_eq!(s, 200, "alice's own session: {r}");
    assert_eq!(r["user_id"], "alice");
    assert_eq!(
        agents(&api),
        vec![("s-alice".to_owned(), "alice".to_owned())]
    );
    let (s, r) = heartbeat(&api, &bob, "s-alice");
    assert_eq!(s, 403, "{r}");
    let (s, r) = release(&api, &alice, "s-alice", "src/held.rs");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["released"], json!(["src/held.rs"]), "{r}");

    // A user with records of the session keeps it against another user who
    // also has records of it.
    api.ingest(&[ev(
        "acme",
        "bob",
        "s-alice",
        MONITOR,
        2,
        &ts(2),
        "create",
        "src/b.rs",
    )]);
    assert_eq!(heartbeat(&api, &bob, "s-alice").0, 403);
    assert_eq!(heartbeat(&api, &alice, "s-alice").0, 200);
}

/// In a tenant with more users than one request may look through, the
/// first heartbeat or claim of a session nobody is found to hold records of
/// is granted (an agent may start before its file-monitor reports anything);
/// when the session id turns out to be another user's, deeper in the tenant
/// than the check looked, she takes it back at her next request.
#[test]
fn past_the_owner_scan_bound_the_first_caller_is_granted_and_the_records_user_takes_it_back() {
    let api = Api::start(&[]);
    let users = fdb_sink::api::owner::MAX_OWNER_SCAN_READS + 100;
    let lines: Vec<Value> = (0..users)
        .map(|i| {
            ev(
                "acme",
                &format!("user{i:05}"),
                &format!("s-{i}"),
                MONITOR,
                i as u64 + 1,
                &ts(1),
                "create",
                "src/a.rs",
            )
        })
        .collect();
    api.ingest(&lines);
    // Carol's agent starts before any of her records are stored.
    let carol = token("acme", "zz-carol", Role::User);
    let (s, r) = heartbeat(&api, &carol, "s-carol");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["user_id"], "zz-carol", "{r}");
    let (s, r) = claim(&api, &carol, "s-carol", "src/c.rs");
    assert_eq!(s, 200, "{r}");
    assert!(agents(&api).contains(&("s-carol".to_owned(), "zz-carol".to_owned())));

    // Another user's session is still found when the caller sorts first:
    // the scan skips from user to user.
    let dave = token("acme", "aa-dave", Role::User);
    let (s, r) = heartbeat(&api, &dave, "s-3");
    assert_eq!(s, 403, "{r}");

    // Past the bound, eve gets a session id whose records are the last
    // user's; that user takes it back, with the path eve claimed in it.
    let last = users - 1;
    let (session, owner) = (format!("s-{last}"), format!("user{last:05}"));
    let eve = token("acme", "zz-eve", Role::User);
    let (s, r) = heartbeat(&api, &eve, &session);
    assert_eq!(s, 200, "{r}");
    let (s, r) = claim(&api, &eve, &session, "src/e.rs");
    assert_eq!(s, 200, "{r}");
    let owner_token = token("acme", &owner, Role::User);
    let (s, r) = heartbeat(&api, &owner_token, &session);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["user_id"], owner.as_str(), "{r}");
    assert_eq!(heartbeat(&api, &eve, &session).0, 403);
    let (s, r) = release(&api, &owner_token, &session, "src/e.rs");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["released"], json!(["src/e.rs"]), "{r}");
    assert!(agents(&api).contains(&(session, owner)));
}
