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

#[test]
fn paths_follow_one_rule() {
    for ok in [
        &b"x.txt"[..],
        b"src/a.rs",
        b"a b/c",
        b".hidden/..x",
        b"...",
        b"caf\xe9.txt",
    ] {
        assert_eq!(check_path(ok), Ok(()), "{ok:?}");
    }
    for (bad, why) in [
        (&b""[..], PathError::Empty),
        (b"/etc/passwd", PathError::Absolute),
        (b"/", PathError::Absolute),
        (b"nul\0in", PathError::Nul),
        (b"a//b", PathError::EmptySegment),
        (b"a/", PathError::EmptySegment),
        (b".", PathError::Dot),
        (b"./a", PathError::Dot),
        (b"a/./b", PathError::Dot),
        (b"..", PathError::DotDot),
        (b"../../x", PathError::DotDot),
        (b"a/..", PathError::DotDot),
    ] {
        assert_eq!(check_path(bad), Err(why), "{bad:?}");
    }
}

#[test]
fn every_path_field_is_checked() {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut create = fixed(EventType::Create, b"x");
    create.path = "../x".into();
    let mut create_b64 = fixed(EventType::Create, b"caf\xe9");
    create_b64.path_b64 = Some(b64(b"/caf\xe9"));
    let mv = |from: &[u8], to: &[u8]| {
        let mut ev = fixed(EventType::Move, to);
        let (f, t) = (EncodedPath::from_bytes(from), EncodedPath::from_bytes(to));
        (ev.from, ev.from_b64, ev.to, ev.to_b64) = (Some(f.text), f.b64, Some(t.text), t.b64);
        ev
    };
    let mut from_b64 = mv(b"a\xe9", b"b");
    from_b64.from_b64 = Some(b64(b"a\xe9/./b"));
    let cases = [
        (create, "`path` \"../x\" has a `..` segment"),
        (create_b64, "`path_b64` \"/caf\u{fffd}\" starts with `/`"),
        (mv(b"", b"b"), "`from` \"\" is empty"),
        (from_b64, "`from_b64` \"a\u{fffd}/./b\" has a `.` segment"),
        (mv(b"a", b"b/"), "`path` \"b/\" has an empty segment"),
    ];
    for (ev, want) in cases {
        let err = ev.check().expect_err(want).to_string();
        assert!(err.starts_with(want), "{err} does not start with {want}");
        assert!(err.contains("relative to the monitored root"), "{err}");
        let line = ev.to_json();
        let err = FileEvent::from_json(&line).expect_err(&line).to_string();
        assert!(err.starts_with(want), "{err}");
    }
    let mut to = mv(b"a", b"b");
    to.to = Some("b\0".into());
    let err = to.check().expect_err("NUL").to_string();
    assert!(err.starts_with("`to` \"b\\0\" contains NUL"), "{err}");
    let long = fixed(
        EventType::Create,
        format!("/{}", "é".repeat(500)).as_bytes(),
    );
    let err = long.check().expect_err("absolute").to_string();
    assert!(err.len() < 600, "a long path is cut short: {err}");
    assert!(err.contains('…'), "{err}");
}

#[test]
fn a_moves_path_is_its_destination() {
    let mut ev = fixed(EventType::Move, b"b.txt");
    ev.from = Some("a.txt".into());
    ev.to = Some("b.txt".into());
    assert!(ev.check().is_ok());
    let mut other = ev.clone();
    other.to = Some("c.txt".into());
    let mut exact = fixed(EventType::Move, b"caf\xe9");
    exact.from = Some("a.txt".into());
    exact.to = Some(exact.path.clone());
    exact.to_b64 = exact.path_b64.clone();
    assert!(exact.check().is_ok());
    let mut other_bytes = exact.clone();
    other_bytes.to_b64 = Some(base64::engine::general_purpose::STANDARD.encode(b"caf\xe8"));
    let mut text_only = exact.clone();
    text_only.to_b64 = None;
    for bad in [other, other_bytes, text_only] {
        let err = bad.check().expect_err("not the destination").to_string();
        assert!(err.contains("`path` is its destination"), "{err}");
    }
}

#[test]
fn seq_stays_within_json_safe_integers() {
    let mut ev = fixed(EventType::Create, b"x");
    ev.seq = MAX_SEQ;
    assert!(ev.check().is_ok());
    assert_eq!(MAX_SEQ, 9_007_199_254_740_991);
    for seq in [MAX_SEQ + 1, u64::MAX] {
        ev.seq = seq;
        let err = ev.check().expect_err("too large").to_string();
        assert!(err.contains("9007199254740991"), "{err}");
        let line = ev.to_json();
        assert!(FileEvent::from_json(&line).is_err());
    }
}

#[test]
fn checksums_are_an_algorithm_and_64_lowercase_hex_digits() {
    let hex = "0123456789abcdef".repeat(4);
    for good in [format!("sha256:{hex}"), format!("blake3:{hex}")] {
        assert_eq!(check_checksum(&good), Ok(()), "{good}");
    }
    for (bad, why) in [
        (String::new(), ChecksumError::Algorithm),
        (hex.clone(), ChecksumError::Algorithm),
        (format!("md5:{hex}"), ChecksumError::Algorithm),
        ("sha256:abc".to_owned(), ChecksumError::Digest),
        (
            format!("sha256:{}", hex.to_uppercase()),
            ChecksumError::Digest,
        ),
        (format!("sha256:{hex}0"), ChecksumError::Digest),
    ] {
        assert_eq!(check_checksum(&bad), Err(why), "{bad}");
    }
    let mut ev = fixed(EventType::Create, b"x");
    ev.checksum = Some("sha256:abc".into());
    let err = ev.check().expect_err("short digest").to_string();
    assert!(err.contains("`checksum`") && err.contains("64"), "{err}");
}
