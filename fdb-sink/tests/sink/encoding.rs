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
