//! The store failing under the sink: another process holding it, the disk
//! full, a damaged journal. Clear messages, 503 (never 200) for what was not
//! committed, and recovery once the fault is gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fdb_sink::store::StoreExt;

use crate::harness::{event, ndjson, post, read_store, Sink, BIN};

#[test]
fn one_shot_commands_on_a_store_in_use_fail_at_once_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);
    let store = format!("embedded:{}", dir.path().display());
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, event(&uuid::Uuid::new_v4().to_string(), 1, "s")).expect("write");
    let input = input.display().to_string();
    for args in [
        vec!["import", &input],
        vec!["export", "--tenant", "acme"],
        vec!["retention", "--older-than", "90d"],
        vec!["dead-letters"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .args(["--store", &store])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("locked by another process"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("nothing was read or written"),
            "{args:?}: {stderr}"
        );
        // A one-shot command does not wait for the store: no promise of a retry.
        assert!(!stderr.contains("will re"), "{args:?}: {stderr}");
    }
    sink.stop();
}

/// A tmpfs of `mib` MiB mounted on a new directory, unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not permitted (not root, no tmpfs).
    pub fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .output()
            .expect("remount");
        assert!(out.status.success(), "{out:?}");
    }

    /// Fills what is left of the disk with one file; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        // The last bytes a partial chunk could not take.
        while f.write_all(&[0u8; 512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

/// A 503 for a batch the store did not commit says what happened and that
/// the client should retry, without the store's paths or error chain.
pub fn assert_tells_only_to_retry(body: &serde_json::Value, store_dir: &Path) {
    assert_eq!(body["error"], "store_unavailable", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("retry"), "{body}");
    assert!(message.contains("not commit"), "{body}");
    let dir = store_dir.display().to_string();
    for internal in [
        dir.as_str(),
        "/tmp",
        "audit.fjall",
        "store unavailable:",
        "fjall",
        "no space",
        "removed",
        "locked",
        "os error",
    ] {
        assert!(!message.contains(internal), "{internal:?} in {body}");
    }
}

/// True once the sink's log holds `text` (within a few seconds: the log is
/// read as the sink writes it).
pub fn log_says(sink: &Sink, text: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if sink.log.lock().is_ok_and(|l| l.contains(text)) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 500 events of about 1 kB each (batch `b` of `monitor`).
pub fn batch(monitor: &str, b: u64) -> Vec<u8> {
    let lines: Vec<String> = (1..=500)
        .map(|i| {
            let mut e: serde_json::Value =
                serde_json::from_str(&event(monitor, b * 500 + i, "s-full")).expect("event");
            e["metadata"]["pad"] = serde_json::Value::String("p".repeat(500));
            e.to_string()
        })
        .collect();
    ndjson(&lines)
}

#[test]
fn a_full_disk_is_answered_503_with_a_clear_reason_and_ingest_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store_dir: PathBuf = disk.path().join("store");
    let mut sink = Sink::start(&store_dir, &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut acknowledged = 0u64;
    let mut refused = Vec::new();
    for b in 0..20 {
        // A 503 for another transient reason (a loaded machine) is retried,
        // as Vector would; the full disk must be named once it is reached.
        // The same bytes each time: part of a refused batch may be stored.
        let bytes = batch(&monitor, b);
        let mut other_503 = 0;
        loop {
            let (status, body) = post(&sink, bytes.clone(), &[]);
            match status {
                200 => acknowledged += body["written"].as_u64().expect("written"),
                503 => {
                    // The client is told to retry, not the store's
                    // internals: the cause is in the sink's log.
                    assert_tells_only_to_retry(&body, &store_dir);
                    if !log_says(&sink, "no space left on the file system holding the store") {
                        other_503 += 1;
                        eprintln!("batch {b}: 503 for another reason, retried: {body}");
                        assert!(other_503 < 5, "batch {b}: {body}");
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    refused.push((b, bytes.clone()));
                }
                other => panic!("batch {b}: {other} {body}"),
            }
            break;
        }
    }
    assert!(!refused.is_empty(), "the disk never filled up");
    assert!(sink
        .metrics()
        .contains("fdb_sink_batches_total{outcome=\"store_error\"}"));
    // The store opens, but cannot take writes: not ready.
    sink.wait_ready(503);
    assert!(sink.metrics().contains("fdb_sink_store_up 0"));

    // Space returns: the refused batches, sent again as Vector would (after
    // Retry-After, once the readiness probe found the store back), are stored.
    disk.resize(200);
    sink.wait_ready(200);
    for (b, bytes) in refused {
        let (status, body) = post(&sink, bytes, &[]);
        assert_eq!(status, 200, "batch {b} after space returned: {body}");
        // What the refused attempt stored is found stored now.
        acknowledged += body["written"].as_u64().expect("written")
            + body["duplicates"].as_u64().expect("duplicates");
    }
    sink.wait_ready(200);
    sink.stop();
    assert_eq!(acknowledged, 20 * 500);
    let stored = read_store(&store_dir);
    assert_eq!(stored.records.len(), 20 * 500, "every batch stored once");
    assert_eq!(stored.sessions[0].events, 20 * 500);
    assert_eq!(stored.monitors[0].received, 20 * 500);
}

#[test]
fn import_on_a_full_disk_says_so_and_a_rerun_finishes_the_job() {
    let Some(disk) = SmallDisk::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let input = scratch.path().join("events.ndjson");
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut body = Vec::new();
    for b in 0..20 {
        body.extend_from_slice(&batch(&monitor, b));
        body.push(b'\n');
    }
    std::fs::write(&input, body).expect("write");
    let store = format!("embedded:{}", disk.path().join("store").display());
    let import = || {
        Command::new(BIN)
            .args(["import", "--store", &store])
            .arg(&input)
            .output()
            .expect("import")
    };
    let out = import();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no space left on the file system holding the store"),
        "{stderr}"
    );
    assert!(
        stderr.contains("importing the same input again"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("will re"),
        "a one-shot command retries nothing: {stderr}"
    );
    // Retention writes deletions: on the full disk it fails the same way.
    let retention = || {
        Command::new(BIN)
            .args([
                "retention",
                "--store",
                &store,
                "--older-than",
                "1s",
                // Every session goes: past the guard against a wrong clock.
                "--allow-removing-all",
            ])
            .output()
            .expect("retention")
    };
    let out = retention();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no space left on the file system holding the store"),
        "{stderr}"
    );

    disk.resize(200);
    let out = import();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = read_store(&disk.path().join("store"));
    assert_eq!(stored.records.len(), 20 * 500);
    assert_eq!(stored.sessions[0].events, 20 * 500);
    let out = retention();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = read_store(&disk.path().join("store"));
    assert!(stored.records.is_empty() && stored.sessions.is_empty());
}

#[test]
fn a_store_directory_removed_while_serving_is_never_acknowledged_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let (status, _) = post(&sink, batch(&monitor, 0), &[]);
    assert_eq!(status, 200);
    // The operator (or a volume mix-up) removes the database under the sink.
    std::fs::remove_dir_all(dir.path().join("audit.fjall")).expect("remove");
    let (status, body) = post(&sink, batch(&monitor, 1), &[]);
    assert_eq!(
        status, 503,
        "a write into unlinked files is no commit: {body}"
    );
    assert_tells_only_to_retry(&body, dir.path());
    assert!(
        log_says(&sink, "removed or replaced while the sink had it open"),
        "the log keeps the cause"
    );
    // Vector's retry (after Retry-After: the sink is ready again) lands in a
    // new store at the same place, and stays there.
    sink.wait_ready(200);
    let (status, body) = post(&sink, batch(&monitor, 1), &[]);
    assert_eq!(status, 200, "{body}");
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(
        stored.records.len(),
        500,
        "the acknowledged retry is stored"
    );
    assert!(stored.records.iter().all(|r| r.record.event.seq > 500));
}

/// A redelivery of a batch already stored, after the store directory was
/// removed, is found in the removed files: it must not be answered as
/// stored (200, all duplicates), since those files are gone. It gets 503,
/// and Vector's retry stores it in the new store.
#[test]
fn a_redelivery_into_a_removed_store_directory_is_not_answered_as_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let body = batch(&monitor, 0);
    let (status, first) = post(&sink, body.clone(), &[]);
    assert_eq!(
        (status, first["written"].as_u64()),
        (200, Some(500)),
        "{first}"
    );
    std::fs::remove_dir_all(dir.path().join("audit.fjall")).expect("remove");
    let (status, again) = post(&sink, body.clone(), &[]);
    assert_eq!(
        status, 503,
        "the duplicates it found are in removed files: {again}"
    );
    assert_tells_only_to_retry(&again, dir.path());
    sink.wait_ready(200);
    let (status, retry) = post(&sink, body, &[]);
    assert_eq!(
        (
            status,
            retry["written"].as_u64(),
            retry["duplicates"].as_u64()
        ),
        (200, Some(500), Some(0)),
        "{retry}"
    );
    sink.stop();
    assert_eq!(read_store(dir.path()).records.len(), 500);
}

/// Writes `count` events to a new NDJSON file in `dir`.
fn events_file(dir: &Path, monitor: &str, first_seq: u64, count: u64) -> PathBuf {
    let input = dir.join(format!("events-{first_seq}.ndjson"));
    let lines: Vec<String> = (first_seq..first_seq + count)
        .map(|seq| event(monitor, seq, "s-journal"))
        .collect();
    std::fs::write(&input, ndjson(&lines)).expect("write events");
    input
}

/// Imports `input` (one transaction, i.e. one journal batch, per 1,000
/// events) into the embedded store in `dir`, then opens it once more with
/// `export`, which cuts the journal's unused pre-allocated space: the journal
/// then ends with the last batch.
fn import(dir: &Path, input: &Path) {
    let store = format!("embedded:{}", dir.display());
    let out = Command::new(BIN)
        .args(["import", "--store", &store])
        .arg(input)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = export(dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn export(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["export", "--tenant", "acme", "--store"])
        .arg(format!("embedded:{}", dir.display()))
        .output()
        .expect("export")
}

/// The store's one journal file.
fn journal(dir: &Path) -> PathBuf {
    let journals: Vec<PathBuf> = std::fs::read_dir(dir.join("audit.fjall"))
        .expect("read store directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    journals[0].clone()
}

/// Overwrites `len` bytes at `offset` of `path` with pseudo-random bytes.
fn scribble(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open journal");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&garbage).expect("write");
    file.sync_all().expect("sync");
}

#[test]
fn a_journal_damaged_in_the_middle_is_refused_unchanged_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitor = uuid::Uuid::new_v4().to_string();
    let input = events_file(dir.path(), &monitor, 1, 5_000);
    import(dir.path(), &input);
    let journal = journal(dir.path());
    let len = std::fs::metadata(&journal).expect("journal").len();
    // 4 KiB of garbage in the middle: batches of acknowledged records follow.
    scribble(&journal, len / 2, 4096);
    let damaged = std::fs::read(&journal).expect("read journal");

    let mut first_message = None;
    for _ in 0..2 {
        let out = export(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing exported");
        for needle in [
            format!("the store's journal {} is damaged", journal.display()),
            "nothing was changed on disk".to_string(),
            format!(
                "keep a copy of {}",
                dir.path().join("audit.fjall").display()
            ),
            "restore the store from a backup or an export".to_string(),
            "truncate -s ".to_string(),
        ] {
            assert!(stderr.contains(&needle), "{needle:?} in {stderr}");
        }
        assert!(
            !stderr.contains("run the command again"),
            "no retry is promised for a damaged store: {stderr}"
        );
        let message = stderr
            .lines()
            .find(|l| l.starts_with("fdb-sink: error:"))
            .expect("error line")
            .to_string();
        // The same every time: the first attempt changed nothing.
        assert_eq!(*first_message.get_or_insert(message.clone()), message);
        assert!(
            std::fs::read(&journal).expect("read journal") == damaged,
            "the journal must be left byte for byte as it was"
        );
    }

    // `serve` on it never becomes ready, and changes nothing either.
    let mut sink = Sink::start(dir.path(), &[]);
    sink.wait_ready(503);
    // Readiness is checked every second while the store is down: the
    // damaged journal is not replayed again each time.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    sink.wait_ready(503);
    let (status, _) = post(&sink, ndjson(&[event(&monitor, 9_999, "s")]), &[]);
    assert_eq!(status, 503, "nothing is acknowledged into a damaged store");
    sink.stop();
    let log = sink.log.lock().expect("log").clone();
    assert!(log.contains("nothing was changed on disk"), "{log}");
    let replays = log
        .matches("and a valid batch follows at byte offset")
        .count();
    assert_eq!(
        replays, 1,
        "the journal was replayed {replays} times:\n{log}"
    );
    assert!(std::fs::read(&journal).expect("read journal") == damaged);

    // The way out the message offers, for an operator who accepts the loss:
    // cut the journal where it says, then import the same events again.
    let message = first_message.expect("message");
    let cut: u64 = message
        .split("truncate -s ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("offset in the message");
    assert!(cut < len / 2, "the cut is before the damage");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal")
        .set_len(cut)
        .expect("truncate");
    let out = export(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = read_store(dir.path()).records.len();
    assert!(kept > 0 && kept < 5_000, "{kept}");
    import(dir.path(), &input);
    assert_eq!(read_store(dir.path()).records.len(), 5_000);
}

#[test]
fn a_torn_journal_tail_is_discarded_with_a_warning_and_every_complete_batch_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let monitor = uuid::Uuid::new_v4().to_string();
    import(dir.path(), &events_file(dir.path(), &monitor, 1, 2_000));
    let journal = journal(dir.path());
    let two_batches = std::fs::metadata(&journal).expect("journal").len();
    import(dir.path(), &events_file(dir.path(), &monitor, 2_001, 1_000));
    let three_batches = std::fs::metadata(&journal).expect("journal").len();
    assert!(three_batches > two_batches);

    // A few garbage bytes after the last batch of a store closed cleanly.
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("open journal");
        file.write_all(b"\x01\x07\x00\x00\x00garbage")
            .expect("append");
    }
    let out = export(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("discarding an incomplete last batch"),
        "a discarded tail is never silent: {stderr}"
    );
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        three_batches
    );
    assert_eq!(read_store(dir.path()).records.len(), 3_000);

    // The file cut in the middle of its last batch (a crash while writing it).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal")
        .set_len((two_batches + three_batches) / 2)
        .expect("truncate");
    let out = export(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("discarding an incomplete last batch"),
        "{stderr}"
    );
    let stored = read_store(dir.path());
    assert_eq!(stored.records.len(), 2_000, "both complete batches");
    assert!(stored.records.iter().all(|r| r.record.event.seq <= 2_000));
}

#[test]
fn after_a_full_disk_the_sink_becomes_ready_again_on_its_own_once_space_returns() {
    let Some(disk) = SmallDisk::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store_dir: PathBuf = disk.path().join("store");
    let mut sink = Sink::start(&store_dir, &[]);
    sink.wait_ready(200);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut refused = Vec::new();
    let mut b = 0;
    while refused.is_empty() {
        assert!(b < 40, "the disk never filled up");
        // Kept: sent again as it was (part of it may be stored).
        let bytes = batch(&monitor, b);
        let (status, body) = post(&sink, bytes.clone(), &[]);
        match status {
            200 => {}
            503 => refused.push(bytes),
            other => panic!("batch {b}: {other} {body}"),
        }
        b += 1;
    }
    sink.wait_ready(503);
    // While the disk stays full, the readiness probes keep failing.
    std::thread::sleep(std::time::Duration::from_secs(7));
    sink.wait_ready(503);
    assert!(sink.metrics().contains("fdb_sink_store_up 0"));

    // Space returns and no client sends anything (a Service routes nothing
    // to a pod that is not ready): the sink finds out by itself.
    disk.resize(200);
    sink.wait_ready(200);
    assert!(sink.metrics().contains("fdb_sink_store_up 1"));
    for bytes in refused {
        let (status, body) = post(&sink, bytes, &[]);
        assert_eq!(
            status, 200,
            "the refused batch after space returned: {body}"
        );
    }
    sink.stop();
    let stored = read_store(&store_dir);
    assert_eq!(
        stored.records.len() as u64,
        b * 500,
        "every batch stored once"
    );
    // The readiness probes left nothing a read can see.
    let store = fdb_sink::store::embedded::EmbeddedStore::open(&store_dir).expect("open");
    let outside = store
        .read(|t| t.get_range(b"\xff", &[0xff; 16], 0, false))
        .expect("read");
    assert!(outside.is_empty(), "{outside:?}");
}
