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

#[test]
fn reads_like_a_derived_implementation() {
    let base = fixed(EventType::Create, b"x").to_json();
    let cases = [
        (base.replace("\"seq\":7,", ""), "missing field `seq`"),
        (
            base.replace("\"seq\":7,", "\"seq\":7,\"seq\":8,"),
            "duplicate field `seq`",
        ),
        (
            base.replace(
                "\"user_id\":\"alice\"",
                "\"user_id\":\"a\",\"user_id\":null",
            ),
            "duplicate field `user_id`",
        ),
        (
            base.replace("\"metadata\":{}", "\"metadata\":null"),
            "invalid type: null",
        ),
    ];
    for (line, want) in cases {
        let err = FileEvent::from_json(&line).expect_err(&line).to_string();
        assert!(err.contains(want), "{line}: {err} lacks {want}");
    }
    // Optional fields may be null or absent; unknown fields are skipped.
    let relaxed = base
        .replace("\"user_id\":\"alice\"", "\"user_id\":null")
        .replace(
            "\"metadata\":{}",
            "\"pod_name\":\"ws-0\",\"x\":[1,{\"y\":2}]",
        );
    let ev = FileEvent::from_json(&relaxed).expect("relaxed");
    assert_eq!(ev.user_id, None);
    assert!(ev.metadata.is_empty());
    assert_eq!(ev.tenant_id.as_deref(), Some("acme"));
}

#[test]
fn extra_fields_are_read_in_the_same_pass() {
    #[derive(Default, Debug, PartialEq)]
    struct Pod {
        pod_name: Option<String>,
        skipped: usize,
    }
    impl<'de> ExtraFields<'de> for Pod {
        fn field<A: serde::de::MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<bool, A::Error> {
            if key == "pod_name" {
                self.pod_name = map.next_value()?;
                return Ok(true);
            }
            self.skipped += 1;
            Ok(false)
        }
    }
    let ev = fixed(EventType::Create, b"src/a.rs");
    let line = ev
        .to_json()
        .replacen('{', "{\"pod_name\":\"ws-0\",\"cluster\\u0041\":1,", 1);
    let got: WithExtra<Pod> = serde_json::from_str(&line).expect("with extra");
    assert_eq!(got.event, ev);
    assert_eq!(
        got.extra,
        Pod {
            pod_name: Some("ws-0".into()),
            skipped: 1
        }
    );
}

#[test]
fn ids_are_1_to_128_chars_of_a_small_alphabet() {
    for ok in [
        "a",
        "alice@example.com",
        "ns:pod-1_x.y",
        &"x".repeat(MAX_ID_LEN),
    ] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in [
        "",
        "s 1",
        "alice+ci@example.com",
        "é",
        "a/b",
        &"x".repeat(MAX_ID_LEN + 1),
    ] {
        assert!(!valid_id(bad), "{bad:?}");
    }
}
