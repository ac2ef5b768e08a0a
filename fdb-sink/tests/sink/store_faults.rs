//! The store failing under the sink: another process holding it, the disk
//! full. Clear messages, 503 (never 200) for what was not committed, and
//! recovery once the fault is gone.

use std::path::{Path, PathBuf};
use std::process::Command;

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
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not permitted (not root, no tmpfs).
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
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
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

fn batch(monitor: &str, b: u64) -> Vec<u8> {
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
        let (status, body) = post(&sink, batch(&monitor, b), &[]);
        match status {
            200 => acknowledged += body["written"].as_u64().expect("written"),
            503 => {
                let message = body["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("no space left on the file system holding the store"),
                    "{body}"
                );
                refused.push(b);
            }
            other => panic!("batch {b}: {other} {body}"),
        }
    }
    assert!(!refused.is_empty(), "the disk never filled up");
    assert!(sink
        .metrics()
        .contains("fdb_sink_batches_total{outcome=\"store_error\"}"));
    // The store opens, but cannot take writes: not ready.
    sink.wait_ready(503);
    assert!(sink.metrics().contains("fdb_sink_store_up 0"));

    // Space returns: the refused batches, sent again as Vector would, are stored.
    disk.resize(200);
    for b in &refused {
        let (status, body) = post(&sink, batch(&monitor, *b), &[]);
        assert_eq!(status, 200, "batch {b} after space returned: {body}");
        acknowledged += body["written"].as_u64().expect("written");
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
            .args(["retention", "--store", &store, "--older-than", "1s"])
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
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("removed or replaced")),
        "{body}"
    );
    // Vector's retry lands in a new store at the same place, and stays there.
    let (status, body) = post(&sink, batch(&monitor, 1), &[]);
    assert_eq!(status, 200, "{body}");
    sink.wait_ready(200);
    sink.stop();
    let stored = read_store(dir.path());
    assert_eq!(
        stored.records.len(),
        500,
        "the acknowledged retry is stored"
    );
    assert!(stored.records.iter().all(|r| r.record.event.seq > 500));
}
