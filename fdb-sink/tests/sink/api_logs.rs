//! Audit queries over HTTP: pagination while records arrive, filters, the
//! SSE follow stream, file history, duplicates and delivery.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use fdb_sink::api::auth::Role;
use serde_json::{json, Value};

use crate::api_harness::{ev, http, token, ts, Api};

const M1: &str = "0190b5a0-0000-7000-8000-0000000000b1";
const M2: &str = "0190b5a0-0000-7000-8000-0000000000b2";

fn ids(records: &Value) -> Vec<String> {
    records
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["event_id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn pages_stay_complete_and_ordered_while_records_arrive() {
    let api = Api::start(&[]);
    let mut originals = Vec::new();
    // Two sessions of alice interleaved in time, and noise from bob.
    for i in 0..120u64 {
        let s = if i % 2 == 0 { "s-1" } else { "s-2" };
        originals.push(ev(
            "acme",
            "alice",
            s,
            M1,
            i + 1,
            &ts(i * 10),
            "update",
            &format!("src/f{i}.rs"),
        ));
    }
    api.ingest(&originals);
    api.ingest(&[ev(
        "acme",
        "bob",
        "s-b",
        M2,
        1,
        &ts(5),
        "update",
        "src/bob.rs",
    )]);
    let alice = token("acme", "alice", Role::User);
    let mut seen: Vec<Value> = Vec::new();
    let mut inserted = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v5/agents/logs?limit=25&cursor={c}"),
            None => "/api/v5/agents/logs?limit=25".to_owned(),
        };
        let (s, page) = api.get(&alice, &q);
        assert_eq!(s, 200, "{page}");
        pages += 1;
        assert!(page["records"].as_array().expect("records").len() <= 25);
        seen.extend(page["records"].as_array().expect("records").iter().cloned());
        let Some(next) = page["next_cursor"].as_str() else {
            break;
        };
        cursor = Some(next.to_owned());
        // New events arrive between pages, later than everything so far.
        let batch: Vec<Value> = (0..5u64)
            .map(|j| {
                let n = inserted.len() as u64 + j;
                ev(
                    "acme",
                    "alice",
                    "s-3",
                    M1,
                    1000 + n,
                    &ts(2000 + n),
                    "create",
                    "src/new.rs",
                )
            })
            .collect();
        api.ingest(&batch);
        inserted.extend(batch);
        assert!(pages < 100, "pagination does not end");
    }
    let got = ids(&json!(seen));
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a record appeared twice");
    let want: HashSet<String> = originals
        .iter()
        .chain(&inserted)
        .map(|e| e["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(unique.len(), want.len(), "records missing");
    assert!(
        got.iter().all(|id| want.contains(id)),
        "someone else's record"
    );
    let times: Vec<&str> = seen
        .iter()
        .map(|r| r["timestamp"].as_str().expect("ts"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not time-ordered");
    assert!(!inserted.is_empty());
}

#[test]
fn filters_time_ranges_and_bad_parameters() {
    let api = Api::start(&[]);
    api.ingest(&[
        ev("acme", "alice", "s-1", M1, 1, &ts(10), "create", "src/a.rs"),
        ev("acme", "alice", "s-1", M1, 2, &ts(20), "move", "src/b.rs"),
        ev(
            "acme",
            "alice",
            "s-1",
            M1,
            3,
            &ts(30),
            "update",
            "docs/c.md",
        ),
        ev("acme", "alice", "s-1", M1, 4, &ts(40), "delete", "src/a.rs"),
    ]);
    let alice = token("acme", "alice", Role::User);
    let q = |query: &str| api.get(&alice, &format!("/api/v5/agents/s-1/logs{query}"));
    let paths = |r: &Value| -> Vec<String> {
        r["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["path"].as_str().expect("p").to_owned())
            .collect()
    };
    let (s, r) = q("");
    assert_eq!((s, paths(&r).len()), (200, 4));
    assert_eq!(r["next_cursor"], Value::Null);
    let (_, r) = q("?event_type=create,delete");
    assert_eq!(paths(&r), ["src/a.rs", "src/a.rs"]);
    let (_, r) = q("?path_prefix=docs/");
    assert_eq!(paths(&r), ["docs/c.md"]);
    // A move matches on its source too.
    let (_, r) = q("?path_prefix=src/b.rs.old");
    assert_eq!(paths(&r), ["src/b.rs"]);
    let (_, r) = q(&format!("?start={}&end={}", ts(20), ts(40)));
    assert_eq!(paths(&r), ["src/b.rs", "docs/c.md"]);
    let (_, r) = api.get(
        &alice,
        &format!(
            "/api/v5/agents/logs?user_id=alice&start={}&end={}",
            ts(15),
            ts(35)
        ),
    );
    assert_eq!(paths(&r), ["src/b.rs", "docs/c.md"]);
    // Filters and pagination together: one record per page.
    let (_, r) = q("?path_prefix=src/&limit=1");
    assert_eq!(paths(&r), ["src/a.rs"]);
    let c = r["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, r) = q(&format!("?path_prefix=src/&limit=1&cursor={c}"));
    assert_eq!(paths(&r), ["src/b.rs"]);
    for (bad, code) in [
        ("?limit=0", "bad_request"),
        ("?event_type=rename", "bad_request"),
        ("?start=yesterday", "bad_request"),
        ("?cursor=bm90LWEta2V5", "bad_cursor"),
        ("?colour=red", "bad_request"),
    ] {
        let (s, r) = q(bad);
        assert_eq!((s, r["error"].as_str()), (400, Some(code)), "{bad}: {r}");
    }
    // A cursor from another session is refused, not followed.
    let (_, other) = api.get(&alice, "/api/v5/agents/logs?limit=1");
    let foreign = other["next_cursor"].as_str().expect("cursor");
    let (s, _) = api.get(
        &token("acme", "bob", Role::User),
        &format!("/api/v5/agents/logs?cursor={foreign}"),
    );
    assert_eq!(s, 400);
    let (s, r) = q("?limit=5000");
    assert_eq!((s, paths(&r).len()), (200, 4), "capped, not refused");
    let (s, r) = api.get(&alice, "/api/v5/agents/no-such/logs");
    assert_eq!((s, r["error"].as_str()), (404, Some("not_found")));
    let (s, r) = api.get(&alice, "/api/v5/nothing-here");
    assert_eq!((s, r["error"].as_str()), (404, Some("not_found")));
}

/// Reads SSE `record` events from a follow stream into a channel.
fn follow(
    api: &Api,
    token: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> mpsc::Receiver<(String, Value)> {
    follow_at(
        api,
        token,
        &format!("/api/v5/agents/s-live/logs?follow=true{query}"),
        last_event_id,
    )
}

/// [`follow`] on any route and query.
fn follow_at(
    api: &Api,
    token: &str,
    path_and_query: &str,
    last_event_id: Option<&str>,
) -> mpsc::Receiver<(String, Value)> {
    let mut req = http().get(api.url(path_and_query)).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().expect("follow");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut id = String::new();
        let mut event = String::new();
        for line in BufReader::new(resp).lines().map_while(Result::ok) {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if event == "record" {
                    let rec: Value = serde_json::from_str(v.trim()).unwrap_or(Value::Null);
                    if tx.send((id.clone(), rec)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[test]
fn follow_streams_new_records_and_resumes_with_last_event_id() {
    let mut api = Api::start(&[]);
    let e1 = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        1,
        &ts(1),
        "create",
        "src/live.rs",
    );
    api.ingest(std::slice::from_ref(&e1));
    let alice = token("acme", "alice", Role::User);
    let rx = follow(&api, &alice, "&event_type=create,update", None);
    let wait = Duration::from_secs(15);
    let (id1, r1) = rx.recv_timeout(wait).expect("the stored record first");
    assert_eq!(r1["event_id"], e1["event_id"]);
    // A record that arrives while the stream is open.
    let e2 = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        2,
        &ts(2),
        "update",
        "src/live.rs",
    );
    let skipped = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        3,
        &ts(3),
        "delete",
        "src/live.rs",
    );
    let e4 = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        4,
        &ts(4),
        "update",
        "src/live.rs",
    );
    api.ingest(&[e2.clone(), skipped]);
    api.ingest(std::slice::from_ref(&e4));
    let (_, r2) = rx.recv_timeout(wait).expect("the new record");
    assert_eq!(r2["event_id"], e2["event_id"]);
    let (_, r4) = rx.recv_timeout(wait).expect("the next matching record");
    assert_eq!(
        r4["event_id"], e4["event_id"],
        "the filtered delete is not sent"
    );
    // Reconnecting (same query) after the first record resumes right
    // after it.
    let rx2 = follow(&api, &alice, "&event_type=create,update", Some(&id1));
    let (_, again) = rx2.recv_timeout(wait).expect("resumed");
    assert_eq!(again["event_id"], e2["event_id"]);
    // Another user's follow of the same session sees nothing.
    let rx3 = follow(&api, &token("acme", "bob", Role::User), "", None);
    assert!(rx3.recv_timeout(Duration::from_secs(1)).is_err());
    // Open streams do not keep the server from stopping.
    api.sink.stop();
}

/// Records come in the wire format's field order (`schema` first, as
/// `export` writes them); a session or monitor id that cannot exist is 400
/// and is not echoed back.
#[test]
fn records_keep_wire_order_and_malformed_ids_are_refused() {
    let api = Api::start(&[]);
    let e = ev("acme", "alice", "s-1", M1, 1, &ts(1), "create", "src/x.rs");
    api.ingest(std::slice::from_ref(&e));
    let alice = token("acme", "alice", Role::User);
    let body = http()
        .get(api.url("/api/v5/agents/s-1/logs"))
        .bearer_auth(&alice)
        .send()
        .expect("get")
        .text()
        .expect("body");
    assert!(
        body.starts_with(r#"{"records":[{"schema":"file-event/1","event_id":"#),
        "{body}"
    );
    let long = "a".repeat(5000);
    for path in [
        format!("/api/v5/agents/{long}/logs"),
        "/api/v5/agents/..%2Fx/logs".to_owned(),
    ] {
        let resp = http()
            .get(api.url(&path))
            .bearer_auth(&alice)
            .send()
            .expect("get");
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        let text = resp.text().expect("body");
        assert!(text.len() < 300 && text.contains("bad_request"), "{text}");
    }
    let admin = token("acme", "root", Role::Admin);
    let (s, r) = api.get(&admin, &format!("/api/v5/monitors/{long}/delivery"));
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")));
    assert!(r["message"].as_str().unwrap_or("").len() < 200);
}

/// A follow delay over an hour would make streams send nothing: refused.
#[test]
fn a_follow_delay_over_an_hour_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, [crate::api_harness::SECRET, b"\n"].concat()).expect("secret");
    let out = crate::api_harness::serve_command(dir.path(), Some(&secret))
        .args(["--api-follow-delay", "2h"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--api-follow-delay") && err.contains("at most 1h"),
        "{err}"
    );
}

/// Records committed out of event-time order (another node's batch, a
/// retried request) within `--api-follow-delay` are all sent, in event-time
/// order: the stream does not pass over the earlier one.
#[test]
fn follow_sends_records_committed_out_of_order_within_the_delay() {
    let mut api = Api::start(&["--api-follow-delay", "3s"]);
    let alice = token("acme", "alice", Role::User);
    let t0 = time::OffsetDateTime::now_utc();
    let at = |ms: u64| {
        (t0 + Duration::from_millis(ms))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc3339")
    };
    let rx = follow(&api, &alice, &format!("&start={}", at(0)), None);
    let later = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        1,
        &at(500),
        "create",
        "src/a.rs",
    );
    api.ingest(std::slice::from_ref(&later));
    std::thread::sleep(Duration::from_secs(1));
    // Committed a second after `later`, with an earlier event time.
    let earlier = ev(
        "acme",
        "alice",
        "s-live",
        M1,
        2,
        &at(200),
        "create",
        "src/b.rs",
    );
    api.ingest(std::slice::from_ref(&earlier));
    let wait = Duration::from_secs(15);
    let got: Vec<Value> = (0..2)
        .map(|_| rx.recv_timeout(wait).expect("a record").1["event_id"].clone())
        .collect();
    assert_eq!(
        got,
        vec![earlier["event_id"].clone(), later["event_id"].clone()]
    );
    // The same across sessions of one user (two workspaces, two nodes):
    // the user-wide stream sends the late session's record too.
    let rx = follow_at(
        &api,
        &alice,
        &format!("/api/v5/agents/logs?follow=true&start={}", at(2000)),
        None,
    );
    let ws1 = ev(
        "acme",
        "alice",
        "s-ws1",
        M1,
        3,
        &at(2500),
        "update",
        "src/c.rs",
    );
    api.ingest(std::slice::from_ref(&ws1));
    std::thread::sleep(Duration::from_secs(1));
    let ws2 = ev(
        "acme",
        "alice",
        "s-ws2",
        M2,
        1,
        &at(2200),
        "create",
        "src/d.rs",
    );
    api.ingest(std::slice::from_ref(&ws2));
    let got: Vec<Value> = (0..2)
        .map(|_| rx.recv_timeout(wait).expect("a record").1["event_id"].clone())
        .collect();
    assert_eq!(got, vec![ws2["event_id"].clone(), ws1["event_id"].clone()]);
    api.sink.stop();
}

#[test]
fn file_history_duplicates_and_delivery() {
    let api = Api::start(&[]);
    let same = format!("sha256:{:064x}", 42);
    let mut a1 = ev(
        "acme",
        "alice",
        "s-1",
        M1,
        1,
        &ts(1),
        "create",
        "src/shared.rs",
    );
    a1["checksum"] = json!(same);
    let mut b1 = ev(
        "acme",
        "bob",
        "s-b",
        M2,
        1,
        &ts(2),
        "update",
        "src/shared.rs",
    );
    b1["checksum"] = json!(format!("sha256:{:064x}", 43));
    let mut a2 = ev(
        "acme",
        "alice",
        "s-1",
        M1,
        2,
        &ts(3),
        "create",
        "copy/shared.rs",
    );
    a2["checksum"] = json!(same);
    let mut b2 = ev(
        "acme",
        "bob",
        "s-b",
        M2,
        2,
        &ts(4),
        "create",
        "bob/shared.rs",
    );
    b2["checksum"] = json!(same);
    // Monitor M1 also numbers seq 3 and 5; seq 4 never arrives.
    let a3 = ev("acme", "alice", "s-1", M1, 3, &ts(5), "update", "x");
    let a5 = ev("acme", "alice", "s-1", M1, 5, &ts(6), "update", "y");
    api.ingest(&[a1, b1, a2, b2, a3, a5]);
    let admin = token("acme", "root", Role::Admin);
    let alice = token("acme", "alice", Role::User);

    let (s, r) = api.get(&admin, "/api/v5/files/history?path=src/shared.rs");
    assert_eq!(s, 200, "{r}");
    let who: Vec<&str> = r["records"]
        .as_array()
        .expect("r")
        .iter()
        .map(|t| t["user_id"].as_str().expect("u"))
        .collect();
    assert_eq!(who, ["alice", "bob"]);
    assert_eq!(r["records"][1]["event_type"], "update");
    let (_, r) = api.get(&alice, "/api/v5/files/history?path=src/shared.rs");
    assert_eq!(
        r["records"].as_array().map(Vec::len),
        Some(1),
        "alice sees only her touch: {r}"
    );
    let (_, p1) = api.get(&admin, "/api/v5/files/history?path=src/shared.rs&limit=1");
    let c = p1["next_cursor"].as_str().expect("cursor");
    let (_, p2) = api.get(
        &admin,
        &format!("/api/v5/files/history?path=src/shared.rs&limit=1&cursor={c}"),
    );
    assert_eq!(p2["records"][0]["user_id"], "bob");
    assert_eq!(p2["next_cursor"], Value::Null);

    let (s, r) = api.get(&admin, &format!("/api/v5/files/duplicates?checksum={same}"));
    assert_eq!(s, 200, "{r}");
    // A mistyped checksum is refused, not answered with an empty list.
    for typo in [&same["sha256:".len()..], &same[..same.len() - 1], "xyz"] {
        let (s, r) = api.get(&admin, &format!("/api/v5/files/duplicates?checksum={typo}"));
        assert_eq!(s, 400, "{typo}: {r}");
        assert!(r["message"].as_str().expect("m").contains("sha256:"), "{r}");
    }
    let paths: Vec<&str> = r["paths"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["path"].as_str().expect("p"))
        .collect();
    assert_eq!(paths, ["bob/shared.rs", "copy/shared.rs", "src/shared.rs"]);
    let (_, r) = api.get(&alice, &format!("/api/v5/files/duplicates?checksum={same}"));
    let paths: Vec<&str> = r["paths"]
        .as_array()
        .expect("p")
        .iter()
        .map(|p| p["path"].as_str().expect("p"))
        .collect();
    assert_eq!(paths, ["copy/shared.rs", "src/shared.rs"], "not bob's path");

    let (s, r) = api.get(&admin, &format!("/api/v5/monitors/{M1}/delivery"));
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["received"].as_i64(),
            r["highest_seq"].as_u64(),
            r["missing"].as_i64()
        ),
        (Some(4), Some(5), Some(1))
    );
    assert!((r["ratio"].as_f64().expect("ratio") - 0.8).abs() < 1e-9);
    let (s, _) = api.get(&alice, &format!("/api/v5/monitors/{M1}/delivery"));
    assert_eq!(s, 403);
    let (s, _) = api.get(
        &admin,
        "/api/v5/monitors/0190b5a0-0000-7000-8000-00000000dead/delivery",
    );
    assert_eq!(s, 404);
}

/// `follow=true` streams are bounded per tenant: one over the limit gets
/// 429 while other tenants still stream, and closing a stream frees its slot.
#[test]
fn follow_streams_are_bounded_per_tenant() {
    let api = Api::start(&["--api-max-streams-per-tenant", "2"]);
    let open = |tenant: &str| {
        http()
            .get(api.url("/api/v5/agents/logs?follow=true"))
            .bearer_auth(token(tenant, "ops", Role::Admin))
            .send()
            .expect("request")
    };
    let first = open("acme");
    let second = open("acme");
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open("acme");
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().expect("json");
    assert_eq!(body["error"], "too_many_requests", "{body}");
    let other = open("globex");
    assert_eq!(other.status(), 200, "another tenant is not affected");
    // The metrics count the refusal by route and the streams open now; an
    // unknown path is counted as unmatched.
    let missing = http()
        .get(api.url("/api/v5/nothing-here"))
        .send()
        .expect("request");
    assert_eq!(missing.status(), 404);
    let metrics = api.sink.metrics();
    for line in [
        "fdb_sink_api_requests_total{route=\"/api/v5/agents/logs\",code=\"429\"} 1",
        "fdb_sink_api_requests_total{route=\"unmatched\",code=\"404\"} 1",
        "fdb_sink_api_streams_open 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    drop(first);
    // The server notices the closed stream at its next write (a keep-alive
    // comment at the latest).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let again = open("acme");
        if again.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream's slot was not freed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(second);
}

/// A connection that sends nothing (or stops half way through its request
/// headers) is closed after --api-idle-timeout, and at most
/// --api-max-connections are open at once: silent clients cannot hold the
/// server's connections (and file descriptors) forever.
#[test]
fn idle_connections_are_closed_and_connections_bounded() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let api = Api::start(&["--api-idle-timeout", "2s", "--api-max-connections", "2"]);
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(api.addr()).expect("connect");
            s.write_all(b"GET /api/v5/agents HTTP/1.1\r\nHost: x\r\n")
                .expect("partial request");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s
        })
        .collect();
    // A real request waits for a free connection, then succeeds.
    let started = std::time::Instant::now();
    let (status, body) = api.get(&token("acme", "alice", Role::User), "/api/v5/agents");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(15));
    for mut s in silent {
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .expect("the server closes the idle connection");
        assert_eq!(n, 0, "closed without an answer");
    }
}

/// Duplicates say when the answer is cut short: over 1000 paths, or (role
/// `user`) once the request examined 20 000 index entries checking which
/// paths the caller touched; a user's request never reads more than that.
#[test]
fn duplicates_say_when_the_answer_is_cut_short() {
    let api = Api::start(&[]);
    let same = format!("sha256:{:064x}", 7_777);
    let mut seq = 0;
    let mut line = |user: &str, path: &str| {
        seq += 1;
        let mut e = ev("acme", user, "s-1", M1, seq, &ts(seq), "update", path);
        e["checksum"] = json!(same);
        e
    };
    // One path bob touched 20 001 times, then a path alice touched.
    let busy: Vec<Value> = (0..20_001).map(|_| line("bob", "a/busy.rs")).collect();
    for chunk in busy.chunks(5000) {
        api.ingest(chunk);
    }
    api.ingest(&[line("alice", "b/mine.rs")]);
    let url = format!("/api/v5/files/duplicates?checksum={same}");
    let admin = token("acme", "ops", Role::Admin);
    let alice = token("acme", "alice", Role::User);
    let (s, r) = api.get(&admin, &url);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["paths"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["complete"], true, "{r}");
    let (s, r) = api.get(&alice, &url);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["complete"], false,
        "the budget ran out on bob's path: {r}"
    );
    assert!(r["paths"].as_array().is_some_and(Vec::is_empty), "{r}");
    // Over 1000 paths: the first 1000, marked incomplete.
    let many: Vec<Value> = (0..1001)
        .map(|i| line("ops", &format!("c/{i:04}.rs")))
        .collect();
    api.ingest(&many);
    let (_, r) = api.get(&admin, &url);
    assert_eq!(r["paths"].as_array().map(Vec::len), Some(1000), "{r}");
    assert_eq!(r["complete"], false, "{r}");
}
