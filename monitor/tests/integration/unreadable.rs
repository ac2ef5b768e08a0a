//! Directories the monitor (an unprivileged user) cannot read: what they
//! hold is reported once they become readable, and never reported deleted
//! while they are unreadable.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The monitor run as uid 65534 (root reads everything), or `None` when
/// that is not possible here.
fn monitor_as_nobody(root: &Path, args: &[&str]) -> Option<Monitor> {
    if !can_run_as_nobody() {
        return None;
    }
    let port = free_port();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg(root)
        .args(args)
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Some(Monitor::spawn(cmd, Some(port)))
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_directory_unreadable_when_seen_is_reported_once_it_becomes_readable() {
    let d = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    std::fs::create_dir(root.join("pre")).unwrap();
    std::fs::write(root.join("pre/old"), b"o").unwrap();
    chmod(&root.join("pre"), 0o000);
    let Some(m) = monitor_as_nobody(root, &["--debounce=0", "--poll-interval=200"]) else {
        return;
    };
    // Created unreadable (`mkdir -m 000`: no moment at which the monitor
    // could read it), opened up a moment later.
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create(root.join("later"))
        .unwrap();
    m.wait_for("create dir later", |e| has(e, "create dir later"));
    assert!(m.metric("fs_monitor_events_dropped_total{reason=\"unreadable_dir\"}") >= 2.0);
    chmod(&root.join("later"), 0o777);
    chmod(&root.join("pre"), 0o777);
    sh(
        root,
        "echo c > later/c && mkdir later/sub && echo d > later/sub/d && echo y > pre/y",
    );
    let evs = m.wait_for("the contents of both directories", |e| {
        ["later/c", "later/sub/d", "pre/y", "pre/old"]
            .iter()
            .all(|p| e.iter().any(|x| x.path == *p))
    });
    // Once readable, the directories are watched again: later changes arrive
    // as they happen.
    sh(root, "echo e > later/sub/e && rm pre/y");
    let evs2 = m.wait_for("events after the directories opened up", |e| {
        has(e, "create file later/sub/e") && has(e, "delete file pre/y")
    });
    assert!(evs.iter().all(|e| !e.path.is_empty()));
    assert_seq_contiguous(&evs2);
    let err = m.stderr();
    assert!(err.contains("directory readable again"), "{err}");
}

#[test]
fn an_unreadable_directory_is_not_reported_deleted_on_restart() {
    let d = tempdir();
    let st = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    chmod(st.path(), 0o777);
    let state_arg = format!("--state-file={}", st.path().join("index.json").display());
    sh(
        root,
        "mkdir locked && echo s > locked/secret && echo t > locked/two && echo g > gone",
    );
    let Some(m) = monitor_as_nobody(root, &[&state_arg, "--poll-interval=200"]) else {
        return;
    };
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));

    sh(root, "rm gone locked/two && chmod 000 locked");
    let m = monitor_as_nobody(root, &[&state_arg, "--poll-interval=200"]).unwrap();
    let evs = m.settle(Duration::from_millis(600));
    assert!(
        has(&evs, "delete file gone (rescan)"),
        "{:?}",
        summary(&evs)
    );
    assert!(
        evs.iter().all(|e| !e.path.starts_with("locked")),
        "unreadable is not deleted: {:?}",
        summary(&evs)
    );
    // Readable again: exactly what changed inside is reported.
    chmod(&root.join("locked"), 0o755);
    let evs = m.wait_for("delete of locked/two", |e| {
        has(e, "delete file locked/two (rescan)")
    });
    assert!(
        !evs.iter().any(|e| e.path == "locked/secret"),
        "{:?}",
        summary(&evs)
    );
}

#[test]
fn under_poll_a_directory_turning_unreadable_is_not_reported_deleted() {
    let d = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    sh(root, "mkdir dir && echo x > dir/x");
    let Some(m) = monitor_as_nobody(root, &["--poll", "--poll-interval=100"]) else {
        return;
    };
    sh(root, "echo y > dir/y");
    m.wait_for("create dir/y", |e| has(e, "create file dir/y"));
    chmod(&root.join("dir"), 0o000);
    std::thread::sleep(Duration::from_millis(500));
    chmod(&root.join("dir"), 0o755);
    sh(root, "echo z > dir/z");
    let evs = m.wait_for("create dir/z", |e| has(e, "create file dir/z"));
    assert_eq!(
        summary(&evs),
        vec!["create file dir/y", "create file dir/z"],
        "nothing below an unreadable directory is reported deleted"
    );
    assert!(
        m.stderr().contains("cannot read directory"),
        "{}",
        m.stderr()
    );
}

/// A directory that stays unreadable (a root-owned `lost+found` on a
/// workspace volume) is looked at again every poll interval without
/// consequences: writes to a file elsewhere are still merged into one
/// `update` over the debounce window.
#[test]
fn a_directory_that_stays_unreadable_does_not_break_write_merging() {
    let d = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    sh(root, "mkdir locked && echo f > f");
    chmod(&root.join("locked"), 0o000);
    let Some(m) = monitor_as_nobody(root, &["--debounce=2500", "--poll-interval=100"]) else {
        return;
    };
    // Ten writes 150 ms apart: at least ten retries of `locked` fall among them.
    for i in 0..10 {
        std::fs::write(root.join("f"), format!("{i}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    m.wait_for("the update of f", |e| has(e, "update file f"));
    let evs = m.settle(Duration::from_millis(600));
    let updates = evs.iter().filter(|e| e.path == "f").count();
    assert_eq!(updates, 1, "{:?}", summary(&evs));
    chmod(&root.join("locked"), 0o755);
}

/// A name chosen by the workspace's user cannot forge a log line or send
/// escape sequences to the terminal of whoever reads the sidecar's log.
#[test]
fn a_hostile_directory_name_is_logged_escaped() {
    let d = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    let name = "evil\nINFO forged \u{1b}[31mred";
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create(root.join(name))
        .unwrap();
    let Some(m) = monitor_as_nobody(root, &["--debounce=0", "--poll-interval=200"]) else {
        return;
    };
    std::fs::write(root.join("after"), b"x").unwrap();
    m.wait_for("a later event", |e| has(e, "create file after"));
    let err = m.stderr();
    assert!(
        err.contains("dir=evil\\nINFO forged \\u{1b}[31mred"),
        "the warning names the directory escaped: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "an ESC byte reached the log: {err:?}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("INFO forged")),
        "a name forged a log line: {err}"
    );
}

/// A directory created inside a watched one that the monitor can no longer
/// search (`chmod 000` on the parent, then `mkdir` by root): it cannot be
/// looked at or watched, so it is handled as an unreadable directory
/// (logged, counted once, looked at again every poll interval) and what it
/// holds is reported once it can be read. `inside_locked`: the parent is
/// opened first while the directory itself stays unreadable for a while.
fn created_inside_an_unsearchable_directory(backend: &str, inside_locked: bool) {
    let d = tempdir();
    let root = d.path();
    chmod(root, 0o777);
    let Some(m) = monitor_as_nobody(root, &[backend, "--debounce=0", "--poll-interval=200"]) else {
        return;
    };
    std::fs::create_dir(root.join("closed")).unwrap();
    // Watched and read while still open.
    m.wait_for("create dir closed", |e| has(e, "create dir closed"));
    chmod(&root.join("closed"), 0o000);
    sh(root, "mkdir closed/inside && echo i > closed/inside/f");
    m.wait_for("create dir closed/inside", |e| {
        has(e, "create dir closed/inside")
    });
    assert_eq!(
        m.metric("fs_monitor_events_dropped_total{reason=\"unreadable_dir\"}"),
        1.0,
        "{backend}: the unreadable directory is counted once"
    );
    let err = m.stderr();
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("cannot read directory")
            && l.contains("closed/inside")),
        "{backend}: the unreadable directory is logged: {err}"
    );
    // Several poll intervals while the parent stays closed: the directory
    // is still looked at again afterwards.
    let evs = m.settle(Duration::from_millis(800));
    assert_eq!(
        summary(&evs),
        ["create dir closed", "create dir closed/inside"],
        "{backend}"
    );
    if inside_locked {
        chmod(&root.join("closed/inside"), 0o000);
        chmod(&root.join("closed"), 0o755);
        // Several poll intervals: the parent is readable, the directory not yet.
        let evs = m.settle(Duration::from_millis(800));
        assert_eq!(
            summary(&evs),
            ["create dir closed", "create dir closed/inside"],
            "{backend}: nothing is known below the unreadable directory yet"
        );
        chmod(&root.join("closed/inside"), 0o755);
    } else {
        chmod(&root.join("closed"), 0o755);
    }
    m.wait_for("the file written while unreadable", |e| {
        has(e, "create file closed/inside/f (rescan)")
    });
    // Watched now: what follows arrives as it happens.
    sh(root, "echo later > closed/inside/g");
    let evs = m.wait_for("the file written once readable", |e| {
        has(e, "create file closed/inside/g")
    });
    let lines = summary(&evs);
    assert_eq!(
        lines[..4],
        [
            "create dir closed",
            "create dir closed/inside",
            "create file closed/inside/f (rescan)",
            "create file closed/inside/g",
        ],
        "{backend}: {lines:?}"
    );
    assert!(
        lines[4..]
            .iter()
            .all(|l| l == "update file closed/inside/g"),
        "{backend}: {lines:?}"
    );
    assert_seq_contiguous(&evs);
    let err = m.stderr();
    assert!(err.contains("directory readable again"), "{backend}: {err}");
}

#[test]
fn a_directory_created_inside_an_unsearchable_one_is_reported_once_readable_inotify() {
    created_inside_an_unsearchable_directory("--backend=inotify", false);
}

#[test]
fn a_directory_created_inside_an_unsearchable_one_is_reported_once_readable_notify() {
    created_inside_an_unsearchable_directory("--backend=notify", false);
}

#[test]
fn a_directory_unreadable_itself_when_its_parent_opens_is_reported_once_readable_inotify() {
    created_inside_an_unsearchable_directory("--backend=inotify", true);
}

#[test]
fn a_directory_unreadable_itself_when_its_parent_opens_is_reported_once_readable_notify() {
    created_inside_an_unsearchable_directory("--backend=notify", true);
}
