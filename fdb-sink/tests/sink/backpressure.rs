//! Bounded in-flight batches: when all slots are taken, new batches get 503
//! with Retry-After instead of queueing in memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{client, event, post, Sink};

#[test]
fn saturated_sink_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(
        dir.path(),
        &["--max-inflight-batches", "1", "--retry-after-secs", "7"],
    );
    let body = event(&uuid::Uuid::new_v4().to_string(), 1, "s-bp");
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    // A slow client takes the only slot: headers and half of the body. On a
    // busy machine the server may take another request first; then the slow
    // one is refused itself and the round is repeated.
    let mut slow_and_refused = None;
    for _ in 0..20 {
        let mut slow = TcpStream::connect(sink.addr).expect("connect");
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
            sink.addr,
            body.len()
        );
        slow.write_all(head.as_bytes()).expect("head");
        slow.write_all(first).expect("first half");
        slow.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(200));
        let r = client()
            .post(sink.url("/v1/events"))
            .body(event(&uuid::Uuid::new_v4().to_string(), 1, "s-bp2"))
            .send()
            .expect("post");
        if r.status().as_u16() == 503 {
            slow_and_refused = Some((slow, r));
            break;
        }
    }
    let (mut slow, refused) =
        slow_and_refused.expect("a second batch must be refused while the slot is taken");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let json: serde_json::Value = refused.json().expect("json");
    assert_eq!(json["error"], "saturated");

    // The slow batch completes normally and frees the slot.
    slow.write_all(rest).expect("second half");
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&resp).contains("\"written\"") {
        let n = slow.read(&mut buf).expect("response");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&resp)
        );
        resp.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200"));
    let (s, r) = post(
        &sink,
        event(&uuid::Uuid::new_v4().to_string(), 1, "s-bp3").into_bytes(),
        &[],
    );
    assert_eq!(s, 200, "{r}");
    let m = sink.metrics();
    assert!(
        m.contains("fdb_sink_batches_total{outcome=\"saturated\"}"),
        "{m}"
    );
}

#[test]
fn a_body_that_never_arrives_gets_408_and_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(
        dir.path(),
        &["--max-inflight-batches", "1", "--request-timeout-secs", "1"],
    );
    let mut slow = TcpStream::connect(sink.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\n{{\"partial\":",
        sink.addr
    );
    slow.write_all(head.as_bytes()).expect("head");
    let mut buf = [0u8; 256];
    let n = slow.read(&mut buf).expect("response");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let (s, r) = post(
        &sink,
        event(&uuid::Uuid::new_v4().to_string(), 1, "s-to").into_bytes(),
        &[],
    );
    assert_eq!(s, 200, "the slot is free again: {r}");
}
