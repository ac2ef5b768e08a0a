use super::*;

fn line(over: serde_json::Value) -> String {
    let mut base = serde_json::json!({
        "schema": "file-event/1",
        "event_id": "019abcde-0000-7000-8000-000000000001",
        "monitor_id": "6f1c2a3e-1111-4222-8333-444455556666",
        "seq": 1,
        "timestamp": "2026-11-26T18:00:00.000000001Z",
        "event_type": "create",
        "kind": "file",
        "path": "test.txt",
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": "s-1",
        "metadata": {}
    });
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base.to_string()
}

/// When the lines of these tests are received: 2026-11-27T00:00:00Z.
const RECEIVED: i64 = 1_795_737_600_000_000_000;

fn check(l: &str) -> Item {
    validate_line(&Keys::default(), l.as_bytes(), RECEIVED)
}

fn reason_of(l: &str) -> String {
    match check(l) {
        Item::DeadLetter(d) => d.reason,
        Item::Record(r) => panic!("expected a dead letter, got record {}", r.event_id),
    }
}

#[test]
fn a_valid_line_becomes_a_record_with_kubernetes_fields() {
    let l = line(serde_json::json!({
        "namespace": "ide", "pod_name": "ws-1", "cluster_name": "eu1",
        "node_name": "n1", "container_name": "monitor", "pod_uid": "u-1",
        "host": "vm", "source_type": "kubernetes_logs"
    }));
    let Item::Record(r) = check(&l) else {
        panic!("rejected")
    };
    assert_eq!(
        (r.tenant.as_str(), r.user.as_str(), r.session.as_str()),
        ("acme", "alice", "s-1")
    );
    assert_eq!(r.ts_ns, 1_795_716_000_000_000_001);
    let rec = AuditRecord::from_json(&r.value).expect("stored value decodes");
    assert_eq!(rec.k8s.namespace.as_deref(), Some("ide"));
    assert_eq!(rec.k8s.pod_uid.as_deref(), Some("u-1"));
    assert!(!rec.metadata_truncated);
    // The stored record is itself a valid ingest line (export → import).
    let again = validate_line(&Keys::default(), &r.value, 0);
    let Item::Record(r2) = again else {
        panic!("stored record is not re-importable")
    };
    assert_eq!(r2.value, r.value);
}

#[test]
fn ids_follow_the_documented_alphabet() {
    for ok in [
        "a",
        "acme-corp_1.x:y@z",
        &"x".repeat(128),
        "019abcde-0000-7000-8000-000000000001",
    ] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in ["", "a b", "a/b", "é", &"x".repeat(129), "a\0"] {
        assert!(!valid_id(bad), "{bad:?}");
    }
    assert_eq!(
        reason_of(&line(serde_json::json!({"tenant_id": "a/b"}))),
        reason::BAD_ID
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"user_id": "x".repeat(129)}))),
        reason::BAD_ID
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"session_id": null}))),
        reason::MISSING_ATTRIBUTION
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"event_id": "nope"}))),
        reason::BAD_ID
    );
}

#[test]
fn each_failure_has_its_reason() {
    assert_eq!(reason_of("not json"), reason::INVALID_JSON);
    assert_eq!(reason_of("[1,2]"), reason::INVALID_JSON);
    let bad_utf8 = validate_line(&Keys::default(), b"{\"a\":\"\xff\"}", 0);
    assert!(matches!(bad_utf8, Item::DeadLetter(d) if d.reason == reason::INVALID_UTF8));
    assert_eq!(
        reason_of(&line(serde_json::json!({"schema": "file-event/2"}))),
        reason::SCHEMA
    );
    assert_eq!(reason_of(r#"{"hello":"world"}"#), reason::SCHEMA);
    assert_eq!(
        reason_of(&line(serde_json::json!({"event_type": "explode"}))),
        reason::UNKNOWN_EVENT_TYPE
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"timestamp": "yesterday"}))),
        reason::BAD_TIMESTAMP
    );
    assert_eq!(
        reason_of(&line(
            serde_json::json!({"timestamp": "1960-01-01T00:00:00Z"})
        )),
        reason::TIMESTAMP_RANGE
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"path": null}))),
        reason::MISSING_FIELD
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"seq": 0}))),
        reason::BAD_FIELD
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"event_type": "move"}))),
        reason::BAD_FIELD,
        "a move without from/to"
    );
    assert_eq!(
        reason_of(&line(serde_json::json!({"path": "p".repeat(20_000)}))),
        reason::KEY_TOO_LARGE
    );
}

#[test]
fn lines_the_collector_marked_are_dead_lettered_with_its_reason_and_time() {
    // What the VRL produces for a line that is not JSON (see the Vector fixtures).
    let l = r#"{"dead_letter":true,"host":"vm","message":"not a json line at all","reason":"unable to parse json","source_type":"stdin","timestamp":"2026-11-26T18:23:12.852501709Z"}"#;
    let Item::DeadLetter(d) = check(l) else {
        panic!("accepted")
    };
    assert_eq!(d.reason, reason::UPSTREAM);
    assert_eq!(d.detail, "unable to parse json");
    assert_eq!(d.raw, l);
    assert_eq!(
        d.ts_ns, 1_795_717_392_852_501_709,
        "keyed by the collector's timestamp"
    );
    // A redelivery lands on the same key.
    let Item::DeadLetter(d2) = validate_line(&Keys::default(), l.as_bytes(), RECEIVED + 99) else {
        panic!("accepted")
    };
    assert_eq!((d.ts_ns, &d.id), (d2.ts_ns, &d2.id));
    // Without a timestamp, the receipt time is used.
    assert!(matches!(check("garbage"), Item::DeadLetter(d) if d.ts_ns == RECEIVED));
    // A timestamp of its own more than a day ahead is not its key: the
    // dead letter would outlive retention.
    let ahead = l.replace("2026-11-26T18:23:12.852501709Z", "2199-01-01T00:00:00Z");
    assert!(matches!(check(&ahead), Item::DeadLetter(d) if d.ts_ns == RECEIVED));
    let day_ahead = l.replace("2026-11-26T18:23:12.852501709Z", "2026-11-27T23:00:00Z");
    assert!(
        matches!(check(&day_ahead), Item::DeadLetter(d) if d.ts_ns == RECEIVED + 23 * 3_600_000_000_000)
    );
}

#[test]
fn oversize_metadata_is_truncated_and_flagged_never_dropped() {
    let l = line(serde_json::json!({"metadata": {
        "small": "kept",
        "huge": "x".repeat(150_000),
    }}));
    let Item::Record(r) = check(&l) else {
        panic!("an oversize record must be stored")
    };
    assert!(r.metadata_truncated);
    assert!(r.value.len() <= MAX_VALUE_BYTES);
    let rec = AuditRecord::from_json(&r.value).expect("decodes");
    assert!(rec.metadata_truncated);
    assert_eq!(
        rec.event.metadata.get("small"),
        Some(&serde_json::json!("kept"))
    );
    assert!(!rec.event.metadata.contains_key("huge"));
}

/// 20,000 metadata entries (700 kB): the entries to remove are chosen in
/// one pass (removing and re-encoding them one at a time took minutes).
#[test]
fn metadata_of_many_entries_is_cut_in_one_pass() {
    let meta: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| {
            (
                format!("k{i:06}"),
                serde_json::json!("v".repeat(20 + i % 7)),
            )
        })
        .collect();
    let l = line(serde_json::json!({ "metadata": meta }));
    let started = std::time::Instant::now();
    let Item::Record(r) = check(&l) else {
        panic!("an oversize record must be stored")
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(r.metadata_truncated && r.value.len() <= MAX_VALUE_BYTES);
    assert!(
        r.value.len() > MAX_VALUE_BYTES - 100,
        "only what is needed is removed: {}",
        r.value.len()
    );
    let rec = AuditRecord::from_json(&r.value).expect("decodes");
    let longest_kept = rec
        .event
        .metadata
        .values()
        .map(|v| v.to_string().len())
        .max();
    assert!(longest_kept < Some(27), "the largest entries go first");
}

#[test]
fn oversize_dead_letters_are_cut_to_fit() {
    let raw = format!("not json {}", "\u{1}".repeat(200_000));
    let Item::DeadLetter(d) = check(&raw) else {
        panic!("accepted")
    };
    assert!(d.raw_truncated);
    assert_eq!(d.raw_len, raw.len());
    assert!(d.to_json().len() <= MAX_VALUE_BYTES);
}

#[test]
fn moves_index_both_ends() {
    let l = line(
        serde_json::json!({"event_type": "move", "from": "a.txt", "to": "b.txt", "path": "b.txt"}),
    );
    let Item::Record(r) = check(&l) else {
        panic!("rejected")
    };
    assert_eq!(r.paths, vec!["b.txt".to_string(), "a.txt".to_string()]);
    assert_eq!(r.event_type, "move");
}

#[test]
fn one_pass_reads_valid_lines_as_the_three_passes_do() {
    let valid = [
        line(serde_json::json!({})),
        line(serde_json::json!({
            "event_type": "move", "from": "a.txt", "to": "test.txt", "size": 3,
            "checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "metadata": {"team": "core", "n": 1},
            "rescan": true, "namespace": "ns", "pod_name": "p", "node_name": "n",
            "cluster_name": "c", "container_name": "m", "pod_uid": "u",
            "dead_letter": false, "reason": 7, "extra": [1, 2]
        })),
        line(serde_json::json!({"path": "caf\u{e9}", "path_b64": "Y2Fm6Q==", "dead_letter": null})),
    ];
    for l in &valid {
        let one = line::parse(l).expect("one pass accepts it");
        let three = parse_in_passes(l).expect("three passes accept it");
        assert_eq!(one, three, "{l}");
    }
    // Every line the three passes reject, or that the collector marked, is
    // left to them, so that they give the reason.
    let left = [
        line(serde_json::json!({"dead_letter": true, "reason": "vrl"})),
        line(serde_json::json!({"seq": 0})),
        line(serde_json::json!({"event_type": "move"})),
        line(serde_json::json!({"pod_name": 5})),
        line(serde_json::json!({"timestamp": "yesterday"})),
        line(serde_json::json!({"schema": "file-event/2"})),
        line(serde_json::json!({})).replacen('{', r#"{"reason":1,"reason":2,"#, 1),
        line(serde_json::json!({})).replacen('{', r#"{"pod_name":"a","pod_name":"b","#, 1),
    ];
    for l in &left {
        assert!(line::parse(l).is_none(), "{l}");
    }
}

#[test]
fn a_field_given_twice_is_a_bad_field_whichever_it_is() {
    for (field, value) in [
        ("timestamp", "\"2026-11-26T18:00:00Z\""),
        ("tenant_id", "\"evil\""),
        ("path", "\"other.txt\""),
        ("namespace", "\"b\""),
    ] {
        let mut l = line(serde_json::json!({"namespace": "a"}));
        l.pop();
        l.push_str(&format!(",\"{field}\":{value}}}"));
        let Item::DeadLetter(d) = check(&l) else {
            panic!("{field} twice was accepted: {l}")
        };
        assert_eq!(d.reason, reason::BAD_FIELD, "{field}: {}", d.detail);
        assert!(d.detail.contains("duplicate field"), "{}", d.detail);
    }
}

#[test]
fn a_line_that_is_not_utf8_keeps_its_exact_bytes() {
    let mut raw = b"{\"path\":\"caf".to_vec();
    raw.extend_from_slice(&[0xe9, b'"', b'}', 0x00, 0xff]);
    let Item::DeadLetter(d) = validate_line(&Keys::default(), &raw, 1_000) else {
        panic!("accepted")
    };
    assert_eq!(d.reason, reason::INVALID_UTF8);
    assert_eq!(d.raw_bytes().as_deref(), Some(&raw[..]));
    assert!(!d.raw_truncated);
    assert!(d.raw.starts_with("{\"path\":\"caf\u{fffd}"), "{}", d.raw);
    // Stored and read back, the bytes are the same.
    let back: DeadLetter = serde_json::from_slice(&d.to_json()).expect("decodes");
    assert_eq!(back.raw_bytes().as_deref(), Some(&raw[..]));
    // A long one keeps its first bytes exactly, within the value limit.
    let mut long = vec![0xff];
    long.extend(std::iter::repeat_n(b'\x01', 300_000));
    let Item::DeadLetter(d) = validate_line(&Keys::default(), &long, 1_000) else {
        panic!("accepted")
    };
    assert!(d.raw_truncated && d.to_json().len() <= MAX_VALUE_BYTES);
    assert_eq!(d.raw_bytes().as_deref(), Some(&long[..MAX_B64_RAW_BYTES]));
}

#[test]
fn a_marked_line_with_the_bytes_of_its_message_keeps_them_within_the_value_limit() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // The worst case the collector sends: 64 KiB of invalid bytes, each
    // written as a three-byte U+FFFD in `message`, and a long reason.
    let bytes = vec![0xffu8; 65_536];
    let l = serde_json::json!({
        "dead_letter": true,
        "reason": format!("invalid_json: {}", "x".repeat(5_000)),
        "message": String::from_utf8_lossy(&bytes),
        "message_b64": b64(&bytes),
        "message_bytes": 1_000_000,
        "message_truncated": true,
        "pod_name": "ws-1",
        "timestamp": "2026-11-26T18:23:12Z",
    })
    .to_string();
    let Item::DeadLetter(d) = check(&l) else {
        panic!("accepted")
    };
    assert_eq!(d.reason, reason::UPSTREAM);
    assert!(
        d.to_json().len() <= MAX_VALUE_BYTES,
        "{}",
        d.to_json().len()
    );
    assert!(
        d.raw_bytes().as_deref() == Some(&bytes[..MAX_B64_RAW_BYTES]),
        "the stored bytes are not the first {MAX_B64_RAW_BYTES} of the line"
    );
    assert_eq!((d.raw_len, d.raw_truncated), (1_000_000, true));
    assert!(d.raw.starts_with('{') && d.raw.contains("\"pod_name\":\"ws-1\""));
    assert!(d.detail.len() <= 2_000, "{}", d.detail.len());
    assert!(
        d.detail
            .ends_with("only the first 60000 of the 65536 bytes in message_b64 are kept"),
        "{}",
        d.detail
    );
    // The same line without the copy is stored as received.
    let mut plain: serde_json::Value = serde_json::from_str(&l).expect("json");
    plain.as_object_mut().map(|o| o.remove("message_b64"));
    let Item::DeadLetter(d) = check(&plain.to_string()) else {
        panic!("accepted")
    };
    assert!(d.raw_b64.is_none() && d.raw.starts_with("{\"dead_letter\":true"));
}

/// A line whose text is mostly quotes (each escaped twice in the stored
/// value) keeps as much of the collector's record as fits, its pod with it.
#[test]
fn a_marked_line_of_quotes_keeps_the_pod_in_its_reading_aid() {
    use base64::Engine as _;
    let mut bytes = b"\"k\":\"v\",".repeat(8_192);
    bytes[10] = 0xff;
    let l = serde_json::json!({
        "dead_letter": true,
        "reason": "invalid_json: invalid unicode code point at line 1 column 3",
        "message": String::from_utf8_lossy(&bytes),
        "message_b64": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "pod_name": "user-workspace-alice",
        "timestamp": "2026-11-26T18:23:12Z",
    })
    .to_string();
    let Item::DeadLetter(d) = check(&l) else {
        panic!("accepted")
    };
    let value = d.to_json().len();
    assert!(value <= MAX_VALUE_BYTES, "{value}");
    assert!(
        d.raw.contains("\"pod_name\":\"user-workspace-alice\""),
        "raw has {} bytes, the value {value}",
        d.raw.len()
    );
    assert!(
        value > MAX_VALUE_BYTES - 1_000,
        "{value}: the aid is cut short"
    );
    assert_eq!((d.raw_len, d.raw_truncated), (bytes.len(), true));
    // A size the collector gives without saying it cut the line is not taken.
    let mut claimed: serde_json::Value = serde_json::from_str(&l).expect("json");
    claimed["message_bytes"] = u64::MAX.into();
    let Item::DeadLetter(d) = check(&claimed.to_string()) else {
        panic!("accepted")
    };
    assert_eq!(d.raw_len, bytes.len());
}

#[test]
fn paths_moves_and_seq_the_monitor_cannot_write_are_bad_fields() {
    let max = file_event::MAX_SEQ;
    let cases = [
        serde_json::json!({"path": "/etc/passwd"}),
        serde_json::json!({"path": "../../x"}),
        serde_json::json!({"path": ""}),
        serde_json::json!({"path": "nul\u{0}in"}),
        serde_json::json!({"path": "x", "path_b64": "L2V0Yy9wYXNzd2Q="}),
        serde_json::json!({"event_type": "move", "from": "a", "to": "b", "path": "c"}),
        serde_json::json!({"event_type": "move", "from": "..", "to": "b", "path": "b"}),
        serde_json::json!({"seq": max + 1}),
        serde_json::json!({"seq": u64::MAX}),
        serde_json::json!({"checksum": "sha256:abc"}),
        serde_json::json!({"checksum": "md5:0123456789abcdef0123456789abcdef"}),
        serde_json::json!({"checksum": format!("sha256:{}", "A".repeat(64))}),
        serde_json::json!({"checksum": ""}),
    ];
    for over in cases {
        let l = line(over);
        assert_eq!(reason_of(&l), reason::BAD_FIELD, "{l}");
    }
    assert!(matches!(
        check(&line(serde_json::json!({"seq": max}))),
        Item::Record(_)
    ));
}
