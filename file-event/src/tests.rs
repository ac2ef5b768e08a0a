use super::*;

fn fixed(event_type: EventType, path: &[u8]) -> FileEvent {
    let monitor = Uuid::parse_str("6f1c2a3e-1111-4222-8333-444455556666").expect("uuid");
    let mut ev = FileEvent::new(
        monitor,
        7,
        event_type,
        Kind::File,
        EncodedPath::from_bytes(path),
    );
    ev.event_id = Uuid::parse_str("019abcde-0000-7000-8000-000000000007").expect("uuid");
    ev.timestamp = Timestamp::parse("2026-11-26T18:00:00.000000001Z").expect("ts");
    ev.tenant_id = Some("acme".into());
    ev.user_id = Some("alice".into());
    ev.session_id = Some("s-1".into());
    ev
}

#[test]
fn create_line_is_pinned() {
    let mut ev = fixed(EventType::Create, b"src/main.rs");
    ev.size = Some(12);
    ev.checksum = Some("sha256:ab".into());
    ev.metadata.insert("pod".into(), "ws-0".into());
    insta::assert_snapshot!("create", ev.to_json());
}

#[test]
fn move_line_is_pinned() {
    let mut ev = fixed(EventType::Move, b"b.txt");
    ev.from = Some("a.txt".into());
    ev.to = Some("b.txt".into());
    ev.rescan = true;
    insta::assert_snapshot!("move_rescan", ev.to_json());
}

#[test]
fn non_utf8_path_is_lossless() {
    let raw = b"caf\xe9.txt";
    let ev = fixed(EventType::Delete, raw);
    insta::assert_snapshot!("non_utf8", ev.to_json());
    let back = FileEvent::from_json(&ev.to_json()).expect("parses");
    assert_eq!(back.path_bytes(), raw.to_vec());
    assert_eq!(back.path, "caf\u{fffd}.txt");
}

#[test]
fn round_trips_the_shared_fixture() {
    let line = r#"{"schema":"file-event/1","event_id":"019abcde-0000-7000-8000-000000000001","monitor_id":"6f1c2a3e-1111-4222-8333-444455556666","seq":1,"timestamp":"2026-11-26T18:00:00.000000001Z","event_type":"create","kind":"file","path":"test.txt","size":5,"tenant_id":"acme","user_id":"alice","session_id":"s-1","metadata":{}}"#;
    let ev = FileEvent::from_json(line).expect("valid");
    assert_eq!(ev.to_json(), line);
}

#[test]
fn timestamps_are_normalised_to_utc_nanos() {
    let t = Timestamp::parse("2026-11-26T19:00:00.5+01:00").expect("ts");
    assert_eq!(t.to_string(), "2026-11-26T18:00:00.500000000Z");
}

#[test]
fn rejects_with_reasons() {
    let base = fixed(EventType::Create, b"x").to_json();
    let cases = [
        (base.replace("file-event/1", "file-event/2"), "schema"),
        (base.replace("\"create\"", "\"chmod\""), "unknown variant"),
        (
            base.replace("2026-11-26T18:00:00.000000001Z", "yesterday"),
            "not RFC 3339",
        ),
        (
            base.replace("\"seq\":7", "\"seq\":0"),
            "seq must start at 1",
        ),
        (base.replace("\"seq\":7", "\"seq\":\"7\""), "invalid type"),
        (base.replace("\"create\"", "\"move\""), "needs both"),
        ("[1,2]".to_owned(), "not a file-event/1"),
    ];
    for (line, want) in cases {
        let err = FileEvent::from_json(&line).expect_err(&line).to_string();
        assert!(err.contains(want), "{line}: {err} lacks {want}");
    }
}
