//! Item 6: `--poll` gives the same events by scanning.

use std::time::Duration;

use crate::support::*;

#[test]
fn poll_mode_reports_creates_updates_moves_deletes() {
    let d = tempdir();
    let root = d.path();
    sh(root, "echo a > a && mkdir d && echo x > d/x");
    let start = disk_tree(root, &[]);
    let m = Monitor::start(root, &["--poll", "--poll-interval=100"]);
    sh(root, "mkdir -p n/m && echo 1 > n/m/f");
    m.wait_for("poll create", |e| has(e, "create file n/m/f"));
    sh(root, "echo more >> a");
    m.wait_for("poll update", |e| has(e, "update file a"));
    sh(root, "mv d d2");
    m.wait_for("poll move by inode", |e| has(e, "move dir d -> d2"));
    sh(root, "rm -r n");
    m.wait_for("poll delete", |e| has(e, "delete dir n"));
    let evs = m.settle(Duration::from_millis(400));
    assert!(
        evs.iter().all(|e| !e.rescan),
        "poll events are ordinary events"
    );
    assert_eq!(
        m.metric("fs_monitor_watches"),
        0.0,
        "poll mode holds no inotify watch"
    );
    assert_seq_contiguous(&evs);
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
}
