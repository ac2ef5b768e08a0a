//! How often the monitor looks at a new file on disk (`lstat`, which
//! `strace` shows as `statx`, `newfstatat` or `lstat`): once for its
//! create, write and close read together, and once more when its line is
//! written; only once when its delete was read before its line was
//! written. The lines say the same as ever.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const FILES: usize = 50;

/// Looks allowed beyond one per file for each, because the kernel may hand
/// a file's events over in two reads (its buffer holds a part of the queue),
/// and a file is then looked at once in each. The code before the per-batch
/// look took three per file.
const SPLIT_READS: usize = FILES / 10;

/// Whether `strace` is installed and may trace here (ptrace can be denied
/// in containers). CI installs it (scripts/install-test-deps.sh), so under
/// `CI` these tests never skip.
fn strace_works() -> bool {
    let ok = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is missing or cannot trace here, and CI must run these tests"
        );
        eprintln!("skipped: strace is missing or cannot trace here");
    }
    ok
}

/// The monitor (default backend and debounce) under `strace`, which logs
/// its path lookups to `log`; and the monitor's own pid.
fn start_traced(root: &Path, log: &Path) -> (Monitor, i32) {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=statx,newfstatat,lstat", "-o"])
        .arg(log)
        .arg("--")
        .arg(BIN)
        .arg(root)
        .args(["--metrics-addr=off", "--backend=inotify"])
        .env("RUST_LOG", "info")
        .env_remove("FILE_MONITOR_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let m = Monitor::spawn(cmd, None);
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", m.pid()))
        .expect("children of strace");
    let pid = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the traced monitor");
    (m, pid)
}

/// How many looks `log` records at the files `f0`..`f{FILES-1}` of `root`.
fn lookups_of_files(log: &Path, root: &Path) -> usize {
    let text = std::fs::read_to_string(log).expect("strace log");
    let names: Vec<String> = (0..FILES)
        .map(|i| format!("\"{}\"", root.join(format!("f{i}")).display()))
        .collect();
    text.lines()
        .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
        .count()
}

/// Runs `script` in `root` while the monitor is stopped, so that it reads
/// every event the script caused at once.
fn while_stopped(pid: i32, root: &Path, script: &str) {
    signal(pid, Signal::SIGSTOP);
    sh(root, script);
    signal(pid, Signal::SIGCONT);
}

/// Stops the traced monitor with SIGTERM, checked to be a clean exit
/// (`strace` exits with the monitor's status, its log complete).
fn stop_traced(mut m: Monitor, pid: i32) {
    signal(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "monitor ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "clean exit");
}

fn log_path(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("strace.log")
}

/// A traced monitor on a new root where a script ran while it was stopped.
struct Traced {
    m: Monitor,
    pid: i32,
    logs: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Traced {
    /// Starts the traced monitor and runs `script` in its root while it is
    /// stopped; `None` when strace cannot run here.
    fn run(script: &str) -> Option<Traced> {
        if !strace_works() {
            return None;
        }
        let logs = tempdir();
        let root = tempdir();
        let (m, pid) = start_traced(root.path(), &log_path(&logs));
        while_stopped(pid, root.path(), script);
        Some(Traced { m, pid, logs, root })
    }

    /// Stops the monitor; how many looks it made at `f0`..`f{FILES-1}`.
    fn stop_and_count(self) -> usize {
        stop_traced(self.m, self.pid);
        lookups_of_files(&log_path(&self.logs), self.root.path())
    }
}

#[test]
fn a_new_file_is_looked_at_once_when_read_and_once_when_reported() {
    let _g = heavy();
    let Some(t) = Traced::run(&format!(
        "i=0; while [ $i -lt {FILES} ]; do echo data > f$i; i=$((i+1)); done"
    )) else {
        return;
    };
    t.m.wait_for("every create", |e| e.len() >= FILES);
    let evs = t.m.settle(Duration::from_millis(300));
    assert_eq!(evs.len(), FILES, "{:?}", summary(&evs));
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(short(e), format!("create file f{i}"));
        assert_eq!(e.size, Some(5), "{e:?}");
    }
    let looks = t.stop_and_count();
    eprintln!("{looks} lookups for {FILES} new files");
    assert!(
        looks <= 2 * FILES + SPLIT_READS,
        "{looks} lookups for {FILES} new files: more than one when their events are read and one when their lines are written"
    );
}

#[test]
fn a_file_deleted_before_its_line_is_looked_at_once() {
    let _g = heavy();
    let Some(t) = Traced::run(&format!(
        "i=0; while [ $i -lt {FILES} ]; do echo data > f$i; rm f$i; i=$((i+1)); done"
    )) else {
        return;
    };
    let evs = t.m.wait_for("every delete", |e| e.len() >= 2 * FILES);
    for i in 0..FILES {
        let f = format!("f{i}");
        assert_eq!(
            types_for(&evs, &f),
            ["create", "delete"],
            "{:?}",
            summary(&evs)
        );
        assert!(
            has(&evs, &format!("create file {f}")),
            "{:?}",
            summary(&evs)
        );
    }
    let looks = t.stop_and_count();
    eprintln!("{looks} lookups for {FILES} files created and deleted");
    assert!(
        looks <= FILES + SPLIT_READS,
        "{looks} lookups for {FILES} files created and deleted: more than one each"
    );
}

/// A new file replaced (a name renamed over it) before its line is
/// written: its create says it was a file, without a size it no longer
/// has, and the move carries what replaced it.
#[test]
fn a_new_file_replaced_before_its_line_keeps_its_kind_and_the_move_its_size() {
    if skipped_on_notify() {
        return;
    }
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--debounce=2000"]);
    while_stopped(
        m.pid(),
        root,
        "echo first > f; echo second-longer > g; mv g f",
    );
    m.wait_for("the move", |e| e.iter().any(|x| x.from.is_some()));
    let evs = m.settle(Duration::from_millis(300));
    assert_eq!(
        summary(&evs),
        ["create file f", "create file g", "move file g -> f"]
    );
    assert_eq!(evs[0].size, None, "{:?}", evs[0]);
    assert_eq!(evs[2].size, Some(14), "{:?}", evs[2]);
    m.stop();
}
