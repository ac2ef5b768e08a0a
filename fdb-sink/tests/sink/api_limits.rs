//! Per-user caps on agent rows and claims (`--api-max-agents-per-user`,
//! `--api-max-claims-per-user`), over real concurrent HTTP.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{http, token, Api};

fn heartbeat(api: &Api, tok: &str, session: &str) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": session, "agent_type": "claude", "status": "Active"}),
    )
}

fn claim(api: &Api, tok: &str, session: &str, paths: &[&str], ttl: u64) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "agent_type": "claude", "paths": paths, "ttl_seconds": ttl}),
    )
}

fn listed(api: &Api, tok: &str) -> Vec<String> {
    let (s, r) = api.get(tok, "/api/v5/agents");
    assert_eq!(s, 200, "{r}");
    let mut v: Vec<String> = r["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["session_id"].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

/// Sends `reqs` at once (one thread each, released together); the status,
/// `Retry-After` and body of each.
fn race(reqs: Vec<reqwest::blocking::RequestBuilder>) -> Vec<(u16, Option<String>, Value)> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r = req.send().expect("request");
                let status = r.status().as_u16();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = r.json::<Value>().unwrap_or(Value::Null);
                (status, retry, body)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

fn assert_limit(status: u16, body: &Value, limit: &str, max: u64) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "limit_exceeded", "{body}");
    assert_eq!(body["limit"], limit, "{body}");
    assert_eq!(body["max"], max, "{body}");
    let flag = format!("--api-max-{}", limit.replace('_', "-"));
    assert!(
        body["message"].as_str().unwrap_or("").contains(&flag),
        "{body}"
    );
}

/// A raced 429 says when to retry, in whole seconds.
fn assert_retry_after(retry: Option<&str>) {
    let secs: u64 = retry
        .expect("Retry-After")
        .parse()
        .expect("Retry-After seconds");
    assert!(secs >= 1, "{secs}");
}

/// 16 heartbeats of new sessions of one user at once, cap 5: exactly 5 get
/// through; the user's existing sessions and other users are not affected.
#[test]
fn racing_new_sessions_never_pass_the_agent_cap() {
    let api = Api::start(&["--api-max-agents-per-user", "5"]);
    let alice = token("acme", "alice", Role::User);
    let reqs = (0..16)
        .map(|i| {
            http()
                .post(api.url("/api/v5/agents/heartbeat"))
                .bearer_auth(&alice)
                .json(
                    &json!({"session_id": format!("fake-{i}"), "agent_type": "x",
                              "status": "Active"}),
                )
        })
        .collect();
    let results = race(reqs);
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 5, "{results:?}");
    for (status, retry, body) in results.iter().filter(|r| r.0 != 200) {
        assert_limit(*status, body, "agents_per_user", 5);
        assert_retry_after(retry.as_deref());
    }
    let mine = listed(&api, &alice);
    assert_eq!(mine.len(), 5, "{mine:?}");
    // A session already stored keeps its heartbeats; a claim for a new
    // session is refused like a heartbeat.
    assert_eq!(heartbeat(&api, &alice, &mine[0]).0, 200);
    let (s, r) = claim(&api, &alice, "fake-new", &["src/a.rs"], 60);
    assert_limit(s, &r, "agents_per_user", 5);
    // The cap is per user.
    let bob = token("acme", "bob", Role::User);
    assert_eq!(heartbeat(&api, &bob, "bob-1").0, 200);
    let metrics = api.sink.metrics();
    assert!(
        metrics.contains(
            "fdb_sink_api_requests_total{route=\"/api/v5/agents/heartbeat\",code=\"429\"} 11"
        ),
        "{metrics}"
    );
}

/// 8 claims of 3 new paths each at once, cap 10: exactly 3 get through.
/// Renewing one's own claims does not count them twice; a release makes
/// room.
#[test]
fn racing_claims_never_pass_the_claim_cap() {
    let api = Api::start(&["--api-max-claims-per-user", "10"]);
    let alice = token("acme", "alice", Role::User);
    for i in 0..8 {
        assert_eq!(heartbeat(&api, &alice, &format!("s-{i}")).0, 200);
    }
    let reqs = (0..8)
        .map(|i| {
            http()
                .post(api.url("/api/v5/agents/claims"))
                .bearer_auth(&alice)
                .json(&json!({"session_id": format!("s-{i}"), "agent_type": "x",
                              "paths": [format!("d{i}/a"), format!("d{i}/b"), format!("d{i}/c")],
                              "ttl_seconds": 600}))
        })
        .collect();
    let results = race(reqs);
    let granted: Vec<&Value> = results
        .iter()
        .filter(|r| r.0 == 200)
        .map(|r| &r.2)
        .collect();
    assert_eq!(granted.len(), 3, "{results:?}");
    for (status, retry, body) in results.iter().filter(|r| r.0 != 200) {
        assert_limit(*status, body, "claims_per_user", 10);
        assert_retry_after(retry.as_deref());
    }
    let session = granted[0]["session_id"].as_str().expect("session");
    let paths: Vec<&str> = granted[0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("path"))
        .collect();
    // 9 held: renewing 3 of them plus 1 new path fits (10), 2 new do not.
    let mut renew = paths.clone();
    renew.push("new/1");
    assert_eq!(claim(&api, &alice, session, &renew, 600).0, 200);
    let (s, r) = claim(&api, &alice, session, &["new/2"], 600);
    assert_limit(s, &r, "claims_per_user", 10);
    // A release frees its places.
    let (s, r) = api.delete(
        &alice,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "paths": paths}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        claim(&api, &alice, session, &["new/2", "new/3", "new/4"], 600).0,
        200
    );
    // Another user is not affected.
    let bob = token("acme", "bob", Role::User);
    assert_eq!(claim(&api, &bob, "bob-1", &["b/1", "b/2"], 600).0, 200);
}

/// Expired claims and sessions dead for `--agent-ttl` stop counting: a user
/// is never locked out by what is no longer live. A dead session whose
/// claims have not expired keeps its row (its claims stay free for others,
/// as for any dead holder) and its place.
#[test]
fn expired_claims_and_dead_sessions_make_room() {
    let api = Api::start(&[
        "--agent-ttl",
        "1s",
        "--api-max-agents-per-user",
        "2",
        "--api-max-claims-per-user",
        "2",
    ]);
    let alice = token("acme", "alice", Role::User);
    // Claims: two of 1 s fill the cap; once expired they make room.
    assert_eq!(heartbeat(&api, &alice, "a").0, 200);
    assert_eq!(claim(&api, &alice, "a", &["x/1", "x/2"], 1).0, 200);
    let (s, r) = claim(&api, &alice, "a", &["x/3"], 60);
    assert_limit(s, &r, "claims_per_user", 2);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(heartbeat(&api, &alice, "a").0, 200);
    let (s, r) = claim(&api, &alice, "a", &["x/3", "x/4"], 60);
    assert_eq!(s, 200, "{r}");

    // Agents: "a" holds claims for 60 s; "b" only heartbeats.
    assert_eq!(heartbeat(&api, &alice, "b").0, 200);
    let (s, r) = heartbeat(&api, &alice, "c");
    assert_limit(s, &r, "agents_per_user", 2);
    std::thread::sleep(Duration::from_millis(1200));
    // Both dead now: "b" is evicted for "c"; "a" still has live claims.
    let (s, r) = heartbeat(&api, &alice, "c");
    assert_eq!(s, 200, "{r}");
    assert_eq!(listed(&api, &alice), vec!["a".to_owned(), "c".to_owned()]);
    let (s, r) = heartbeat(&api, &alice, "d");
    assert_limit(s, &r, "agents_per_user", 2);
    // The dead holder's claims block no one (its row was kept).
    let bob = token("acme", "bob", Role::User);
    let (s, r) = claim(&api, &bob, "bob-1", &["x/3"], 60);
    assert_eq!(s, 200, "{r}");
}
