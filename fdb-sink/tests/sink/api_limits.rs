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

fn heartbeat_status(api: &Api, tok: &str, session: &str, status: &str) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": session, "agent_type": "claude", "status": status}),
    )
}

fn release(api: &Api, tok: &str, session: &str, paths: &[&str]) -> (u16, Value) {
    api.delete(
        tok,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "paths": paths}),
    )
}

/// Sessions that released their claims and reported `Stopped` no longer
/// count, whatever their claims' TTL was: a new session gets their place at
/// once. The claims of an evicted session block no one, as those of a
/// stopped one.
#[test]
fn stopped_sessions_make_room_at_once() {
    let api = Api::start(&["--api-max-agents-per-user", "2"]);
    let alice = token("acme", "alice", Role::User);
    for s in ["job1", "job2"] {
        assert_eq!(heartbeat(&api, &alice, s).0, 200);
        let path = format!("src/{s}.rs");
        let (st, r) = claim(&api, &alice, s, &[&path], 86_400);
        assert_eq!(st, 200, "{r}");
        if s == "job1" {
            let (st, r) = release(&api, &alice, s, &[&path]);
            assert_eq!(st, 200, "{r}");
        }
        let (st, r) = heartbeat_status(&api, &alice, s, "Stopped");
        assert_eq!(st, 200, "{r}");
    }
    let (s, r) = heartbeat(&api, &alice, "job3");
    assert_eq!(s, 200, "{r}");
    let (s, r) = heartbeat(&api, &alice, "job4");
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        listed(&api, &alice),
        vec!["job3".to_owned(), "job4".to_owned()]
    );
    // job2's unexpired claim has lost its holder's row: it blocks no one.
    let bob = token("acme", "bob", Role::User);
    let (s, r) = claim(&api, &bob, "bob-1", &["src/job2.rs"], 60);
    assert_eq!(s, 200, "{r}");
}

/// A refused new session is told which session still counts and why: a
/// recent heartbeat, or claims that may run (with the way out).
#[test]
fn the_agent_cap_refusal_says_why_the_sessions_still_count() {
    let api = Api::start(&["--agent-ttl", "1s", "--api-max-agents-per-user", "1"]);
    let alice = token("acme", "alice", Role::User);
    assert_eq!(heartbeat(&api, &alice, "a").0, 200);
    let (s, r) = heartbeat(&api, &alice, "b");
    assert_limit(s, &r, "agents_per_user", 1);
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("session \"a\", sent its last heartbeat ") && message.contains("s ago"),
        "{message}"
    );
    assert!(message.contains("Stopped"), "{message}");
    // Dead, but with a claim of an hour: it counts because of the claim.
    assert_eq!(claim(&api, &alice, "a", &["src/a.rs"], 3600).0, 200);
    std::thread::sleep(Duration::from_millis(1200));
    let (s, r) = heartbeat(&api, &alice, "b");
    assert_limit(s, &r, "agents_per_user", 1);
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("session \"a\", may hold claims until"),
        "{message}"
    );
    assert!(
        message.contains("a heartbeat with status Stopped ends that"),
        "{message}"
    );
    // Which it does.
    assert_eq!(heartbeat_status(&api, &alice, "a", "Stopped").0, 200);
    let (s, r) = heartbeat(&api, &alice, "b");
    assert_eq!(s, 200, "{r}");
}

fn long_paths(n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}{i:06}", "d/".repeat(len / 2 - 3)))
        .collect()
}

/// A claim or release too large for one store transaction (FoundationDB
/// refuses those over 10 MB, counting reads and writes) is refused with 413
/// and a message saying what to do, before anything is written; a smaller
/// one of the same paths goes through.
#[test]
fn claims_too_large_for_one_transaction_get_413() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let paths = long_paths(1000, 1500);
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    for (s, r) in [
        claim(&api, &alice, "s-1", &refs, 60),
        release(&api, &alice, "s-1", &refs),
    ] {
        assert_eq!(s, 413, "{r}");
        assert_eq!(r["error"], "payload_too_large", "{r}");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(message.contains("of 1000 paths"), "{message}");
        assert!(message.contains("fewer or shorter paths"), "{message}");
    }
    // Nothing was claimed.
    let bob = token("acme", "bob", Role::User);
    assert_eq!(claim(&api, &bob, "bob-1", &refs[..1], 60).0, 200);
    assert_eq!(release(&api, &bob, "bob-1", &refs[..1]).0, 200);
    let (s, r) = claim(&api, &alice, "s-1", &refs[..100], 60);
    assert_eq!(s, 200, "{r}");
    let (s, r) = release(&api, &alice, "s-1", &refs[..100]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["released"].as_array().map(Vec::len), Some(100), "{r}");
}

/// Retention inside `serve` keeps the row of a session that only claims
/// (no heartbeat) while its claims run, however old its first claim: its
/// claims keep blocking others.
#[test]
fn retention_keeps_the_row_of_a_session_whose_claims_run() {
    let api = Api::start(&[
        "--retention-older-than",
        "1s",
        "--retention-interval",
        "1s",
        "--retention-allow-removing-all",
    ]);
    let alice = token("acme", "alice", Role::User);
    let (s, r) = claim(&api, &alice, "claimer", &["src/a.rs"], 600);
    assert_eq!(s, 200, "{r}");
    // Two retention runs after the row is older than the cutoff.
    let runs = |log: &str| log.matches("retention run finished").count();
    let start = runs(&api.sink.log.lock().map(|l| l.clone()).unwrap_or_default());
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = api.sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        if runs(&log) >= start + 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bob = token("acme", "bob", Role::User);
    let (s, r) = claim(&api, &bob, "bob-1", &["src/a.rs"], 60);
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["holders"][0]["session_id"], "claimer", "{r}");
}

/// A session row from before `until_ns` was stored, of a session that only
/// claims: its claims may run up to the longest TTL from now, so a short
/// claim does not let its row be evicted while they run.
#[test]
fn an_old_claim_only_row_is_not_evicted_while_its_old_claims_may_run() {
    use fdb_sink::keys::Keys;
    use fdb_sink::store::embedded::EmbeddedStore;
    use fdb_sink::store::StoreExt;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let hour = 3_600_000_000_000i64;
    let api = Api::start_prepared(
        &["--agent-ttl", "1s", "--api-max-agents-per-user", "1"],
        |dir| {
            let store = EmbeddedStore::open(dir).expect("open");
            let keys = Keys::default();
            // First claimed 30 h ago; renewed an hour ago for 24 h.
            let agent = json!({"session_id": "old", "user_id": "alice", "agent_type": "claude",
                "status": "Active", "last_heartbeat": null, "files_claimed": [],
                "received_ns": now - 30 * hour, "heartbeat": false});
            let claim = json!({"session_id": "old", "user_id": "alice", "agent_type": "claude",
                "claimed_ns": now - hour, "expires_ns": now + 23 * hour});
            store
                .transact(|t| {
                    t.set(&keys.agent("acme", "old"), agent.to_string().as_bytes())?;
                    t.set(
                        &keys.claim("acme", "src/old.rs"),
                        claim.to_string().as_bytes(),
                    )
                })
                .expect("write");
        },
    );
    let alice = token("acme", "alice", Role::User);
    let (s, r) = claim(&api, &alice, "old", &["src/new.rs"], 1);
    assert_eq!(s, 200, "{r}");
    std::thread::sleep(Duration::from_millis(2200));
    let (s, r) = heartbeat(&api, &alice, "fresh");
    assert_limit(s, &r, "agents_per_user", 1);
    let bob = token("acme", "bob", Role::User);
    let (s, r) = claim(&api, &bob, "bob-1", &["src/old.rs"], 60);
    assert_eq!(s, 409, "{r}");
}
