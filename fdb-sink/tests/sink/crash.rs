//! Crash safety: a client that retries like Vector keeps sending while the
//! sink is killed with SIGKILL several times; in the end every event is
//! stored exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{event, ndjson, read_store, Sink};

const BATCHES: u64 = 60;
const PER_BATCH: u64 = 250;

#[test]
fn sigkill_loses_nothing_acknowledged_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    let addr = sink.addr.to_string();
    let url = sink.url("/v1/events");
    let monitor = uuid::Uuid::new_v4().to_string();
    let batches: Vec<Vec<u8>> = (0..BATCHES)
        .map(|b| {
            let lines: Vec<String> = (1..=PER_BATCH)
                .map(|i| event(&monitor, b * PER_BATCH + i, "s-crash"))
                .collect();
            ndjson(&lines)
        })
        .collect();

    // The client: each batch is retried until a 200, like Vector's http sink
    // (connection errors and 5xx are retried with backoff).
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let client_thread = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut attempts = 0u64;
        for body in batches {
            let mut backoff = Duration::from_millis(20);
            loop {
                attempts += 1;
                match http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                {
                    Ok(r) if r.status().as_u16() == 200 => break,
                    Ok(r) => assert!(
                        r.status().is_server_error() || r.status().as_u16() == 408,
                        "a crash must never produce a drop status, got {}",
                        r.status()
                    ),
                    Err(_) => {}
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
        done2.store(true, Ordering::SeqCst);
        attempts
    });

    let mut kills = 0;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(150 + 60 * kills));
        if done.load(Ordering::SeqCst) {
            break;
        }
        sink.kill();
        kills += 1;
        sink = Sink::start_on(dir.path(), &addr, &[]);
    }
    let attempts = client_thread.join().expect("client");
    sink.stop();
    assert!(
        kills >= 3,
        "only {kills} kills happened; the test did not exercise crashes"
    );
    assert!(
        attempts > BATCHES,
        "no batch was ever retried ({attempts} attempts)"
    );

    let stored = read_store(dir.path());
    let total = BATCHES * PER_BATCH;
    assert_eq!(
        stored.records.len() as u64,
        total,
        "every event stored once"
    );
    let mut seqs: Vec<u64> = stored.records.iter().map(|r| r.record.event.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, total, "no event stored twice");
    assert_eq!(
        stored.sessions[0].events as u64, total,
        "session counted once per event"
    );
    assert_eq!(
        stored.monitors[0].received as u64, total,
        "monitor counted once per event"
    );
    assert_eq!(stored.monitors[0].max_seq, total);
    eprintln!("crash test: {kills} SIGKILLs, {attempts} requests for {BATCHES} batches");
}
