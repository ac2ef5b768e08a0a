//! Ingest while the store is known to be down: every request is answered
//! 503 + Retry-After at once, without reading its body or taking one of the
//! bounded in-flight slots, and ingest resumes by itself once the store is
//! back (the readiness loop keeps probing it).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::harness::{client, event, post, read_store, Sink};

/// Holds the embedded store's exclusive lock, as a second sink on the same
/// directory would: the sink cannot open its store.
fn hold_store_lock(dir: &Path) -> Flock<File> {
    let db = dir.join("audit.fjall");
    std::fs::create_dir_all(&db).expect("mkdir");
    let file = File::create(db.join("lock")).expect("create");
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("flock")
}

fn body(monitor: &str, from: u64, n: u64) -> Vec<u8> {
    (from..from + n)
        .map(|i| event(monitor, i, "s-outage"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// Sends `n` requests at once; their statuses, error codes and
/// `Retry-After`, and how long until the last was answered.
fn concurrent_posts(sink: &Sink, n: u64) -> (Vec<(u16, String, Option<String>)>, Duration) {
    let monitor = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let answers = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let b = body(&monitor, i * 10 + 1, 10);
                let url = sink.url("/v1/events");
                s.spawn(move || {
                    let r = client().post(url).body(b).send().expect("post");
                    let status = r.status().as_u16();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let v: serde_json::Value = r.json().unwrap_or_default();
                    (status, v["error"].as_str().unwrap_or("").to_owned(), retry)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    (answers, started.elapsed())
}

/// A request whose body is still on its way: headers and part of the body.
fn start_slow_request(sink: &Sink) -> TcpStream {
    let mut conn = TcpStream::connect(sink.addr).expect("connect");
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nHost: sink\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: 100000\r\n\r\n{{\"partial\":"
    )
    .expect("send");
    conn.flush().expect("flush");
    conn
}

/// The status line of the answer on `conn`, if one comes within `within`.
fn status_line_within(conn: &mut TcpStream, within: Duration) -> Option<String> {
    conn.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 256];
    match conn.read(&mut buf) {
        Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_owned),
        _ => None,
    }
}

/// With the store locked by another process (the sink knows it is down:
/// /readyz 503), a request whose body is still coming is answered 503 at
/// once instead of holding the only in-flight slot until the request
/// timeout, and 20 concurrent requests are all told that the store is
/// unavailable (not "saturated") at once. Once the lock is released, the
/// readiness loop finds the store back and ingest resumes.
#[test]
fn requests_during_a_known_outage_are_refused_at_once_without_taking_a_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = hold_store_lock(dir.path());
    let mut sink = Sink::start(
        dir.path(),
        &[
            "--max-inflight-batches",
            "1",
            "--request-timeout-secs",
            "6",
            "--retry-after-secs",
            "3",
        ],
    );
    sink.wait_ready(503);
    // Known down once a batch failed (or was refused) for it: until the
    // first check ends, the state is unknown, and store_up is 0 either way.
    let (status, r) = post(&sink, body("m-first", 1, 1), &[]);
    assert_eq!(
        (status, r["error"].as_str()),
        (503, Some("store_unavailable")),
        "{r}"
    );

    let mut slow = start_slow_request(&sink);
    let started = Instant::now();
    let (answers, took) = concurrent_posts(&sink, 20);
    eprintln!("20 concurrent requests during the outage answered in {took:?}");
    for (status, code, retry) in &answers {
        assert_eq!(
            (*status, code.as_str(), retry.as_deref()),
            (503, "store_unavailable", Some("3")),
            "{answers:?}"
        );
    }
    let line = status_line_within(&mut slow, Duration::from_secs(3));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 503")),
        "the slow request is answered at once: {line:?} after {:?}",
        started.elapsed()
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    drop(lock);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let (status, r) = post(&sink, body(&monitor, 1, 50), &[]);
    assert_eq!((status, r["written"].as_u64()), (200, Some(50)), "{r}");
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len(), 50);
}

/// An ext4 file system in a loop-mounted image that can be frozen
/// (`fsfreeze`): every write to it then blocks until it is thawed, as a
/// commit to a FoundationDB cluster out of reach waits. Thawed and
/// unmounted on drop.
struct FreezableDisk {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl FreezableDisk {
    /// `None` where it cannot be made (not root, no loop devices).
    fn mount() -> Option<FreezableDisk> {
        let dir = tempfile::tempdir().ok()?;
        let image = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).ok()?;
        File::create(&image).ok()?.set_len(256 << 20).ok()?;
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        if !ok(Command::new("mkfs.ext4").arg("-q").arg(&image))
            || !ok(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt))
        {
            return None;
        }
        Some(FreezableDisk { _dir: dir, mnt })
    }

    fn path(&self) -> &Path {
        &self.mnt
    }

    fn freeze(&self, frozen: bool) {
        let out = Command::new("fsfreeze")
            .arg(if frozen { "--freeze" } else { "--unfreeze" })
            .arg(&self.mnt)
            .output()
            .expect("fsfreeze");
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for FreezableDisk {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("--unfreeze")
            .arg(&self.mnt)
            .output();
        // Lazily: the sink may still have files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
    }
}

/// Waits until /readyz answers `status`, for at most `within`.
fn ready_within(sink: &Sink, status: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client()
            .get(sink.url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .is_ok_and(|r| r.status().as_u16() == status)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A store whose writes hang (the file system frozen; a FoundationDB
/// cluster out of reach does the same to commits): the readiness probe
/// write does not finish, so the sink becomes not ready by itself, and
/// then answers 20 concurrent requests 503 at once instead of letting
/// each wait for the request timeout in a slot. Thawed, it is ready again
/// and ingests.
#[test]
fn a_store_whose_writes_hang_is_not_ready_and_requests_do_not_wait_for_it() {
    let Some(disk) = FreezableDisk::mount() else {
        eprintln!("skipped: cannot mount a loop file system here (needs root)");
        return;
    };
    let store_dir = disk.path().join("store");
    let mut sink = Sink::start(&store_dir, &["--request-timeout-secs", "5"]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let (status, r) = post(&sink, body(&monitor, 1, 20), &[]);
    assert_eq!(status, 200, "{r}");

    // Sent again, the same bytes, once the store is back.
    let again = body(&monitor, 21, 20);
    disk.freeze(true);
    let hung = {
        let url = sink.url("/v1/events");
        let b = again.clone();
        std::thread::spawn(move || {
            client()
                .post(url)
                .body(b)
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let frozen_at = Instant::now();
    let not_ready = ready_within(&sink, 503, Duration::from_secs(40));
    if !not_ready {
        disk.freeze(false);
        panic!(
            "/readyz still 200 {:?} after the freeze",
            frozen_at.elapsed()
        );
    }
    eprintln!("not ready {:?} after the freeze", frozen_at.elapsed());
    let (answers, took) = concurrent_posts(&sink, 20);
    eprintln!("20 concurrent requests while writes hang answered in {took:?}");
    disk.freeze(false);
    for (status, code, retry) in &answers {
        assert_eq!(
            (*status, code.as_str(), retry.is_some()),
            (503, "store_unavailable", true),
            "{answers:?}"
        );
    }
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(hung.join().expect("thread").ok(), Some(503));

    assert!(ready_within(&sink, 200, Duration::from_secs(20)));
    let (status, r) = post(&sink, again, &[]);
    assert_eq!(status, 200, "{r}");
    sink.stop();
    assert_eq!(read_store(&store_dir).records.len(), 40);
}
