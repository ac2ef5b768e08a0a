//! A write that keeps the size and puts the mtime back (`touch -r`) still
//! moves the inode's ctime, which no user can set: rescans (a restart with
//! `--state-file`, `--poll`) compare it and report an `update`.

use std::path::Path;

use crate::support::*;

const BBBB: &str = "sha256:0bc4ed515ae40a64321fceadbbecceee6ea5baf3b6cf3f566f058cfce518aecc";
const CCCC: &str = "sha256:bb0423110c09eff0fac8cd5fb76e922a771b9be066ffa3bf672ae4d31b2696c8";

/// Rewrites `root/secret.txt` with `content` (as long as before) and puts
/// its mtime back, through a reference file outside the root.
fn edit_keeping_size_and_mtime(root: &Path, content: &str) {
    let aside = tempdir();
    let ref_file = aside.path().join("ref");
    let before = std::fs::metadata(root.join("secret.txt")).unwrap();
    sh(
        root,
        &format!(
            "touch -r secret.txt '{r}' && printf '{content}\\n' > secret.txt && touch -r '{r}' secret.txt",
            r = ref_file.display()
        ),
    );
    let after = std::fs::metadata(root.join("secret.txt")).unwrap();
    assert_eq!(
        (before.len(), before.modified().unwrap()),
        (after.len(), after.modified().unwrap()),
        "size and mtime as before"
    );
}

fn updates_of<'a>(evs: &'a [file_event::FileEvent], path: &str) -> Vec<&'a file_event::FileEvent> {
    evs.iter()
        .filter(|e| e.path == path && e.event_type == file_event::EventType::Update)
        .collect()
}

/// Starts the monitor on `root` with `args`, makes the file `marker` and
/// checks that its `create` is all the monitor reports (`why`): the start
/// found nothing to report.
fn start_reporting_only_marker(root: &Path, args: &[&str], marker: &str, why: &str) -> Monitor {
    let m = Monitor::start(root, args);
    sh(root, &format!("echo m > {marker}"));
    let line = format!("create file {marker}");
    let evs = m.wait_for(&line, |e| has(e, &line));
    assert_eq!(summary(&evs), [line], "{why}");
    m
}

#[test]
fn an_edit_that_keeps_size_and_mtime_while_stopped_is_an_update_at_restart() {
    let s = state_dirs();
    let (root, state_arg) = (s.root(), s.arg());
    sh(root, "printf 'AAAA\\n' > secret.txt");
    Monitor::start(root, &["--checksum=sha256", &state_arg]).stop();

    edit_keeping_size_and_mtime(root, "BBBB");
    let m = Monitor::start(root, &["--checksum=sha256", &state_arg]);
    let evs = m.wait_for("the update found by the restart", |e| {
        has(e, "update file secret.txt (rescan)")
    });
    let u = updates_of(&evs, "secret.txt");
    assert_eq!(u.len(), 1, "{:?}", summary(&evs));
    assert_eq!(u[0].checksum.as_deref(), Some(BBBB), "the content on disk");
    assert_eq!(u[0].size, Some(5));
    m.stop();
    let args = ["--checksum=sha256", &state_arg];
    start_reporting_only_marker(
        root,
        &args,
        "marker",
        "learnt: the next restart finds nothing",
    );
}

#[test]
fn an_edit_that_keeps_size_and_mtime_is_an_update_under_poll() {
    let d = tempdir();
    let root = d.path();
    sh(root, "printf 'AAAA\\n' > secret.txt");
    let m = Monitor::start(
        root,
        &["--poll", "--poll-interval=100", "--checksum=sha256"],
    );
    edit_keeping_size_and_mtime(root, "CCCC");
    // A scan may fall between the write and the `touch -r` (an update for
    // each); the last one says what the file holds.
    let evs = m.wait_for("the poll's update", |e| {
        updates_of(e, "secret.txt")
            .last()
            .is_some_and(|u| u.checksum.as_deref() == Some(CCCC))
    });
    assert!(
        evs.iter().all(|e| e.path == "secret.txt"),
        "{:?}",
        summary(&evs)
    );

    // A change of mode alone moves the ctime too: the scan cannot tell it
    // from a write with its mtime put back, and reports an update that
    // carries the same content.
    let n = updates_of(&evs, "secret.txt").len();
    sh(root, "chmod 600 secret.txt");
    let evs = m.wait_for("the update after chmod", |e| {
        updates_of(e, "secret.txt").len() > n
    });
    let u = updates_of(&evs, "secret.txt");
    assert_eq!(u.len(), n + 1, "{:?}", summary(&evs));
    assert_eq!(u[n].checksum.as_deref(), Some(CCCC), "same content");
    assert_seq_contiguous(&evs);
}

#[test]
fn a_state_file_without_ctimes_loads_without_an_update_for_every_file() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    sh(
        root,
        "printf 'AAAA\\n' > secret.txt && mkdir d && echo x > d/x && ln -s d s",
    );
    Monitor::start(root, &["--checksum=sha256", &state_arg]).stop();

    // The state file as the previous version wrote it: version 2, rows
    // without the ctime, and no journal after a clean exit.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    assert_eq!(v["version"], 3);
    v["version"] = 2.into();
    for row in v["entries"].as_array_mut().unwrap() {
        let row = row.as_array_mut().unwrap();
        assert_eq!(row.len(), 8, "{row:?}");
        row.truncate(7);
    }
    std::fs::write(state, v.to_string()).unwrap();
    if let Ok(j) = std::fs::read_to_string(journal(state)) {
        assert!(!j.contains("put"), "nothing journaled after the save: {j}");
    }

    let args = ["--checksum=sha256", &state_arg];
    start_reporting_only_marker(root, &args, "marker", "no update on upgrade").stop();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    assert_eq!(v["version"], 3, "written in this binary's version");

    // The ctimes learnt by that start are kept: an edit made while
    // stopped again is found.
    edit_keeping_size_and_mtime(root, "BBBB");
    let m = Monitor::start(root, &["--checksum=sha256", &state_arg]);
    let evs = m.wait_for("the update found by the restart", |e| {
        has(e, "update file secret.txt (rescan)")
    });
    assert_eq!(
        summary(&evs),
        ["update file secret.txt (rescan)"],
        "only the edited file"
    );
    assert_eq!(evs[0].checksum.as_deref(), Some(BBBB));
}

/// A change of mode, or a hard link added, while the monitor runs is no
/// event, and the ctime it moves is learnt: the next restart does not
/// report it as an update made then.
#[test]
fn status_changes_while_running_are_not_updates_at_restart() {
    let s = state_dirs();
    let (root, state_arg) = (s.root(), s.arg());
    sh(
        root,
        "echo one > f1 && echo two > f2 && mkdir d && echo three > d/f3",
    );
    let m = Monitor::start(root, &["--checksum=sha256", &state_arg]);
    sh(root, "chmod 600 f1 && ln f2 f2hl");
    m.wait_for("the link", |e| has(e, "create file f2hl"));
    // A chmod of the new name moves the ctime of the other one too.
    sh(
        root,
        "chmod 640 f2hl && chmod 700 d && chmod 600 d/f3 && echo m > marker",
    );
    let evs = m.wait_for("the marker", |e| has(e, "create file marker"));
    assert_eq!(
        summary(&evs),
        ["create file f2hl", "create file marker"],
        "status changes are no events"
    );
    m.stop();

    let args = ["--checksum=sha256", &state_arg];
    start_reporting_only_marker(root, &args, "marker2", "nothing changed while stopped");
}
