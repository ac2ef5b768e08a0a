//! Dead letters as archived evidence: `export --dead-letters` carries every
//! refused line (exact bytes and reason) apart from the audit records, and
//! `import` of a tenant export plus a dead-letter export rebuilds the same
//! store, storing no dead letter as a record and nothing twice.

use std::path::Path;

use fdb_sink::export::DEAD_LETTER_SCHEMA;
use fdb_sink::store::embedded::EmbeddedStore;
use fdb_sink::store::{Kv, StoreExt};
use serde_json::Value;

use crate::harness::{cli, event, post, read_store, Sink};

fn import(store: &str, file: &Path) -> Value {
    let out = cli(&["import", "--store", store, file.to_str().expect("utf8")]);
    serde_json::from_slice(&out.stdout).expect("import totals")
}

/// Every key and value of the store in `dir` but the `late` markers: the
/// daily export's work list, which a restore (`import`) never writes.
fn everything(dir: &Path) -> Vec<Kv> {
    let store = EmbeddedStore::open(dir).expect("open");
    let late = fdb_sink::keys::Keys::default().late_all();
    store
        .read(|t| t.get_range(&[], &[0xff; 8], 0, false))
        .expect("read")
        .into_iter()
        .filter(|(k, _)| !(late.begin <= *k && *k < late.end))
        .collect()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("export line is JSON"))
        .collect()
}

/// The refused lines a dead-letter export holds, each with its reason
/// (a group's lines under `invalid_lines_grouped`).
fn refused_lines(export: &[Value]) -> Vec<(Vec<u8>, String)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for l in export {
        assert_eq!(l["schema"], DEAD_LETTER_SCHEMA, "{l}");
        let bytes = match l["raw_b64"].as_str() {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
            None => l["raw"].as_str().expect("raw").as_bytes().to_vec(),
        };
        let reason = l["reason"].as_str().expect("reason").to_owned();
        if l["lines"].is_u64() {
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                out.push((line[..line.len() - 1].to_vec(), reason.clone()));
            }
        } else {
            out.push((bytes, reason));
        }
    }
    out
}

#[test]
fn refused_lines_are_exported_apart_from_records_and_restored_as_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let started = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let since = started
        .format(&time::format_description::well_known::Rfc3339)
        .expect("fmt");
    let mut sink = Sink::start(&src, &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut oversize: Value = serde_json::from_str(&event(&monitor, 99, "s-1")).expect("json");
    oversize["path"] = Value::String(format!("deep/{}", "x/".repeat(100_000)));
    // (line, reason) of each refused line; a line with an old timestamp of
    // its own is keyed by it, yet was received today.
    let mut bad: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "invalid_json"),
        (b"\xff\xfe{\"tenant_id\":\"acme\"}".to_vec(), "invalid_utf8"),
        (
            br#"{"timestamp":"2020-01-01T00:00:00Z","path":"etc/passwd"}"#.to_vec(),
            "bad_schema",
        ),
        (oversize.to_string().into_bytes(), "oversize"),
    ];
    // Enough more to be grouped (past the first 1000 of the request).
    for i in 0..2500 {
        bad.push((format!("[{i}]").into_bytes(), "invalid_json"));
    }
    let mut body = Vec::new();
    for (i, (line, _)) in bad.iter().enumerate() {
        body.extend_from_slice(line);
        body.push(b'\n');
        if i % 500 == 0 {
            body.extend_from_slice(event(&monitor, i as u64 / 500 + 1, "s-1").as_bytes());
            body.push(b'\n');
        }
    }
    let (status, summary) = post(&sink, body, &[]);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["written"], 6, "{summary}");
    assert_eq!(summary["dead_lettered"], bad.len() as u64, "{summary}");
    sink.stop();

    let store = format!("embedded:{}", src.display());
    let records = dir.path().join("acme.ndjson");
    let letters = dir.path().join("dead-letters.ndjson.gz");
    let path = |p: &Path| p.to_str().expect("utf8").to_owned();
    cli(&[
        "export",
        "--store",
        &store,
        "--tenant",
        "acme",
        "--output",
        &path(&records),
    ]);
    let out = cli(&[
        "export",
        "--store",
        &store,
        "--dead-letters",
        "--since",
        &since,
        "--output",
        &path(&letters),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("holding {} refused lines", bad.len())),
        "{stderr}"
    );

    // The tenant export is unchanged: records and monitor lines only.
    let tenant_lines = json_lines(&std::fs::read(&records).expect("read"));
    assert_eq!(tenant_lines.len(), 7);
    assert!(tenant_lines
        .iter()
        .all(|l| l["schema"] == "file-event/1" || l["schema"] == "fdb-sink-monitor/1"));

    // Every refused line, byte for byte, with its reason.
    let gz = std::fs::read(&letters).expect("read");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
        .expect("gzip");
    let exported = json_lines(&plain);
    assert!(exported.len() < 1100, "grouped: {} lines", exported.len());
    let got = refused_lines(&exported);
    let singles: Vec<(Vec<u8>, String)> = got
        .iter()
        .filter(|(_, r)| r != "invalid_lines_grouped")
        .cloned()
        .collect();
    let oversize_reason = singles
        .iter()
        .find(|(l, _)| l.len() > 50_000)
        .map(|(_, r)| r.clone());
    assert!(
        oversize_reason.is_some(),
        "the oversize line is a dead letter of its own"
    );
    for (line, reason) in &bad[..3] {
        assert!(
            singles.contains(&(line.clone(), (*reason).to_owned())),
            "{reason}: {}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        );
    }
    let want: Vec<Vec<u8>> = bad.iter().map(|(l, _)| l.clone()).collect();
    let mut have: Vec<Vec<u8>> = got.into_iter().map(|(l, _)| l).collect();
    let mut want_sorted = want.clone();
    have.sort();
    want_sorted.sort();
    // The oversize line is kept cut to the value limit (raw_truncated).
    let big = &bad[3].0;
    let cut = have
        .iter()
        .position(|l| l.len() < big.len() && big.starts_with(l) && l.len() > 50_000)
        .expect("the oversize line's kept beginning");
    have[cut] = big.clone();
    have.sort();
    assert_eq!(have, want_sorted, "every refused line is in the export");
    assert!(exported.iter().any(|l| l["raw_truncated"] == true));

    // By receipt time: none before the test, all since it (also the line
    // keyed by its 2020 timestamp).
    let none = cli(&[
        "export",
        "--store",
        &store,
        "--dead-letters",
        "--until",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(none.stdout.is_empty());
    assert!(exported
        .iter()
        .any(|l| l["raw"].as_str().is_some_and(|r| r.contains("2020-01-01"))));

    // Restore both into an empty store: the same keys and values, the dead
    // letters stored as dead letters, nothing as a record.
    let dst = dir.path().join("dst");
    let dst_store = format!("embedded:{}", dst.display());
    let r = import(&dst_store, &records);
    assert_eq!(
        (r["written"].as_u64(), r["dead_lettered"].as_u64()),
        (Some(6), Some(0)),
        "{r}"
    );
    let d = import(&dst_store, &letters);
    assert_eq!(
        d["received"], 0,
        "no dead-letter line is taken as an event: {d}"
    );
    assert_eq!(d["dead_lettered"], 0, "{d}");
    assert_eq!(d["dead_letters_restored"], exported.len() as u64, "{d}");
    assert_eq!(everything(&src), everything(&dst), "same keys and values");
    // Again: nothing new, nothing counted twice.
    let again = import(&dst_store, &letters);
    assert_eq!(
        (
            again["dead_letters_restored"].as_u64(),
            again["dead_letters_present"].as_u64()
        ),
        (Some(0), Some(exported.len() as u64)),
        "{again}"
    );
    let again = import(&dst_store, &records);
    assert_eq!(
        (again["written"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(6))
    );
    assert_eq!(everything(&src), everything(&dst));
    let restored = read_store(&dst);
    assert_eq!(restored.records.len(), 6);
    assert_eq!(
        restored
            .dead_letters
            .iter()
            .map(|d| d.letter.line_count())
            .sum::<u64>(),
        bad.len() as u64
    );
    let raw = |s: &str| cli(&["dead-letters", "--store", s, "--raw", "--limit", "0"]);
    let (before, after) = (raw(&store), raw(&dst_store));
    assert_eq!(before.stdout, after.stdout);
    // The oversize line prints only its beginning, and stderr says so.
    let stderr = String::from_utf8_lossy(&after.stderr);
    assert!(
        stderr.contains("(1 of them only the beginning of its line: raw_truncated)"),
        "{stderr}"
    );
}
