//! Agent heartbeats, liveness and file claims over real concurrent HTTP.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{http, send, token, Api};

fn heartbeat(api: &Api, tok: &str, session: &str, status: &str) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": session, "agent_type": "claude", "status": status,
                "last_heartbeat": "2026-11-26T18:00:00Z", "files_claimed": ["src/a.rs"]}),
    )
}

fn claim(api: &Api, tok: &str, session: &str, paths: &[String], ttl: u64) -> (u16, Value) {
    api.post(
        tok,
        "/api/v5/agents/claims",
        &json!({"session_id": session, "agent_type": "claude", "paths": paths, "ttl_seconds": ttl}),
    )
}

fn liveness(api: &Api, tok: &str, session: &str) -> String {
    let (s, r) = api.get(tok, "/api/v5/agents");
    assert_eq!(s, 200, "{r}");
    r["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["session_id"] == session)
        .map(|a| a["liveness"].as_str().expect("liveness").to_owned())
        .unwrap_or_else(|| panic!("{session} not listed: {r}"))
}

#[test]
fn five_agents_racing_for_the_same_files_never_both_win() {
    let api = Arc::new(Api::start(&[]));
    let agents: Vec<(String, String)> = (0..5)
        .map(|i| {
            let session = format!("s-agent-{i}");
            let tok = token("acme", &format!("user{i}"), Role::User);
            assert_eq!(heartbeat(&api, &tok, &session, "Active").0, 200);
            (session, tok)
        })
        .collect();
    let rounds = 40;
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(agents.len()));
        let handles: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(i, (session, tok))| {
                let (api, barrier, session, tok) =
                    (api.clone(), barrier.clone(), session.clone(), tok.clone());
                std::thread::spawn(move || {
                    // Everyone wants the common file, plus one of their own.
                    let paths = vec![
                        format!("r{round}/common.rs"),
                        format!("r{round}/own-{i}.rs"),
                    ];
                    let req = http()
                        .post(api.url("/api/v5/agents/claims"))
                        .bearer_auth(&tok)
                        .json(&json!({"session_id": session, "agent_type": "claude",
                                      "paths": paths, "ttl_seconds": 300}));
                    barrier.wait();
                    (i, send(req))
                })
            })
            .collect();
        let results: Vec<(usize, (u16, Value))> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let winners: Vec<usize> = results
            .iter()
            .filter(|r| r.1 .0 == 200)
            .map(|r| r.0)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = &agents[winners[0]].0;
        for (i, (status, body)) in &results {
            if *i == winners[0] {
                continue;
            }
            assert_eq!(*status, 409, "round {round}: {body}");
            assert_eq!(body["error"], "claim_conflict");
            assert_eq!(body["holders"][0]["session_id"], json!(winner), "{body}");
            assert_eq!(
                body["holders"][0]["path"],
                json!(format!("r{round}/common.rs"))
            );
            assert!(body["message"]
                .as_str()
                .unwrap_or("")
                .contains(winner.as_str()));
        }
        // All or none: a loser's own file was not claimed.
        let loser = (winners[0] + 1) % agents.len();
        let (s, _) = claim(
            &api,
            &agents[winners[0]].1,
            winner,
            &[format!("r{round}/own-{loser}.rs")],
            60,
        );
        assert_eq!(s, 200, "round {round}: the loser's own path stayed free");
    }
}

#[test]
fn liveness_release_expiry_and_dead_holders() {
    let api = Api::start(&["--agent-ttl", "2s"]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    assert_eq!(heartbeat(&api, &alice, "s-a", "Active").0, 200);
    assert_eq!(heartbeat(&api, &bob, "s-b", "Idle").0, 200);
    assert_eq!(liveness(&api, &alice, "s-a"), "active");
    assert_eq!(liveness(&api, &bob, "s-b"), "idle");
    let (s, r) = api.get(&alice, "/api/v5/agents");
    assert_eq!(s, 200);
    assert_eq!(
        r["agents"].as_array().map(Vec::len),
        Some(1),
        "alice sees only her agent: {r}"
    );
    assert_eq!(r["agents"][0]["status"], "Active");
    assert_eq!(r["agents"][0]["files_claimed"], json!(["src/a.rs"]));

    let p = |s: &str| vec![s.to_owned()];
    // Claim, conflict, release, claim again.
    assert_eq!(claim(&api, &alice, "s-a", &p("src/x.rs"), 300).0, 200);
    let (s, r) = claim(&api, &bob, "s-b", &p("src/x.rs"), 300);
    assert_eq!(
        (s, r["holders"][0]["session_id"].as_str()),
        (409, Some("s-a"))
    );
    // Renewing one's own claim is fine.
    assert_eq!(claim(&api, &alice, "s-a", &p("src/x.rs"), 300).0, 200);
    let (s, r) = api.delete(
        &alice,
        "/api/v5/agents/claims",
        &json!({"session_id": "s-a", "paths": ["src/x.rs", "src/never.rs"]}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["released"].clone(), r["not_held"].clone()),
        (json!(["src/x.rs"]), json!(["src/never.rs"]))
    );
    // Live agents heartbeat before they claim: a dead session cannot claim,
    // and --agent-ttl is short here.
    assert_eq!(heartbeat(&api, &bob, "s-b", "Idle").0, 200);
    assert_eq!(claim(&api, &bob, "s-b", &p("src/x.rs"), 1).0, 200);
    // Bob's claim expires after 1 s.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(heartbeat(&api, &alice, "s-a", "Active").0, 200);
    assert_eq!(
        claim(&api, &alice, "s-a", &p("src/x.rs"), 300).0,
        200,
        "expired claims are free"
    );
    // A stopped agent's claims do not block.
    assert_eq!(heartbeat(&api, &bob, "s-b", "Idle").0, 200);
    assert_eq!(claim(&api, &bob, "s-b", &p("src/y.rs"), 300).0, 200);
    assert_eq!(heartbeat(&api, &bob, "s-b", "Stopped").0, 200);
    assert_eq!(liveness(&api, &bob, "s-b"), "stopped");
    assert_eq!(heartbeat(&api, &alice, "s-a", "Active").0, 200);
    assert_eq!(claim(&api, &alice, "s-a", &p("src/y.rs"), 300).0, 200);
    // Without heartbeats for --agent-ttl, alice is dead and her claims free.
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(liveness(&api, &alice, "s-a"), "dead");
    assert_eq!(heartbeat(&api, &bob, "s-b", "Active").0, 200);
    assert_eq!(
        claim(&api, &bob, "s-b", &p("src/x.rs"), 300).0,
        200,
        "dead holders do not block"
    );

    for (body, what) in [
        (
            json!({"session_id": "s-a", "agent_type": "c", "paths": [], "ttl_seconds": 5}),
            "no paths",
        ),
        (
            json!({"session_id": "s-a", "agent_type": "c", "paths": ["a"], "ttl_seconds": 0}),
            "ttl 0",
        ),
        (
            json!({"session_id": "bad id!", "agent_type": "c", "paths": ["a"], "ttl_seconds": 5}),
            "bad session",
        ),
        (
            json!({"session_id": "s-a", "paths": ["a"], "ttl_seconds": 5}),
            "missing agent_type",
        ),
    ] {
        let (s, r) = api.post(&alice, "/api/v5/agents/claims", &body);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{what}: {r}"
        );
    }
    let many: Vec<String> = (0..9000)
        .map(|i| format!("src/some/long/path/{i:06}.rs"))
        .collect();
    let (s, r) = api.post(
        &alice,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": "s-a", "agent_type": "c", "status": "Active", "files_claimed": many}),
    );
    assert_eq!(
        (s, r["error"].as_str()),
        (400, Some("bad_request")),
        "too large: {r}"
    );
    let (s, r) = api.post(
        &alice,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": "s-a", "agent_type": "c", "status": "Sleeping"}),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
}

#[test]
fn a_session_belongs_to_whoever_first_claimed_or_heartbeat_for_it() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    let p = |s: &str| vec![s.to_owned()];
    // Bob claims without ever sending a heartbeat: the session is his.
    assert_eq!(claim(&api, &bob, "s-bob", &p("p/held.rs"), 300).0, 200);
    let (s, r) = heartbeat(&api, &alice, "s-bob", "Stopped");
    assert_eq!((s, r["error"].as_str()), (403, Some("forbidden")), "{r}");
    let (s, r) = claim(&api, &alice, "s-bob", &p("p/other.rs"), 300);
    assert_eq!((s, r["error"].as_str()), (403, Some("forbidden")), "{r}");
    for paths in [json!(["p/held.rs"]), json!(["p/not-held.rs"])] {
        let (s, r) = api.delete(
            &alice,
            "/api/v5/agents/claims",
            &json!({"session_id": "s-bob", "paths": paths}),
        );
        assert_eq!((s, r["error"].as_str()), (403, Some("forbidden")), "{r}");
    }
    // Bob's claim still holds, and his own heartbeat is accepted.
    let (s, r) = claim(&api, &alice, "s-alice", &p("p/held.rs"), 300);
    assert_eq!(
        (s, r["holders"][0]["session_id"].as_str()),
        (409, Some("s-bob"))
    );
    // Without a heartbeat the session is not listed as an agent.
    let (s, r) = api.get(&bob, "/api/v5/agents");
    assert_eq!(
        (s, r["agents"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{r}"
    );
    // Released, the session still belongs to Bob.
    let (s, r) = api.delete(
        &bob,
        "/api/v5/agents/claims",
        &json!({"session_id": "s-bob", "paths": ["p/held.rs"]}),
    );
    assert_eq!(
        (s, r["released"].clone()),
        (200, json!(["p/held.rs"])),
        "{r}"
    );
    let (s, r) = heartbeat(&api, &alice, "s-bob", "Active");
    assert_eq!((s, r["error"].as_str()), (403, Some("forbidden")), "{r}");
    let (s, r) = heartbeat(&api, &bob, "s-bob", "Active");
    assert_eq!((s, r["user_id"].as_str()), (200, Some("bob")), "{r}");

    // A session reported Stopped cannot claim until it is active again.
    assert_eq!(heartbeat(&api, &bob, "s-bob", "Stopped").0, 200);
    let (s, r) = claim(&api, &bob, "s-bob", &p("p/new.rs"), 300);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
    assert_eq!(heartbeat(&api, &bob, "s-bob", "Active").0, 200);
    assert_eq!(claim(&api, &bob, "s-bob", &p("p/new.rs"), 300).0, 200);
}

#[test]
fn a_path_is_claimed_only_as_file_events_spell_it() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    assert_eq!(
        claim(&api, &alice, "s-a", &["src/a.rs".to_owned()], 300).0,
        200
    );
    for other in [
        "./src/a.rs",
        "/src/a.rs",
        "src//a.rs",
        "src/./a.rs",
        "src/x/../a.rs",
        "src/a.rs/",
    ] {
        let (s, r) = claim(&api, &bob, "s-b", &[other.to_owned()], 300);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{other}: {r}"
        );
    }
}

#[test]
fn malformed_requests_get_clear_errors() {
    let api = Api::start(&[]);
    let admin = token("acme", "ops", Role::Admin);
    for path in [
        "/api/v5/agents?status=dead",
        "/api/v5/monitors/0190b5a0-0000-7000-8000-000000000001/delivery?x=1",
    ] {
        let (s, r) = api.get(&admin, path);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{path}: {r}"
        );
    }
    let (s, r) = api.post(
        &admin,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": "s-1", "agent_type": "c", "status": "Active",
                "last_heartbeat": "yesterday"}),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
    // Over the API's 2 MB body limit.
    let huge: Vec<String> = (0..40_000).map(|i| format!("src/{i:060}.rs")).collect();
    let (s, r) = api.post(
        &admin,
        "/api/v5/agents/claims",
        &json!({"session_id": "s-1", "agent_type": "c", "paths": huge, "ttl_seconds": 5}),
    );
    assert_eq!(
        (s, r["error"].as_str()),
        (413, Some("payload_too_large")),
        "{r}"
    );
}

/// A session that is `dead` (no heartbeat within --agent-ttl) cannot claim:
/// its claim would block no one, so two agents would both be told they hold
/// the same file. A heartbeat makes it able to claim again.
#[test]
fn a_dead_session_cannot_claim_so_no_two_agents_both_hold_a_path() {
    // Long enough that the live sessions below stay alive on a loaded
    // machine between their heartbeat and their claim.
    let api = Api::start(&["--agent-ttl", "3s"]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    let p = |s: &str| vec![s.to_owned()];
    assert_eq!(heartbeat(&api, &alice, "s-a", "Active").0, 200);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(liveness(&api, &alice, "s-a"), "dead");
    let (s, r) = claim(&api, &alice, "s-a", &p("src/f.rs"), 300);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
    assert!(
        r["message"].as_str().unwrap_or_default().contains("dead"),
        "{r}"
    );
    assert_eq!(heartbeat(&api, &bob, "s-b", "Active").0, 200);
    assert_eq!(claim(&api, &bob, "s-b", &p("src/f.rs"), 300).0, 200);
    // Alive again, alice is told who holds the file.
    assert_eq!(heartbeat(&api, &alice, "s-a", "Active").0, 200);
    let (s, r) = claim(&api, &alice, "s-a", &p("src/f.rs"), 300);
    assert_eq!(
        (s, r["holders"][0]["session_id"].as_str()),
        (409, Some("s-b")),
        "{r}"
    );
}
