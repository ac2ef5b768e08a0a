//! Clients that take their time: a request's headers trickled byte by byte
//! cannot hold a connection past the request deadline, while a keep-alive
//! connection that idles between requests keeps working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{event, Sink};

/// Sends one request on `s` and returns its status line.
fn request(s: &mut TcpStream, body: &[u8]) -> String {
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: sink\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer is small: read until its JSON body is in.
    while !got.ends_with(b"}") {
        let n = s.read(&mut buf).expect("read answer");
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn headers_trickled_byte_by_byte_are_cut_off_at_the_request_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &["--request-timeout-secs", "2"]);
    let mut s = TcpStream::connect(sink.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: sink\r\nX-Slow: ")
        .expect("write");
    let started = Instant::now();
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a client trickling its headers still holds the connection after 20 s"
        );
        if s.write_all(b"a").is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Closed, reset, or answered: the connection is no longer held.
            _ => break started.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_secs(2),
        "not before the request timeout: {closed_after:?}"
    );
}

#[test]
fn a_keep_alive_connection_idle_between_requests_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(dir.path(), &["--request-timeout-secs", "1"]);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut s = TcpStream::connect(sink.addr).expect("connect");
    let status = request(&mut s, event(&monitor, 1, "s-ka").as_bytes());
    assert!(status.contains(" 200 "), "{status}");
    // Idle for longer than the request deadline: not a request under way.
    std::thread::sleep(Duration::from_secs(4));
    let status = request(&mut s, event(&monitor, 2, "s-ka").as_bytes());
    assert!(status.contains(" 200 "), "{status}");
}
