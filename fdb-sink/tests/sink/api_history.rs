//! `GET /api/v5/files/history` over real HTTP: what each touch did (the
//! stored record's fields), moves seen from both names, path spellings,
//! exact non-UTF-8 names, filters and pagination, parent directory moves.

use base64::Engine;
use fdb_sink::api::auth::Role;
use fdb_sink::keys::Keys;
use fdb_sink::store::embedded::EmbeddedStore;
use fdb_sink::store::StoreExt;
use serde_json::{json, Value};

use crate::api_harness::{token, ts, Api};

const M: &str = "0190b5a0-0000-7000-8000-0000000000e1";

/// A `file-event/1` line of alice's session `s-1`; `extra` adds or replaces
/// fields.
fn line(seq: u64, secs: u64, event_type: &str, kind: &str, path: &str, extra: Value) -> Value {
    let mut v = json!({
        "schema": "file-event/1",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "monitor_id": M,
        "seq": seq,
        "timestamp": ts(secs),
        "event_type": event_type,
        "kind": kind,
        "path": path,
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": "s-1",
        "metadata": {},
    });
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

fn mv(seq: u64, secs: u64, kind: &str, from: &str, to: &str) -> Value {
    line(seq, secs, "move", kind, to, json!({"from": from, "to": to}))
}

fn history(api: &Api, tok: &str, query: &[(&str, &str)]) -> (u16, Value) {
    crate::api_harness::send(
        crate::api_harness::http()
            .get(api.url("/api/v5/files/history"))
            .bearer_auth(tok)
            .query(query),
    )
}

/// `(event_type, from, to)` of each touch.
fn moves(page: &Value) -> Vec<(String, Value, Value)> {
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|t| {
            (
                t["event_type"].as_str().expect("type").to_owned(),
                t["from"].clone(),
                t["to"].clone(),
            )
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Each touch carries what its record says: kind, move ends, size,
/// checksum, rescan; a renamed-out move differs from a renamed-back one; a
/// file and a directory of the same name differ; an index entry whose record
/// is gone is marked, not an error.
#[test]
fn history_touches_say_what_each_event_did() {
    let sum = format!("sha256:{:064x}", 7);
    let lines = [
        line(
            1,
            1,
            "create",
            "file",
            "x.txt",
            json!({"size": 2, "checksum": sum}),
        ),
        mv(2, 2, "file", "x.txt", "y.txt"),
        mv(3, 3, "file", "y.txt", "x.txt"),
        line(
            4,
            4,
            "update",
            "file",
            "x.txt",
            json!({"size": 9, "rescan": true}),
        ),
        line(5, 5, "create", "file", "thing", json!({})),
        line(6, 6, "delete", "file", "thing", json!({})),
        line(7, 7, "create", "dir", "thing", json!({})),
        line(8, 8, "create", "file", "gone.txt", json!({})),
    ];
    let gone_id = lines[7]["event_id"].as_str().expect("id").to_owned();
    let api = Api::start_prepared(&[], |dir| {
        // A record whose index entry outlived it (as when a record is
        // removed but its index entry is not yet).
        let keys = Keys::default();
        let items: Vec<_> = lines
            .iter()
            .map(|l| fdb_sink::record::validate_line(&keys, l.to_string().as_bytes(), 0))
            .collect();
        let store = EmbeddedStore::open(dir).expect("open");
        fdb_sink::audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let ts_ns = 1_795_651_200_000_000_000 + 8_000_000_000;
        store
            .transact(|t| t.clear(&keys.audit_log("acme", "alice", "s-1", ts_ns, &gone_id)))
            .expect("clear");
    });
    let admin = token("acme", "ops", Role::Admin);

    let (s, x) = history(&api, &admin, &[("path", "x.txt")]);
    assert_eq!(s, 200, "{x}");
    assert_eq!(
        moves(&x),
        [
            ("create".into(), Value::Null, Value::Null),
            ("move".into(), json!("x.txt"), json!("y.txt")),
            ("move".into(), json!("y.txt"), json!("x.txt")),
            ("update".into(), Value::Null, Value::Null),
        ],
        "{x}"
    );
    let r = &x["records"];
    assert_eq!(
        (
            &r[0]["kind"],
            &r[0]["size"],
            &r[0]["checksum"],
            &r[0]["rescan"]
        ),
        (&json!("file"), &json!(2), &json!(sum), &json!(false)),
        "{x}"
    );
    assert_eq!((&r[3]["rescan"], &r[3]["size"]), (&json!(true), &json!(9)));
    // The existing fields are unchanged: `path` is the indexed path.
    for t in r.as_array().expect("records") {
        assert_eq!(t["path"], "x.txt");
        assert_eq!(
            (&t["user_id"], &t["session_id"]),
            (&json!("alice"), &json!("s-1"))
        );
        assert!(t["ts_ns"].as_i64().is_some() && t["event_id"].as_str().is_some());
        assert!(t.get("record_missing").is_none(), "{t}");
    }
    // The same moves from the other name.
    let (_, y) = history(&api, &admin, &[("path", "y.txt")]);
    assert_eq!(
        moves(&y),
        [
            ("move".into(), json!("x.txt"), json!("y.txt")),
            ("move".into(), json!("y.txt"), json!("x.txt")),
        ],
        "{y}"
    );
    // A file, then a directory of the same name.
    let (_, thing) = history(&api, &admin, &[("path", "thing")]);
    let kinds: Vec<&str> = thing["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|t| t["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["file", "file", "dir"], "{thing}");
    // An index entry without its record is shown and marked.
    let (s, gone) = history(&api, &admin, &[("path", "gone.txt")]);
    assert_eq!(s, 200, "{gone}");
    let t = &gone["records"][0];
    assert_eq!(
        (&t["event_type"], &t["record_missing"], &t["event_id"]),
        (&json!("create"), &json!(true), &json!(gone_id)),
        "{gone}"
    );
    assert!(t.get("kind").is_none(), "{gone}");
}

/// Paths spelled otherwise than file events spell them are a 400 naming the
/// right spelling, not an empty history; claims refuse NUL.
#[test]
fn history_refuses_other_spellings_of_a_path() {
    let api = Api::start(&[]);
    api.ingest(&[
        line(1, 1, "create", "file", "x.txt", json!({})),
        line(2, 2, "create", "dir", "src2", json!({})),
        line(3, 3, "create", "file", "a/b", json!({})),
    ]);
    let admin = token("acme", "ops", Role::Admin);
    for (bad, right) in [
        ("/x.txt", "x.txt"),
        ("./x.txt", "x.txt"),
        ("src2/", "src2"),
        ("a//b", "a/b"),
    ] {
        let (s, r) = history(&api, &admin, &[("path", bad)]);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {r}"
        );
        let msg = r["message"].as_str().expect("message");
        assert!(msg.contains(&format!("{right:?}")), "{bad}: {msg}");
        let (s, r) = history(&api, &admin, &[("path", right)]);
        assert_eq!(s, 200, "{r}");
        assert_eq!(
            r["records"].as_array().map(Vec::len),
            Some(1),
            "{right}: {r}"
        );
    }
    for q in [
        vec![("path", "b\0c")],
        vec![],
        vec![("path", "x.txt"), ("path_b64", "eC50eHQ=")],
        vec![("path_b64", "!!")],
        vec![("path_b64", "L3gudHh0")], // "/x.txt"
    ] {
        let (s, r) = history(&api, &admin, &q);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{q:?}: {r}"
        );
    }
    let (s, r) = api.post(
        &token("acme", "alice", Role::User),
        "/api/v5/agents/claims",
        &json!({"session_id": "s-a", "agent_type": "x", "paths": ["b\u{0}c"], "ttl_seconds": 60}),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{r}");
    assert!(r["message"].as_str().unwrap_or("").contains("NUL"), "{r}");
}

/// Two names that differ only in bytes that are not UTF-8 share their
/// readable text; `path_b64=` selects exactly one of them.
#[test]
fn history_path_b64_tells_non_utf8_names_apart() {
    let api = Api::start(&[]);
    let text = "caf\u{fffd}.txt";
    let (e9, e8) = (b64(b"caf\xe9.txt"), b64(b"caf\xe8.txt"));
    let (d, d2) = (b64(b"d\xe9"), b64(b"d\xe9/caf\xe9.txt"));
    api.ingest(&[
        line(1, 1, "create", "file", text, json!({"path_b64": e9})),
        line(2, 2, "create", "file", text, json!({"path_b64": e8})),
        line(3, 3, "update", "file", text, json!({"path_b64": e9})),
        // Moved into a directory that is not UTF-8 either.
        line(
            4,
            4,
            "move",
            "file",
            "d\u{fffd}/caf\u{fffd}.txt",
            json!({"path_b64": d2, "from": text, "from_b64": e9,
                   "to": "d\u{fffd}/caf\u{fffd}.txt", "to_b64": d2}),
        ),
        line(
            5,
            5,
            "move",
            "dir",
            "d\u{fffd}",
            json!({"path_b64": d, "from": "dd", "to": "d\u{fffd}", "to_b64": d}),
        ),
    ]);
    let admin = token("acme", "ops", Role::Admin);
    let ids = |r: &Value| -> Vec<(String, Value)> {
        r["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|t| {
                (
                    t["event_type"].as_str().expect("t").to_owned(),
                    t["path_b64"].clone(),
                )
            })
            .collect()
    };
    let (s, r) = history(&api, &admin, &[("path_b64", &e9)]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        ids(&r),
        [
            ("create".into(), json!(e9)),
            ("update".into(), json!(e9)),
            ("move".into(), json!(e9)),
        ],
        "{r}"
    );
    assert_eq!(r["records"][2]["to_b64"], json!(d2), "{r}");
    let (_, r) = history(&api, &admin, &[("path_b64", &e8)]);
    assert_eq!(ids(&r), [("create".into(), json!(e8))], "{r}");
    // The readable text still answers for every name that reads the same,
    // each touch with its exact bytes.
    let (_, r) = history(&api, &admin, &[("path", text)]);
    assert_eq!(r["records"].as_array().map(Vec::len), Some(4), "{r}");
    // URL-safe and unpadded spellings of the same bytes.
    let (_, r) = history(&api, &admin, &[("path_b64", e9.trim_end_matches('='))]);
    assert_eq!(r["records"].as_array().map(Vec::len), Some(3), "{r}");
    // The new name, with the move of its non-UTF-8 parent directory.
    let (_, r) = history(
        &api,
        &admin,
        &[("path_b64", &d2), ("include_ancestors", "true")],
    );
    assert_eq!(
        moves(&r),
        [
            (
                "move".into(),
                json!(text),
                json!("d\u{fffd}/caf\u{fffd}.txt")
            ),
            ("move".into(), json!("dd"), json!("d\u{fffd}")),
        ],
        "{r}"
    );
}

/// `start`/`end`/`event_type` narrow the history as on the logs routes, and
/// paging through a filtered history yields each match once, in order.
#[test]
fn history_filters_by_time_and_event_type_across_pages() {
    let api = Api::start(&[]);
    let types = ["create", "update", "update", "access", "update", "delete"];
    let mut lines = Vec::new();
    for i in 0..60u64 {
        let ty = types[(i % 6) as usize];
        lines.push(line(i + 1, 10 + i, ty, "file", "f.txt", json!({})));
    }
    // Another path, and bob's touches of the same path.
    lines.push(line(61, 20, "update", "file", "g.txt", json!({})));
    let mut bob = line(
        1,
        21,
        "update",
        "file",
        "f.txt",
        json!({"user_id": "bob", "session_id": "s-b"}),
    );
    bob["monitor_id"] = json!("0190b5a0-0000-7000-8000-0000000000e2");
    lines.push(bob);
    api.ingest(&lines);
    let admin = token("acme", "ops", Role::Admin);
    let alice = token("acme", "alice", Role::User);

    let walk = |tok: &str, base: &[(&str, &str)], limit: &str| -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = base.to_vec();
            q.push(("limit", limit));
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let (s, r) = history(&api, tok, &q);
            assert_eq!(s, 200, "{q:?}: {r}");
            out.extend(r["records"].as_array().expect("records").iter().cloned());
            match r["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    };
    // [ts(20), ts(40)): seq 11..=30 of alice plus bob's at 21.
    let start = ts(20);
    let end = ts(40);
    let ranged = walk(
        &admin,
        &[("path", "f.txt"), ("start", &start), ("end", &end)],
        "3",
    );
    assert_eq!(ranged.len(), 21, "{ranged:?}");
    assert_eq!(ranged[0]["timestamp"], json!(ts(20)));
    assert!(ranged
        .iter()
        .all(|t| t["timestamp"].as_str().expect("t") < end.as_str()));
    let mut sorted = ranged.clone();
    sorted.sort_by_key(|t| t["ts_ns"].as_i64());
    assert_eq!(sorted, ranged);
    // update,delete over the whole history, paged by 4.
    let typed = walk(
        &admin,
        &[("path", "f.txt"), ("event_type", "update,delete")],
        "4",
    );
    assert_eq!(typed.len(), 41, "40 of alice and bob's update");
    assert!(typed
        .iter()
        .all(|t| matches!(t["event_type"].as_str(), Some("update" | "delete"))));
    // Both, for a user token: only alice's own.
    let both = walk(
        &alice,
        &[
            ("path", "f.txt"),
            ("start", &start),
            ("end", &end),
            ("event_type", "delete"),
        ],
        "1",
    );
    let times: Vec<&str> = both
        .iter()
        .map(|t| t["timestamp"].as_str().expect("t"))
        .collect();
    assert_eq!(times, [ts(21), ts(27), ts(33), ts(39)]);
    for bad in [
        vec![("path", "f.txt"), ("start", "yesterday")],
        vec![("path", "f.txt"), ("event_type", "rename")],
        vec![
            ("path", "f.txt"),
            ("start", "2026-11-27T00:00:00Z"),
            ("end", "2026-11-26T00:00:00Z"),
        ],
    ] {
        let (s, r) = history(&api, &admin, &bad);
        assert_eq!(
            (s, r["error"].as_str()),
            (400, Some("bad_request")),
            "{bad:?}: {r}"
        );
    }
}

/// A directory move is one `move` of the directory: the files inside show it
/// only with `include_ancestors=true`, merged by time, across pages.
#[test]
fn history_include_ancestors_shows_directory_moves() {
    let api = Api::start(&[]);
    api.ingest(&[
        line(1, 1, "create", "dir", "src", json!({})),
        line(2, 2, "create", "file", "src/lib.rs", json!({})),
        mv(3, 3, "dir", "src", "src2"),
        line(4, 4, "update", "file", "src2/lib.rs", json!({})),
        mv(5, 5, "dir", "src2", "src3"),
        line(6, 6, "update", "dir", "src3", json!({})),
        line(7, 7, "update", "file", "src3/lib.rs", json!({})),
    ]);
    let admin = token("acme", "ops", Role::Admin);
    let (_, plain) = history(&api, &admin, &[("path", "src/lib.rs")]);
    assert_eq!(moves(&plain), [("create".into(), Value::Null, Value::Null)]);
    let (_, r) = history(
        &api,
        &admin,
        &[("path", "src/lib.rs"), ("include_ancestors", "true")],
    );
    assert_eq!(
        moves(&r),
        [
            ("create".into(), Value::Null, Value::Null),
            ("move".into(), json!("src"), json!("src2")),
        ],
        "{r}"
    );
    assert_eq!(r["records"][1]["path"], "src", "{r}");
    assert_eq!(r["records"][1]["kind"], "dir", "{r}");
    // Paged one by one: the directory's moves (not its other touches) and
    // the file's own, in time order.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![
            ("path", "src2/lib.rs"),
            ("include_ancestors", "true"),
            ("limit", "1"),
        ];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let (s, page) = history(&api, &admin, &q);
        assert_eq!(s, 200, "{page}");
        got.extend(moves(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        got,
        [
            ("move".into(), json!("src"), json!("src2")),
            ("update".into(), Value::Null, Value::Null),
            ("move".into(), json!("src2"), json!("src3")),
        ]
    );
    // A cursor of this query is not one of the query without ancestors.
    let (_, p) = history(
        &api,
        &admin,
        &[
            ("path", "src2/lib.rs"),
            ("include_ancestors", "true"),
            ("limit", "1"),
        ],
    );
    let c = p["next_cursor"].as_str().expect("cursor");
    let (s, r) = history(&api, &admin, &[("path", "src2/lib.rs"), ("cursor", c)]);
    assert_eq!((s, r["error"].as_str()), (400, Some("bad_cursor")), "{r}");
}

/// `(event_type, path)` of each touch.
fn touched(page: &Value) -> Vec<(String, String)> {
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|t| {
            (
                t["event_type"].as_str().expect("type").to_owned(),
                t["path"].as_str().expect("path").to_owned(),
            )
        })
        .collect()
}

/// A directory that leaves the workspace is one `delete` of the directory:
/// with `include_ancestors=true` the history of a file inside it ends with
/// that delete (under the directory's path), and a later return of the file
/// is its own `create`, across pages and for each caller's own touches.
#[test]
fn history_include_ancestors_shows_when_a_directory_took_the_file_away() {
    let api = Api::start(&[]);
    let bob = |mut v: Value| {
        v["user_id"] = json!("bob");
        v["session_id"] = json!("s-b");
        v["monitor_id"] = json!("0190b5a0-0000-7000-8000-0000000000e2");
        v
    };
    api.ingest(&[
        // mkdir -p pkg/sub; echo a > pkg/sub/x.txt; mv pkg ../outside
        line(1, 1, "create", "dir", "pkg", json!({})),
        line(2, 2, "create", "dir", "pkg/sub", json!({})),
        line(3, 3, "create", "file", "pkg/sub/x.txt", json!({"size": 2})),
        line(4, 4, "delete", "dir", "pkg", json!({})),
        // Names that are not ancestors: a sibling, a longer name, a child.
        line(5, 5, "delete", "dir", "pkg2", json!({})),
        line(6, 6, "delete", "file", "pk", json!({})),
        line(7, 7, "delete", "dir", "pkg/sub/x.txt.d", json!({})),
        // mkdir pkg: the directory is back, the file is not.
        line(8, 8, "create", "dir", "pkg", json!({})),
        // mv ../outside/sub pkg/sub: moved in, one create per entry.
        line(9, 9, "create", "dir", "pkg/sub", json!({})),
        line(
            10,
            10,
            "create",
            "file",
            "pkg/sub/x.txt",
            json!({"size": 2}),
        ),
        // Bob removes the tree; the kernel reports one directory delete.
        bob(line(1, 11, "delete", "dir", "pkg/sub", json!({}))),
    ]);
    let admin = token("acme", "ops", Role::Admin);
    let q = [("path", "pkg/sub/x.txt"), ("include_ancestors", "true")];
    let (s, r) = history(&api, &admin, &q);
    assert_eq!(s, 200, "{r}");
    let want: Vec<(String, String)> = [
        ("create", "pkg/sub/x.txt"),
        ("delete", "pkg"),
        ("create", "pkg/sub/x.txt"),
        ("delete", "pkg/sub"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(touched(&r), want, "{r}");
    let t = &r["records"][1];
    assert_eq!(
        (&t["kind"], &t["timestamp"], &t["user_id"]),
        (&json!("dir"), &json!(ts(4)), &json!("alice")),
        "{r}"
    );
    assert_eq!(r["records"][3]["user_id"], "bob", "{r}");
    // Without ancestors, only the file's own touches: no end.
    let (_, plain) = history(&api, &admin, &[("path", "pkg/sub/x.txt")]);
    assert_eq!(touched(&plain), [want[0].clone(), want[2].clone()]);
    // Paged one by one: the same touches, each once, in order.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_q = q.to_vec();
        page_q.push(("limit", "1"));
        if let Some(c) = &cursor {
            page_q.push(("cursor", c));
        }
        let (s, page) = history(&api, &admin, &page_q);
        assert_eq!(s, 200, "{page}");
        got.extend(touched(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(got, want);
    // The event_type filter applies to the ancestors' touches too.
    let mut deletes = q.to_vec();
    deletes.push(("event_type", "delete"));
    let (_, d) = history(&api, &admin, &deletes);
    assert_eq!(touched(&d), [want[1].clone(), want[3].clone()], "{d}");
    // A user sees only its own touches, the ancestors' ones included.
    let (_, mine) = history(&api, &token("acme", "alice", Role::User), &q);
    assert_eq!(touched(&mine), want[..3], "{mine}");
    let (_, his) = history(&api, &token("acme", "bob", Role::User), &q);
    assert_eq!(touched(&his), want[3..], "{his}");
}
