//! `serve --stdin` and `import`: the same validation and write path.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::{event, import_stdin, read_store, BIN};

/// `fdb-sink serve --stdin` on `store`, its stdin and stdout piped, its
/// log to `stderr`.
pub fn serve_stdin(store: &str, stderr: Stdio) -> std::process::Child {
    Command::new(BIN)
        .args([
            "serve",
            "--stdin",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn")
}

#[test]
fn serve_stdin_ingests_until_eof_then_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = serve_stdin(&store, Stdio::null());
    let monitor = uuid::Uuid::new_v4().to_string();
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for i in 1..=2500 {
            writeln!(stdin, "{}", event(&monitor, i, "s-stdin")).expect("write");
        }
        writeln!(stdin, "garbage line").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("summary on stdout");
    assert_eq!(summary["written"].as_u64(), Some(2500), "{summary}");
    assert_eq!(summary["dead_lettered"].as_u64(), Some(1), "{summary}");
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 2500);
    assert_eq!(stored.monitors[0].max_seq, 2500);
    assert_eq!(stored.dead_letters.len(), 1);
}

#[test]
fn import_reads_files_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().join("store").display());
    let monitor = uuid::Uuid::new_v4().to_string();
    let file = dir.path().join("events.ndjson.zst");
    let text: String = (1..=1200)
        .map(|i| event(&monitor, i, "s-imp") + "\n")
        .collect();
    std::fs::write(&file, zstd::encode_all(text.as_bytes(), 3).expect("zstd")).expect("write");
    for expect_written in [1200, 0] {
        let out = Command::new(BIN)
            .args(["import", "--store", &store])
            .arg(&file)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
        assert_eq!(s["written"].as_u64(), Some(expect_written), "{s}");
        assert_eq!(s["received"].as_u64(), Some(1200), "{s}");
    }
    let stored = read_store(&dir.path().join("store"));
    assert_eq!(stored.records.len(), 1200);
    assert_eq!(stored.sessions[0].events, 1200);
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("embedded:{}", dir.path().join("typo").display());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let on_file = format!("embedded:{}", file.display());
    let dir_arg = dir.path().display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["import", "--store", "redis:localhost"],
            "embedded:<dir>",
        ),
        // Reading or pruning tools never create a store.
        (
            vec!["export", "--store", &missing, "--tenant", "acme"],
            "no embedded store",
        ),
        (
            vec!["retention", "--store", &missing, "--older-than", "90d"],
            "no embedded store",
        ),
        (
            vec!["dead-letters", "--store", &missing],
            "no embedded store",
        ),
        // A store path that can never work fails at start.
        (
            vec!["serve", "--store", &on_file, "--listen", "127.0.0.1:0"],
            "cannot create the directory",
        ),
        (
            vec!["import", "--store", &on_file],
            "cannot create the directory",
        ),
        // A mistyped input file is reported before any store is created.
        (
            vec!["import", "--store", &missing, "no-such-file.ndjson"],
            "no-such-file.ndjson: No such file or directory",
        ),
        (
            vec!["import", "--store", &missing, &dir_arg],
            "is a directory, not a file",
        ),
        (
            vec![
                "serve",
                "--store",
                &missing,
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ],
            "--jwt-secret-file",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dir.path().join("typo").exists(), "no store was created");
}

#[test]
fn import_recognises_compressed_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitor = uuid::Uuid::new_v4().to_string();
    let text: String = (1..=10)
        .map(|i| event(&monitor, i, "s-pipe") + "\n")
        .collect();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gzip");
        e.finish().expect("gzip")
    };
    let zst = zstd::encode_all(text.as_bytes(), 3).expect("zstd");
    for (name, bytes) in [("gzip", gz), ("zstd", zst)] {
        let store_dir = dir.path().join(name);
        let store = format!("embedded:{}", store_dir.display());
        let out = import_stdin(&store, &bytes);
        assert!(out.status.success(), "{name}");
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
        assert_eq!(
            (s["written"].as_u64(), s["dead_lettered"].as_u64()),
            (Some(10), Some(0)),
            "{name}: {s}"
        );
    }
}

#[test]
fn serve_stdin_commits_what_the_monitor_writes_as_both_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("embedded:{}", dir.path().display());
    let mut child = serve_stdin(&store, Stdio::piped());
    // Started: the signal handlers are installed before this line.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).expect("stderr") > 0,
            "exited before listening"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{}", event(&monitor, 1, "s-term")).expect("write");
    // SIGTERM reaches the pipeline; the monitor writes its last lines, then
    // closes the pipe, while the sink is shutting down.
    let started = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    for i in 2..=3 {
        writeln!(stdin, "{}", event(&monitor, i, "s-term")).expect("write");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "exits promptly: {:?}",
        started.elapsed()
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("summary on stdout");
    assert_eq!(summary["written"].as_u64(), Some(3), "{summary}");
    assert_eq!(read_store(dir.path()).records.len(), 3);
}

/// A tmpfs of `mib` MiB on a new directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, no tmpfs).
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success())
            .then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).output();
    }
}

/// The value of the unlabelled metric `name` in `text`.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A stdin batch committed in several transactions, of which the first
/// ones commit and a later one fails (the disk fills up): the batch is
/// retried, finds its own first transactions stored, and counts them as
/// written once, not as duplicate deliveries, in its summary and in the
/// metrics.
#[test]
fn serve_stdin_does_not_count_its_own_retried_writes_as_duplicates() {
    let Some(disk) = Tmpfs::mount(24) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store = format!("embedded:{}", disk.0.path().join("store").display());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--stdin",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
        ])
        // Many small transactions per batch.
        .args(["--txn-target-bytes", "10000"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.send(addr.to_owned());
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
    }
    let addr = addr_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("listening");
    let metrics = || {
        crate::harness::client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("metrics")
    };
    let says = |text: &str| log.lock().is_ok_and(|l| l.contains(text));
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "never {what}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // Ready: the start-up probe write is done.
    wait_for("ready", &|| {
        crate::harness::client()
            .get(format!("http://{addr}/readyz"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });

    // Leave room for some of the batch's transactions, not for all.
    let filler = disk.0.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().expect("len").len();
        f.set_len(len.saturating_sub(512 << 10)).expect("truncate");
    }
    let monitor = uuid::Uuid::new_v4().to_string();
    let n = 3000u64;
    let mut stdin = child.stdin.take().expect("stdin");
    for i in 1..=n {
        writeln!(stdin, "{}", event(&monitor, i, "s-retry")).expect("write");
    }
    stdin.flush().expect("flush");
    wait_for("a failed commit", &|| {
        says("stdin batch not committed; retrying")
    });
    std::fs::remove_file(&filler).expect("free space");
    wait_for("all written", &|| {
        let m = metrics();
        metric(&m, "fdb_sink_events_written_total").unwrap_or(0)
            + metric(&m, "fdb_sink_events_duplicate_total").unwrap_or(0)
            >= n
            && metric(&m, "fdb_sink_batches_total{outcome=\"committed\"}").unwrap_or(0) >= 1
    });
    let m = metrics();
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("summary on stdout");
    assert_eq!(
        (
            summary["received"].as_u64(),
            summary["written"].as_u64(),
            summary["duplicates"].as_u64()
        ),
        (Some(n), Some(n), Some(0)),
        "{summary}"
    );
    assert_eq!(
        (
            metric(&m, "fdb_sink_events_received_total"),
            metric(&m, "fdb_sink_events_written_total"),
            metric(&m, "fdb_sink_events_duplicate_total")
        ),
        (Some(n), Some(n), Some(0)),
        "{m}"
    );
    let stored = read_store(&disk.0.path().join("store"));
    assert_eq!(stored.records.len() as u64, n);
}

/// `serve --stdin` fed `bytes`: exit status, summary, stderr.
fn serve_stdin_with(store: &str, bytes: &[u8]) -> (Option<i32>, serde_json::Value, String) {
    let mut child = serve_stdin(store, Stdio::piped());
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        summary,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// gzip and zstd on standard input are decompressed, as `import` does, and
/// the lines that were not events are reported on stderr at exit.
#[test]
fn serve_stdin_decompresses_gzip_and_zstd_and_reports_invalid_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitor = uuid::Uuid::new_v4().to_string();
    let text: String = (1..=10)
        .map(|i| event(&monitor, i, "s-zip") + "\n")
        .chain(["not an event\n".to_string()])
        .collect();
    let zst = zstd::encode_all(text.as_bytes(), 3).expect("zstd");
    for (name, bytes) in [
        ("gzip", gzip(text.as_bytes())),
        ("zstd", zst),
        ("plain", text.clone().into_bytes()),
    ] {
        let store_dir = dir.path().join(name);
        let store = format!("embedded:{}", store_dir.display());
        let (code, s, err) = serve_stdin_with(&store, &bytes);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(
            (
                s["received"].as_u64(),
                s["written"].as_u64(),
                s["dead_lettered"].as_u64()
            ),
            (Some(11), Some(10), Some(1)),
            "{name}: {s}"
        );
        assert!(
            err.contains("1 of 11 lines of standard input were not stored as records"),
            "{name}: {err}"
        );
        let stored = read_store(&store_dir);
        assert_eq!(stored.records.len(), 10, "{name}");
        assert_eq!(stored.dead_letters.len(), 1, "{name}");
    }
}

/// A compressed stream cut short: the complete lines before the cut are
/// stored, the cut is reported on stderr, the exit status is 1, and nothing
/// is stored as a dead letter.
#[test]
fn serve_stdin_reports_a_truncated_stream_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitor = uuid::Uuid::new_v4().to_string();
    let text: String = (1..=3000)
        .map(|i| event(&monitor, i, "s-cut") + "\n")
        .collect();
    let gz = gzip(text.as_bytes());
    let store = format!("embedded:{}", dir.path().display());
    let (code, s, err) = serve_stdin_with(&store, &gz[..gz.len() / 2]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("standard input (gzip-compressed NDJSON) is cut short or corrupt"),
        "{err}"
    );
    let written = s["written"].as_u64().expect("summary on stdout");
    assert!(written > 0 && written < 3000, "{s}");
    assert_eq!(s["dead_lettered"].as_u64(), Some(0), "{s}");
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len() as u64, written);
    assert!(stored.dead_letters.is_empty());
}
