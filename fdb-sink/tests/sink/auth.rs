//! The optional ingest bearer token.

use crate::harness::{event, post, Sink};

#[test]
fn a_token_file_requires_the_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let sink = Sink::start(
        &dir.path().join("store"),
        &["--ingest-token-file", token_file.to_str().expect("utf8")],
    );
    let body = || event(&uuid::Uuid::new_v4().to_string(), 1, "s-auth").into_bytes();
    let (s, r) = post(&sink, body(), &[]);
    assert_eq!((s, r["error"].as_str()), (401, Some("unauthorized")));
    let (s, _) = post(&sink, body(), &[("authorization", "Bearer wrong")]);
    assert_eq!(s, 401);
    let (s, _) = post(&sink, body(), &[("authorization", "s3cret-token")]);
    assert_eq!(s, 401, "the Bearer scheme is required");
    assert!(
        sink.metrics()
            .contains("fdb_sink_batches_total{outcome=\"rejected\"} 3"),
        "the three 401s are rejected batches"
    );
    // Vector drops a batch refused with a 4xx: the sink's log says why.
    let refused = || {
        let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.contains("ingest request refused") && l.contains("401"))
            .count();
        (n, log)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while refused().0 < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (n, log) = refused();
    assert_eq!(n, 3, "{log}");
    let (s, r) = post(&sink, body(), &[("authorization", "Bearer s3cret-token")]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(1)), "{r}");
    let (s, r) = post(&sink, body(), &[("authorization", "bearer s3cret-token")]);
    assert_eq!(
        (s, r["written"].as_u64()),
        (200, Some(1)),
        "the scheme is case-insensitive: {r}"
    );
    // Health and metrics stay open for probes and Prometheus.
    let h = crate::harness::client()
        .get(sink.url("/healthz"))
        .send()
        .expect("healthz");
    assert_eq!(h.status().as_u16(), 200);
}

#[test]
fn an_empty_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "\n").expect("token");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--ingest-token-file"])
        .arg(&token_file)
        .arg("--store")
        .arg(format!("embedded:{}", dir.path().join("s").display()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
}
