//! `GET /api/v5/agents` pages: `limit`, `cursor`/`next_cursor`, a byte
//! budget per page, and cursors that stay in their tenant, over real HTTP
//! against a real store.

use std::collections::BTreeSet;

use fdb_sink::api::agent_list::{DEFAULT_LIMIT, MAX_PAGE_BYTES};
use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{http, send, token, Api};

fn heartbeat(api: &Api, tok: &str, session: &str, files: &[String]) {
    let (s, r) = api.post(
        tok,
        "/api/v5/agents/heartbeat",
        &json!({"session_id": session, "agent_type": "claude", "status": "Active",
                "files_claimed": files}),
    );
    assert_eq!(s, 200, "{session}: {r}");
}

/// One page: status, body, and the body's size in bytes.
fn page(api: &Api, tok: &str, query: &[(&str, &str)]) -> (u16, Value, usize) {
    let r = http()
        .get(api.url("/api/v5/agents"))
        .bearer_auth(tok)
        .query(query)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    (status, body, text.len())
}

/// Every page from the first on: the session ids of each page.
fn all_pages(api: &Api, tok: &str, limit: Option<&str>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(("limit", l));
        }
        if let Some(c) = cursor.as_deref() {
            q.push(("cursor", c));
        }
        let (s, r, _) = page(api, tok, &q);
        assert_eq!(s, 200, "{r}");
        pages.push(
            r["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .map(|a| a["session_id"].as_str().expect("session_id").to_owned())
                .collect(),
        );
        match r["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(r["next_cursor"].is_null(), "{r}");
                break;
            }
        }
        assert!(pages.len() < 1000, "the pages never end");
    }
    pages
}

/// A listing is paged by `limit` (default 100): role `user` pages through
/// its own agents only, admin through the tenant's, each agent exactly once.
#[test]
fn the_agent_list_is_paged_by_limit_and_cursor() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let bob = token("acme", "bob", Role::User);
    let admin = token("acme", "ops", Role::Admin);
    for i in 0..230 {
        heartbeat(&api, &alice, &format!("s-alice-{i:03}"), &[]);
    }
    for i in 0..5 {
        heartbeat(&api, &bob, &format!("s-bob-{i}"), &[]);
    }

    let pages = all_pages(&api, &alice, Some("100"));
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![100, 100, 30]
    );
    let seen: Vec<&String> = pages.iter().flatten().collect();
    let distinct: BTreeSet<&String> = seen.iter().copied().collect();
    assert_eq!((seen.len(), distinct.len()), (230, 230));
    assert!(seen.iter().all(|s| s.starts_with("s-alice-")));

    let bobs: Vec<String> = all_pages(&api, &bob, None).concat();
    assert_eq!(bobs.len(), 5, "{bobs:?}");
    assert!(bobs.iter().all(|s| s.starts_with("s-bob-")));

    let (s, r, _) = page(&api, &admin, &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["agents"].as_array().map(Vec::len), Some(DEFAULT_LIMIT));
    assert!(r["next_cursor"].is_string(), "{r}");
    let everyone: Vec<String> = all_pages(&api, &admin, Some("1000")).concat();
    assert_eq!(everyone.len(), 235);
    // A limit over the maximum is capped, not refused.
    let (s, r, _) = page(&api, &admin, &[("limit", "100000")]);
    assert_eq!((s, r["agents"].as_array().map(Vec::len)), (200, Some(235)));
}

/// Rows of about 80 kB each (`files_claimed` of 2000 paths): a page stops
/// at its byte budget, so no answer (and no store transaction) grows with
/// the tenant's rows, and following `next_cursor` still lists every agent.
#[test]
fn a_page_of_large_agent_rows_stays_within_its_byte_budget() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    let files: Vec<String> = (0..2000)
        .map(|i| format!("src/module/component/file_{i:06}.rs"))
        .collect();
    let rows = 30;
    for i in 0..rows {
        heartbeat(&api, &alice, &format!("s-{i:02}"), &files);
    }
    let (s, r, size) = page(&api, &alice, &[]);
    assert_eq!(s, 200);
    let listed = r["agents"].as_array().map_or(0, Vec::len);
    assert!(listed >= 1 && listed < rows, "{listed} rows in one page");
    assert!(
        size < MAX_PAGE_BYTES + 200_000,
        "a page of {size} bytes for a budget of {MAX_PAGE_BYTES}"
    );
    assert!(r["next_cursor"].is_string());
    let all: Vec<String> = all_pages(&api, &alice, None).concat();
    let want: Vec<String> = (0..rows).map(|i| format!("s-{i:02}")).collect();
    assert_eq!(all, want);
}

/// Cursors are checked: another tenant's cursor, garbage and `limit=0` are
/// 400 with a stable code; unknown parameters are refused.
#[test]
fn agent_list_cursors_stay_in_their_tenant() {
    let api = Api::start(&[]);
    let alice = token("acme", "alice", Role::User);
    heartbeat(&api, &alice, "s-1", &[]);
    heartbeat(&api, &alice, "s-2", &[]);
    let (s, r, _) = page(&api, &alice, &[("limit", "1")]);
    assert_eq!(s, 200, "{r}");
    let cursor = r["next_cursor"].as_str().expect("cursor").to_owned();

    let mallory = token("globex", "mallory", Role::Admin);
    let (s, r, _) = page(&api, &mallory, &[("cursor", &cursor)]);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")), "{r}");
    let (s, r, _) = page(&api, &alice, &[("cursor", "not-a-cursor")]);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")), "{r}");
    let (s, r, _) = page(&api, &alice, &[("limit", "0")]);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
    let (s, r, _) = page(&api, &alice, &[("user", "x")]);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");

    let (s, r, _) = page(&api, &alice, &[("cursor", &cursor)]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["agents"][0]["session_id"], "s-2", "{r}");
    assert!(r["next_cursor"].is_null(), "{r}");
    let (s, r) = send(http().get(api.url("/api/v5/agents")).bearer_auth(&alice));
    assert_eq!(s, 200);
    assert_eq!(r["agents"].as_array().map(Vec::len), Some(2), "{r}");
}

/// `--agent-ttl` under 1s would make every agent `dead` as soon as its
/// heartbeat is stored (and unable to claim): refused at start, exit 2.
#[test]
fn an_agent_ttl_under_a_second_is_refused_at_start() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, crate::api_harness::SECRET).expect("secret");
    for ttl in ["0s", "0m"] {
        let mut child = crate::api_harness::serve_command(dir.path(), Some(&secret))
            .args(["--agent-ttl", ttl])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{ttl}: {stderr}");
        assert!(
            stderr.contains("--agent-ttl") && stderr.contains("at least 1s"),
            "{stderr}"
        );
    }
}
