//! Compressed bodies and body limits.

use std::io::Write;

use crate::harness::{event, ndjson, post, read_store, Sink};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn gzip_and_zstd_bodies_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let monitor = uuid::Uuid::new_v4().to_string();
    let a: Vec<String> = (1..=100).map(|i| event(&monitor, i, "s-enc")).collect();
    let b: Vec<String> = (101..=200).map(|i| event(&monitor, i, "s-enc")).collect();
    let (s, r) = post(&sink, gzip(&ndjson(&a)), &[("content-encoding", "gzip")]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(100)), "{r}");
    let zs = zstd::encode_all(&ndjson(&b)[..], 3).expect("zstd");
    let (s, r) = post(&sink, zs, &[("content-encoding", "zstd")]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(100)), "{r}");
    let (s, r) = post(&sink, b"x".to_vec(), &[("content-encoding", "br")]);
    assert_eq!(s, 415, "{r}");
    let (s, r) = post(&sink, b"not gzip".to_vec(), &[("content-encoding", "gzip")]);
    assert_eq!(s, 400, "{r}");
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len(), 200);
}

#[test]
fn oversize_bodies_get_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &["--max-body-bytes", "100000"]);
    // Declared too large.
    let (s, r) = post(&sink, vec![b' '; 200_000], &[]);
    assert_eq!(s, 413, "{r}");
    assert_eq!(r["error"], "body_too_large");
    // Small on the wire, too large once decompressed.
    let bomb = gzip(&vec![b' '; 1_000_000]);
    assert!(bomb.len() < 100_000);
    let (s, r) = post(&sink, bomb, &[("content-encoding", "gzip")]);
    assert_eq!(s, 413, "{r}");
    // Chunked upload without a length: cut off at the limit while streaming.
    assert_eq!(chunked_status(&sink, 200_000), 413);
    // Under the limit is fine.
    let (s, r) = post(
        &sink,
        event(&uuid::Uuid::new_v4().to_string(), 1, "s").into_bytes(),
        &[],
    );
    assert_eq!(s, 200, "{r}");
}

#[test]
fn default_limit_is_above_vectors_10_mb_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let monitor = uuid::Uuid::new_v4().to_string();
    // ~11 MB of events in one request: committed as several transactions.
    let mut lines = Vec::new();
    let mut size = 0;
    let mut seq = 0;
    let pad = "p".repeat(2000);
    while size < 11_000_000 {
        seq += 1;
        let mut v: serde_json::Value =
            serde_json::from_str(&event(&monitor, seq, "s-big")).expect("json");
        v["metadata"]["pad"] = pad.clone().into();
        let l = v.to_string();
        size += l.len() + 1;
        lines.push(l);
    }
    let (s, r) = post(&sink, ndjson(&lines), &[]);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["written"].as_u64(), Some(seq));
    assert!(
        r["transactions"].as_u64().unwrap_or(0) >= 10,
        "split near 1 MB: {r}"
    );
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len() as u64, seq);
}

/// Sends a chunked body of `size` bytes over a raw socket; returns the status.
fn chunked_status(sink: &Sink, size: usize) -> u16 {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(sink.addr).expect("connect");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        sink.addr
    );
    sock.write_all(head.as_bytes()).expect("head");
    let chunk = vec![b' '; 10_000];
    for _ in 0..size / chunk.len() {
        // The server may answer and close early; later writes can fail.
        if sock
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || sock.write_all(&chunk).is_err()
            || sock.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).expect("response");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Posts `bodies` at the same time; returns each status and `Retry-After`.
fn post_together(
    sink: &Sink,
    bodies: &[Vec<u8>],
    encoding: &str,
) -> Vec<(u16, Option<String>, String)> {
    let start = std::sync::Barrier::new(bodies.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let start = &start;
                s.spawn(move || {
                    let req = crate::harness::client()
                        .post(sink.url("/v1/events"))
                        .header("content-encoding", encoding)
                        .body(body.clone());
                    start.wait();
                    let r = req.send().expect("post");
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    (r.status().as_u16(), retry, r.text().unwrap_or_default())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn concurrent_large_compressed_bodies_stay_within_the_decompression_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Sixteen batches in flight, so that only the decompression budget
    // (128 MiB by default) bounds the decompressed bodies.
    let sink = Sink::start(dir.path(), &["--max-inflight-batches", "16"]);
    sink.wait_ready(200);
    // 64 MiB of spaces in about 2 kB: twice the default 32 MiB limit.
    let bomb = zstd::encode_all(&vec![b' '; 64 << 20][..], 3).expect("zstd");
    assert!(bomb.len() < 100_000);
    let before = sink.peak_rss();
    for round in 0..3 {
        let answers = post_together(&sink, &vec![bomb.clone(); 16], "zstd");
        for (status, retry, body) in answers {
            match status {
                413 => assert!(body.contains("body_too_large"), "{body}"),
                503 => {
                    assert!(retry.is_some(), "503 without Retry-After: {body}");
                    assert!(body.contains("saturated"), "{body}");
                }
                other => panic!("round {round}: {other} {body}"),
            }
        }
    }
    // Just under the limit: each is fine alone (blank lines, nothing to
    // store), together they wait for the budget.
    let near = zstd::encode_all(&vec![b' '; (32 << 20) - 10][..], 3).expect("zstd");
    let mut accepted = 0;
    for round in 0..3 {
        let answers = post_together(&sink, &vec![near.clone(); 16], "zstd");
        for (status, retry, body) in answers {
            match status {
                200 => accepted += 1,
                503 => {
                    assert!(retry.is_some(), "503 without Retry-After: {body}");
                    assert!(body.contains("saturated"), "{body}");
                }
                other => panic!("round {round}: {other} {body}"),
            }
        }
    }
    assert!(accepted > 0);
    let peak = sink.peak_rss();
    // The budget of decompressed bodies, buffers freed but not yet returned
    // by the allocator, and the store's own memory: 300-330 MiB above the
    // start on a loaded machine. Unbounded, eight bombs took about 640 MiB,
    // eight bodies just under the limit about 340 MiB.
    assert!(
        peak < before + (400 << 20),
        "sixteen concurrent large bodies took the sink from {} to {} MiB",
        before >> 20,
        peak >> 20
    );
    // A real batch still goes through.
    let monitor = uuid::Uuid::new_v4().to_string();
    let lines: Vec<String> = (1..=10).map(|i| event(&monitor, i, "s-bomb")).collect();
    let (s, r) = post(
        &sink,
        gzip(&ndjson(&lines)),
        &[("content-encoding", "gzip")],
    );
    assert_eq!((s, r["written"].as_u64()), (200, Some(10)), "{r}");
}

#[test]
fn concurrent_compressed_batches_over_the_budget_get_503_never_a_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "4000000",
            "--max-decompressed-bytes",
            "1048576",
            "--retry-after-secs",
            "1",
        ],
    );
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let pad = "p".repeat(2000);
    // Eight batches of about 3 MB each: each fits alone, they do not fit
    // the budget (raised to one 4 MB body) together.
    let batches: Vec<Vec<u8>> = (0..8u64)
        .map(|b| {
            let lines: Vec<String> = (1..=1400)
                .map(|i| {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&event(&monitor, b * 1400 + i, "s-budget"))
                            .expect("json");
                    v["metadata"]["pad"] = pad.clone().into();
                    v.to_string()
                })
                .collect();
            let body = ndjson(&lines);
            assert!(body.len() > 2_800_000 && body.len() < 4_000_000);
            gzip(&body)
        })
        .collect();
    let mut pending: Vec<usize> = (0..batches.len()).collect();
    let mut refused = 0;
    for _ in 0..30 {
        if pending.is_empty() {
            break;
        }
        let bodies: Vec<Vec<u8>> = pending.iter().map(|&i| batches[i].clone()).collect();
        let answers = post_together(&sink, &bodies, "gzip");
        let mut still = Vec::new();
        for (&i, (status, retry, body)) in pending.iter().zip(answers) {
            match status {
                200 => {}
                503 => {
                    assert!(retry.is_some(), "{body}");
                    refused += 1;
                    still.push(i);
                }
                other => panic!("batch {i}: {other} {body}"),
            }
        }
        pending = still;
    }
    assert!(pending.is_empty(), "batches never accepted: {pending:?}");
    assert!(refused > 0, "the budget never refused a batch");
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len(), 8 * 1400);
}
