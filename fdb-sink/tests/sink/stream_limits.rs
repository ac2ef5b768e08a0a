//! `import` and `serve --stdin` read lines in bounded memory: a line over
//! the line limit (even one without a newline, hundreds of MB long) becomes
//! a `line_too_long` dead letter, and the lines around it are stored.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{event, read_store, BIN};
use crate::stdin::serve_stdin;

/// Peak resident memory of a running process (`VmHWM`), in bytes.
fn peak_rss(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .expect("the process is still running");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// Writes `n` bytes of one JSON-looking line (no newline) to `w`.
fn write_long_line(w: &mut impl Write, n: usize) {
    let head = b"{\"schema\":\"file-event/1\",\"metadata\":{\"pad\":\"";
    w.write_all(head).expect("write");
    let chunk = vec![b'x'; 1 << 20];
    let mut left = n - head.len();
    while left > 0 {
        let k = left.min(chunk.len());
        w.write_all(&chunk[..k]).expect("write");
        left -= k;
    }
}

/// Sends `before` events, a 200 MB line, then `after` events to the
/// child's stdin; once everything is written and read, returns the child's
/// peak memory (read while it still waits for more input), then closes stdin.
fn feed_with_a_huge_line(child: &mut Child, monitor: &str, session: &str) -> u64 {
    let mut stdin = child.stdin.take().expect("stdin");
    for i in 1..=500 {
        writeln!(stdin, "{}", event(monitor, i, session)).expect("write");
    }
    write_long_line(&mut stdin, 200_000_000);
    stdin.write_all(b"\n").expect("write");
    for i in 501..=1000 {
        writeln!(stdin, "{}", event(monitor, i, session)).expect("write");
    }
    stdin.flush().expect("flush");
    // Everything is in the pipe; give the reader time to take it in.
    std::thread::sleep(Duration::from_millis(1500));
    let peak = peak_rss(child);
    drop(stdin);
    peak
}

/// Most memory a command may use here: the store's own caches plus one
/// line of at most the 32 MiB line limit and its batch.
const PEAK_LIMIT: u64 = 300 << 20;

#[test]
fn import_of_a_line_over_the_limit_stores_a_dead_letter_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = Command::new(BIN)
        .args(["import", "--store", &store, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    let monitor = uuid::Uuid::new_v4().to_string();
    let peak = feed_with_a_huge_line(&mut child, &monitor, "s-long");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        peak < PEAK_LIMIT,
        "import of a 200 MB line peaked at {} MiB",
        peak >> 20
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["received"].as_u64(), Some(1001), "{summary}");
    assert_eq!(summary["written"].as_u64(), Some(1000), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(1), "{summary}");
    assert!(stderr.contains("line_too_long"), "{stderr}");

    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 1000, "the lines around it are stored");
    let [dl] = &stored.dead_letters[..] else {
        panic!("one dead letter expected: {:?}", stored.dead_letters.len())
    };
    assert_eq!(dl.letter.reason, "line_too_long");
    assert_eq!(dl.letter.raw_len, 200_000_000);
    assert!(dl.letter.raw_truncated);
    assert!(dl.letter.raw.starts_with("{\"schema\":\"file-event/1\""));
    assert!(
        dl.letter.detail.contains("200000000 bytes"),
        "{}",
        dl.letter.detail
    );

    // `dead-letters` lists it under its reason.
    let listed = Command::new(BIN)
        .args([
            "dead-letters",
            "--store",
            &store,
            "--reason",
            "line_too_long",
        ])
        .output()
        .expect("dead-letters");
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

#[test]
fn serve_stdin_stores_a_line_over_the_limit_as_a_dead_letter_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = serve_stdin(&store, Stdio::null());
    let monitor = uuid::Uuid::new_v4().to_string();
    let peak = feed_with_a_huge_line(&mut child, &monitor, "s-long-stdin");
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        peak < PEAK_LIMIT,
        "serve --stdin with a 200 MB line peaked at {} MiB",
        peak >> 20
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["written"].as_u64(), Some(1000), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(1), "{summary}");
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 1000);
    assert_eq!(stored.dead_letters.len(), 1);
    assert_eq!(stored.dead_letters[0].letter.reason, "line_too_long");
}

/// `serve --stdin` reads ahead of its commits, but not without bound: with
/// the store unavailable (its lock held, as by a second process), 48 lines
/// of 8 MiB (384 MiB) piped in stay in the pipe, not in the sink's memory;
/// once the store is back every one of them is stored.
#[test]
fn serve_stdin_read_ahead_is_bounded_in_bytes_while_commits_fail() {
    use nix::fcntl::{Flock, FlockArg};

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("audit.fjall");
    std::fs::create_dir_all(&db).expect("mkdir");
    let lock = Flock::lock(
        std::fs::File::create(db.join("lock")).expect("create"),
        FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, e)| e)
    .expect("flock");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = serve_stdin(&store, Stdio::null());
    const LINES: usize = 48;
    const LINE_BYTES: usize = 8 << 20;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let pad = vec![b'x'; LINE_BYTES];
        for i in 0..LINES {
            let line = format!("{{\"line\":{i},\"pad\":\"");
            stdin.write_all(line.as_bytes()).expect("write");
            stdin.write_all(&pad).expect("write");
            stdin.write_all(b"\"}\n").expect("write");
        }
    });
    // The reader takes in what it may; the commits keep failing.
    std::thread::sleep(Duration::from_secs(4));
    let peak = peak_rss(&child);
    assert!(
        !writer.is_finished(),
        "standard input was read ahead without bound"
    );
    assert!(
        peak < 200 << 20,
        "serve --stdin holding 384 MiB of unread lines peaked at {} MiB",
        peak >> 20
    );
    drop(lock);
    writer.join().expect("writer");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}", out.status);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(
        summary["dead_lettered"].as_u64(),
        Some(LINES as u64),
        "{summary}"
    );
    assert_eq!(read_store(dir.path()).dead_letters.len(), LINES);
}

/// `import` validates and commits a batch's lines 4 MiB at a time at most,
/// as the ingest endpoint does: sixteen invalid lines of 1 MiB (one batch of
/// 16 MiB) are committed as four chunks of four, one transaction each (the
/// dead letter of each holds about 100 kB).
#[test]
fn import_commits_a_batch_in_chunks_of_four_mib() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.ndjson");
    let mut input = Vec::with_capacity(17 << 20);
    for i in 0..16u8 {
        input.extend_from_slice(&vec![b'a' + i; 1 << 20]);
        input.push(b'\n');
    }
    std::fs::write(&file, input).expect("write");
    let store = format!("embedded:{}", dir.path().join("s").display());
    let out = crate::harness::cli(&["import", "--store", &store, file.to_str().expect("utf8")]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(
        (
            summary["received"].as_u64(),
            summary["dead_lettered"].as_u64(),
            summary["transactions"].as_u64()
        ),
        (Some(16), Some(16), Some(4)),
        "{summary}"
    );
}
