//! `vector-config/*.vrl` under the real vrl 0.33.1 compiler and runtime, on events shaped
//! exactly like `kubernetes_logs` output.

use std::collections::BTreeMap;

use e2e_tests::harness::env::{CLUSTER_NAME, SELF_NODE_NAME};
use e2e_tests::harness::k8s_wrap::{
    wrap_kubernetes_logs, wrap_kubernetes_logs_unannotated, Stream,
};
use e2e_tests::harness::remap::{Remap, RemapOutcome};
use e2e_tests::paths;
use serde_json::{json, Value as Json};
use vrl::value::{Kind, ObjectMap};

use crate::support::{alice_pod, at, event_json, parse_events, run_event, run_line};

fn vrl_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(paths::vector_config_dir())
        .expect("vector-config/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "vrl"))
        .collect();
    files.sort();
    files
}

/// The legacy-namespace schema Vector 0.56.0 declares for `kubernetes_logs` events.
fn kubernetes_logs_kind() -> Kind {
    let strings =
        || Kind::object(vrl::value::kind::Collection::empty().with_unknown(Kind::bytes()));
    let mut k = BTreeMap::new();
    for f in [
        "container_id",
        "container_image",
        "container_image_id",
        "container_name",
        "pod_ip",
        "pod_name",
        "pod_namespace",
        "pod_node_name",
        "pod_owner",
        "pod_uid",
    ] {
        k.insert(f.into(), Kind::bytes().or_undefined());
    }
    for f in [
        "node_labels",
        "pod_annotations",
        "pod_labels",
        "namespace_labels",
    ] {
        k.insert(f.into(), strings().or_undefined());
    }
    k.insert(
        "pod_ips".into(),
        Kind::array(vrl::value::kind::Collection::empty().with_unknown(Kind::bytes()))
            .or_undefined(),
    );
    let mut ev = BTreeMap::new();
    ev.insert("message".into(), Kind::bytes());
    ev.insert("file".into(), Kind::bytes());
    ev.insert("source_type".into(), Kind::bytes());
    ev.insert("stream".into(), Kind::bytes());
    ev.insert("timestamp".into(), Kind::timestamp());
    ev.insert("kubernetes".into(), Kind::object(k).or_undefined());
    Kind::object(ev)
}

#[test]
fn every_vrl_program_compiles_cleanly_with_untyped_and_typed_inputs() {
    let files = vrl_files();
    assert!(!files.is_empty(), "vector-config/ holds no .vrl file");
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable");
        let name = file.display().to_string();
        let untyped = Remap::compile(&name, &source).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            untyped.warnings().is_empty(),
            "{name}: {:?}",
            untyped.warnings()
        );
        let typed = Remap::compile_with_event_kind(&name, &source, kubernetes_logs_kind())
            .unwrap_or_else(|e| panic!("with kubernetes_logs types: {e}"));
        assert!(
            typed.warnings().is_empty(),
            "{name}: {:?}",
            typed.warnings()
        );
    }
}

/// What the program must add for a line of Alice's sidecar.
fn alice_k8s() -> Json {
    let pod = alice_pod();
    json!({
        "cluster_name": CLUSTER_NAME,
        "namespace": "coditect-app",
        "pod_name": "user-workspace-alice",
        "pod_uid": pod.pod_uid,
        "node_name": "gke-ide-pool-1-node-a",
        "container_name": "file-monitor",
    })
}

fn merged(mut a: Json, b: Json) -> Json {
    if let (Some(a), Json::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[test]
fn each_event_type_passes_unchanged_plus_the_kubernetes_fields() {
    let remap = parse_events();
    for (seq, event_type) in ["create", "update", "delete", "move", "access"]
        .iter()
        .enumerate()
    {
        let ev = event_json(seq as u64 + 1, event_type);
        let out = run_line(&remap, ev.to_string().as_bytes());
        assert_eq!(out, merged(ev, alice_k8s()), "{event_type}");
        // The sink's wire type reads the record back.
        let parsed = file_event::FileEvent::from_json(&out.to_string())
            .unwrap_or_else(|e| panic!("{event_type}: {e}"));
        assert_eq!(parsed.event_type.as_str(), *event_type);
    }
}

#[test]
fn minimal_event_from_the_monitor_is_accepted() {
    let remap = parse_events();
    let line = r#"{"schema":"file-event/1","event_id":"019abcde-0000-7000-8000-000000000007","monitor_id":"6f1c2a3e-1111-4222-8333-444455556666","seq":7,"timestamp":"2026-11-26T18:00:00Z","event_type":"create","kind":"dir","path":"docs","metadata":{},"rescan":true}"#;
    let out = run_line(&remap, line.as_bytes());
    assert!(out.get("dead_letter").is_none(), "{out}");
    assert_eq!(out["rescan"], true);
    // Attribution absent from the line comes from the pod labels.
    assert_eq!(out["tenant_id"], "acme");
    assert_eq!(out["user_id"], "alice");
    assert_eq!(out["session_id"], "s-1");
}

#[test]
fn missing_or_empty_attribution_is_filled_from_pod_labels_and_present_attribution_is_kept() {
    let remap = parse_events();
    let mut pod = alice_pod();
    pod.pod_labels
        .insert("coditect.ai/tenant-id".into(), "globex".into());
    pod.pod_labels
        .insert("coditect.ai/user-id".into(), "bob".into());
    pod.pod_labels
        .insert("coditect.ai/session-id".into(), "s-42".into());

    let mut ev = event_json(1, "create");
    let obj = ev.as_object_mut().expect("object");
    obj.remove("tenant_id");
    obj.insert("user_id".into(), "".into());
    // session_id stays "s-1": the event's own value wins over the label.
    let out = run_event(
        &remap,
        wrap_kubernetes_logs(ev.to_string().as_bytes(), &pod, Stream::Stdout, at()),
    );
    assert_eq!(out["tenant_id"], "globex");
    assert_eq!(out["user_id"], "bob");
    assert_eq!(out["session_id"], "s-1");

    // No labels and no attribution: the record goes on without it (fdb-sink decides).
    pod.pod_labels.clear();
    let mut ev = event_json(2, "create");
    ev.as_object_mut().expect("object").remove("tenant_id");
    let out = run_event(
        &remap,
        wrap_kubernetes_logs(ev.to_string().as_bytes(), &pod, Stream::Stdout, at()),
    );
    assert!(out.get("tenant_id").is_none(), "{out}");
    assert!(out.get("dead_letter").is_none(), "{out}");
}

#[test]
fn kubernetes_fields_from_vector_override_what_the_line_claims() {
    let remap = parse_events();
    let mut ev = event_json(1, "update");
    ev["pod_name"] = "someone-elses-pod".into();
    ev["namespace"] = "kube-system".into();
    ev["cluster_name"] = "other".into();
    let out = run_line(&remap, ev.to_string().as_bytes());
    assert_eq!(out["pod_name"], "user-workspace-alice");
    assert_eq!(out["namespace"], "coditect-app");
    assert_eq!(out["cluster_name"], CLUSTER_NAME);
}

/// Where Vector knows no pod (no metadata, no pod log path: the local `file` or
/// `stdin` source), a line still cannot name one: its own identity fields are dropped.
#[test]
fn identity_fields_in_the_line_are_dropped_when_vector_does_not_know_them() {
    let remap = parse_events();
    let mut ev = event_json(1, "update");
    for (k, v) in [
        ("pod_name", "someone-elses-pod"),
        ("namespace", "kube-system"),
        ("pod_uid", "00000000-0000-4000-8000-000000000000"),
        ("container_name", "workspace"),
        ("cluster_name", "other"),
        ("node_name", "other-node"),
    ] {
        ev[k] = v.into();
    }
    let out = run_event(
        &remap,
        e2e_tests::harness::k8s_wrap::wrap_stdin(ev.to_string().as_bytes(), "laptop", at()),
    );
    assert!(out.get("dead_letter").is_none(), "{out}");
    for k in ["pod_name", "namespace", "pod_uid", "container_name"] {
        assert!(out.get(k).is_none(), "{k} taken from the line: {out}");
    }
    assert_eq!(out["cluster_name"], CLUSTER_NAME);
    assert_eq!(out["node_name"], SELF_NODE_NAME);
}

#[test]
fn without_pod_metadata_the_identity_comes_from_the_log_file_path() {
    let remap = parse_events();
    let pod = alice_pod();
    let ev = event_json(3, "delete");
    let out = run_event(
        &remap,
        wrap_kubernetes_logs_unannotated(ev.to_string().as_bytes(), &pod, Stream::Stdout, at()),
    );
    assert_eq!(out["namespace"], "coditect-app");
    assert_eq!(out["pod_name"], "user-workspace-alice");
    assert_eq!(out["pod_uid"], pod.pod_uid.as_str());
    assert_eq!(out["container_name"], "file-monitor");
    assert_eq!(out["node_name"], SELF_NODE_NAME);
    assert_eq!(out["cluster_name"], CLUSTER_NAME);
}

/// The fields a dead letter of Alice's sidecar must carry besides reason and message.
fn assert_dead_letter(out: &Json, reason_prefix: &str, raw: &str) {
    assert_eq!(out["dead_letter"], true, "{out}");
    let reason = out["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(reason_prefix),
        "reason {reason:?} does not start with {reason_prefix:?}"
    );
    assert_eq!(out["message"], raw);
    assert_eq!(out["timestamp"], "2026-11-26T18:00:00.123456789Z");
    assert_eq!(out["source_type"], "kubernetes_logs");
    for (k, v) in alice_k8s().as_object().expect("object") {
        assert_eq!(&out[k], v, "{k}");
    }
    // Nothing of the original Vector event leaks into the record.
    for k in ["kubernetes", "file", "stream", "schema", "event_id"] {
        assert!(out.get(k).is_none(), "{k} in {out}");
    }
}

#[test]
fn a_line_that_is_not_json_is_a_dead_letter_with_the_raw_line() {
    let remap = parse_events();
    for raw in [
        "not a json line at all",
        "",
        "{\"schema\":\"file-event/1\",",
        "{\"a\":1}}",
    ] {
        let out = run_line(&remap, raw.as_bytes());
        assert_dead_letter(&out, "invalid_json: ", raw);
        assert!(!out["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("function call error"));
    }
}

#[test]
fn json_that_is_not_an_object_is_a_dead_letter() {
    let remap = parse_events();
    for raw in ["[1,2,3]", "\"file-event/1\"", "42", "null", "true"] {
        let out = run_line(&remap, raw.as_bytes());
        assert_dead_letter(&out, "not_an_object: ", raw);
    }
}

#[test]
fn another_schema_is_a_dead_letter() {
    let remap = parse_events();
    let mut ev = event_json(1, "create");
    ev["schema"] = "file-event/2".into();
    let raw = ev.to_string();
    let out = run_line(&remap, raw.as_bytes());
    assert_dead_letter(&out, "unknown_schema: \"file-event/2\"", &raw);
    ev.as_object_mut().expect("object").remove("schema");
    let raw = ev.to_string();
    assert_dead_letter(
        &run_line(&remap, raw.as_bytes()),
        "unknown_schema: null",
        &raw,
    );
}

#[test]
fn wrong_types_are_dead_letters_that_name_the_problem() {
    let remap = parse_events();
    let cases: Vec<(&str, Json, &str)> = vec![
        ("event_id", json!(17), "event_id must be a non-empty string"),
        ("event_id", json!(""), "event_id must be a non-empty string"),
        (
            "monitor_id",
            json!(null),
            "monitor_id must be a non-empty string",
        ),
        ("seq", json!("1"), "seq must be an integer >= 1"),
        ("seq", json!(0), "seq must be an integer >= 1"),
        ("seq", json!(-3), "seq must be an integer >= 1"),
        ("seq", json!(1.5), "seq must be an integer >= 1"),
        (
            "timestamp",
            json!(1764180000),
            "timestamp must be an RFC 3339 string",
        ),
        (
            "timestamp",
            json!("yesterday"),
            "timestamp must be an RFC 3339 string",
        ),
        (
            "event_type",
            json!("rename"),
            "event_type must be create, update, delete, move or access",
        ),
        (
            "kind",
            json!("socket"),
            "kind must be file, dir, symlink or other",
        ),
        ("path", json!(["a", "b"]), "path must be a string"),
        (
            "path_b64",
            json!("not base64!"),
            "path_b64 must be standard base64",
        ),
        ("size", json!(-1), "size must be an integer >= 0"),
        ("size", json!("12"), "size must be an integer >= 0"),
        ("checksum", json!(123), "checksum must be a string"),
        (
            "tenant_id",
            json!({"id": "acme"}),
            "tenant_id must be a string",
        ),
        ("user_id", json!(5), "user_id must be a string"),
        ("session_id", json!(true), "session_id must be a string"),
        ("metadata", json!("k=v"), "metadata must be an object"),
        ("rescan", json!("yes"), "rescan must be a boolean"),
        ("from", json!("a.txt"), "from/to are only allowed on a move"),
        (
            "dead_letter",
            json!(false),
            "dead_letter and reason are reserved field names",
        ),
        (
            "reason",
            json!("x"),
            "dead_letter and reason are reserved field names",
        ),
    ];
    for (field, value, problem) in cases {
        let mut ev = event_json(5, "update");
        ev[field] = value.clone();
        let raw = ev.to_string();
        let out = run_line(&remap, raw.as_bytes());
        assert_dead_letter(&out, "invalid_event: ", &raw);
        let reason = out["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(problem),
            "{field}={value}: {reason:?} lacks {problem:?}"
        );
        assert!(
            !reason.ends_with(';') && !reason.ends_with(' '),
            "{reason:?}"
        );
    }

    // Several problems are all listed, in a stable order.
    let mut ev = event_json(5, "update");
    ev["seq"] = json!("7");
    ev["kind"] = json!("blob");
    let out = run_line(&remap, ev.to_string().as_bytes());
    assert_eq!(
        out["reason"],
        "invalid_event: seq must be an integer >= 1; kind must be file, dir, symlink or other"
    );

    // A move needs both ends.
    let mut ev = event_json(6, "move");
    ev.as_object_mut().expect("object").remove("from");
    let out = run_line(&remap, ev.to_string().as_bytes());
    assert_eq!(
        out["reason"],
        "invalid_event: a move needs both from and to"
    );
}

#[test]
fn valid_events_pass_whatever_their_size_and_dead_letters_keep_a_bounded_prefix() {
    let remap = parse_events();
    let kept = 65536usize;
    let limit = 1usize << 20;

    // A valid event far above 64 KiB (big metadata, a long path) is an audit event:
    // it passes unchanged, and fdb-sink fits it into a record.
    let mut ev = event_json(1, "create");
    ev["metadata"]["pad"] = Json::String("x".repeat(200_000));
    ev["path"] = Json::String("deep/".repeat(4_000));
    let raw = ev.to_string();
    assert!(raw.len() > 3 * kept);
    let out = run_line(&remap, raw.as_bytes());
    assert_eq!(out, merged(ev.clone(), alice_k8s()));

    // A valid event of exactly the limit passes too.
    let base = event_json(1, "create").to_string().len();
    let mut ev = event_json(1, "create");
    ev["metadata"]["pad"] = Json::String("x".repeat(limit - base - r#","pad":"""#.len()));
    let raw = ev.to_string();
    assert_eq!(raw.len(), limit);
    let out = run_line(&remap, raw.as_bytes());
    assert!(
        out.get("dead_letter").is_none(),
        "exactly {limit} bytes must pass"
    );

    // One byte more (Vector never passes such a line on) is a dead letter keeping
    // the first 64 KiB.
    ev["metadata"]["pad"] = Json::String("x".repeat(limit - base - r#","pad":"""#.len() + 1));
    let raw = ev.to_string();
    let out = run_line(&remap, raw.as_bytes());
    assert_eq!(out["dead_letter"], true);
    assert_eq!(
        out["reason"],
        format!("line_too_long: {} bytes, the limit is {limit}", limit + 1)
    );
    assert_eq!(out["message"], &raw[..kept]);
    assert_eq!(out["message_bytes"], limit + 1);
    assert_eq!(out["message_truncated"], true);
    assert_eq!(out["pod_name"], "user-workspace-alice");

    // A large line that is not JSON: a dead letter for its real reason, with the
    // first 64 KiB and the full size.
    let raw = "y".repeat(300_000);
    let out = run_line(&remap, raw.as_bytes());
    assert!(
        out["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid_json: "),
        "{}",
        out["reason"]
    );
    assert_eq!(out["message"].as_str().map(str::len), Some(kept));
    assert_eq!(out["message_bytes"], 300_000);
    assert_eq!(out["message_truncated"], true);

    // A small dead letter is kept whole, without the truncation marks.
    let out = run_line(&remap, b"panic: short");
    assert_eq!(out["message"], "panic: short");
    assert!(out.get("message_bytes").is_none() && out.get("message_truncated").is_none());

    // The prefix is cut in bytes at a character boundary: 40 000 two-byte
    // characters are 80 000 bytes, and at most 64 KiB of UTF-8 is kept.
    let mut ev = event_json(1, "create");
    ev["seq"] = Json::from(0);
    ev["metadata"]["pad"] = Json::String("\u{e9}".repeat(40_000));
    let raw = ev.to_string();
    let out = run_line(&remap, raw.as_bytes());
    assert_eq!(out["reason"], "invalid_event: seq must be an integer >= 1");
    assert_eq!(out["message_bytes"], raw.len());
    let prefix = out["message"].as_str().expect("message");
    assert!(
        prefix.len() <= kept && prefix.len() > kept - 4,
        "{}",
        prefix.len()
    );
    assert!(raw.starts_with(prefix));
}

#[test]
fn non_utf8_names_travel_as_path_b64_and_non_utf8_lines_are_dead_letters() {
    let remap = parse_events();
    // The monitor encodes the name `caf\xe9.txt`: lossy text plus exact bytes.
    let mut ev = event_json(1, "delete");
    ev["path"] = "caf\u{FFFD}.txt".into();
    ev["path_b64"] = "Y2Fm6S50eHQ=".into();
    let out = run_line(&remap, ev.to_string().as_bytes());
    assert!(out.get("dead_letter").is_none(), "{out}");
    assert_eq!(out["path_b64"], "Y2Fm6S50eHQ=");
    assert_eq!(out["path"], "caf\u{FFFD}.txt");
    let parsed = file_event::FileEvent::from_json(&out.to_string()).expect("wire type reads it");
    assert_eq!(parsed.path_bytes(), b"caf\xe9.txt");

    // A move between two such names keeps all three encodings.
    let mut ev = event_json(2, "move");
    ev["from"] = "\u{FFFD}old".into();
    ev["from_b64"] = "/29sZA==".into();
    ev["to"] = "new\u{FFFD}".into();
    ev["to_b64"] = "bmV3/w==".into();
    ev["path"] = "new\u{FFFD}".into();
    ev["path_b64"] = "bmV3/w==".into();
    let out = run_line(&remap, ev.to_string().as_bytes());
    assert_eq!(out["from_b64"], "/29sZA==");
    assert_eq!(out["to_b64"], "bmV3/w==");
    assert_eq!(out["path_b64"], "bmV3/w==");

    // Raw invalid UTF-8 in the line itself is never silently replaced: dead letter.
    let mut raw = ev.to_string().into_bytes();
    let at_path = raw.windows(3).position(|w| w == b"new").expect("has new");
    raw[at_path] = 0xff;
    let out = run_line(&remap, &raw);
    assert_eq!(out["dead_letter"], true, "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid_json: "),
        "{out}"
    );
}

fn base64_bytes(v: &Json) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(
            v.as_str()
                .unwrap_or_else(|| panic!("not a base64 string: {v}")),
        )
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn a_dead_letter_of_a_line_that_is_not_utf8_carries_its_exact_bytes_in_base64() {
    let remap = parse_events();
    // What Vector's JSON encoder sends for the record: `message` with every
    // invalid byte replaced by U+FFFD, so it no longer holds the line.
    let raw: &[u8] = b"{\"path\":\"caf\xe9.txt\",\"x\":\"\xff\xfe\"}";
    let out = run_line(&remap, raw);
    assert_eq!(out["dead_letter"], true, "{out}");
    assert_eq!(out["message"], String::from_utf8_lossy(raw).as_ref());
    assert_ne!(out["message"].as_str().map(str::as_bytes), Some(raw));
    // The copy holds the exact bytes.
    assert_eq!(base64_bytes(&out["message_b64"]), raw, "{out}");
    assert_eq!(out["pod_name"], "user-workspace-alice");

    // A long one: the copy holds exactly the kept beginning.
    let long: Vec<u8> = (0..300_000u32)
        .map(|i| {
            if i % 7 == 0 {
                0xff
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let out = run_line(&remap, &long);
    assert_eq!(out["message_bytes"], 300_000);
    assert_eq!(out["message_truncated"], true);
    assert_eq!(base64_bytes(&out["message_b64"]), &long[..65_536]);
    assert_eq!(
        out["message"],
        String::from_utf8_lossy(&long[..65_536]).as_ref()
    );

    // A dead letter of UTF-8 text travels exactly in `message`: no copy.
    for line in [&b"panic: caf\xc3\xa9"[..], b"{\"schema\":\"other/1\"}"] {
        let out = run_line(&remap, line);
        assert_eq!(out["dead_letter"], true, "{out}");
        assert!(out.get("message_b64").is_none(), "{out}");
    }
}

#[test]
fn the_program_never_fails_or_aborts_whatever_the_input() {
    let remap = parse_events();
    let pod = alice_pod();
    let mut inputs: Vec<vrl::value::Value> = Vec::new();
    let samples: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"{\"schema\":\"file-event/1\"}".to_vec(),
        br#"{"schema":"file-event/1","seq":1e400}"#.to_vec(),
        "[".repeat(10_000).into_bytes(),
        format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200)).into_bytes(),
        b"\t  \r".to_vec(),
    ];
    for s in &samples {
        inputs.push(wrap_kubernetes_logs(s, &pod, Stream::Stdout, at()));
        inputs.push(wrap_kubernetes_logs_unannotated(
            s,
            &pod,
            Stream::Stdout,
            at(),
        ));
    }
    // Events Vector could hand over with missing or odd fields.
    let mut no_message = ObjectMap::new();
    no_message.insert("source_type".into(), "kubernetes_logs".into());
    inputs.push(vrl::value::Value::Object(no_message));
    let mut numeric_message = ObjectMap::new();
    numeric_message.insert("message".into(), 12.into());
    numeric_message.insert("kubernetes".into(), "not an object".into());
    numeric_message.insert("file".into(), 3.into());
    inputs.push(vrl::value::Value::Object(numeric_message));

    for input in inputs {
        match remap.run(input.clone()) {
            RemapOutcome::Done(v) => {
                let out = crate::support::to_json(&v);
                assert_eq!(out["dead_letter"], true, "{input:?} -> {out}");
                assert!(out["message"].is_string(), "{out}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
}
