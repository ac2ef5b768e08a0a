//! Item 5: lost kernel events (queue overflow) are repaired by a rescan whose
//! differences are flagged `"rescan": true`; the stream, replayed, reproduces
//! the real tree.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

fn max_queued_events() -> usize {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384)
}

#[test]
fn queue_overflow_while_stopped_is_repaired_by_a_rescan() {
    let _g = heavy();
    let d = tempdir();
    let root = d.path();
    sh(root, "mkdir -p flood keep old && for i in 1 2 3 4 5; do echo $i > old/f$i; echo $i > keep/k$i; done");
    let start = disk_tree(root, &[]);
    let m = Monitor::start(root, &[]);

    signal(m.pid(), Signal::SIGSTOP);
    let n = max_queued_events() + 2000;
    // Far more events than the kernel queue holds, in a watched directory,
    // then deletes, a directory move and a new deep tree, none seen live.
    for i in 0..n {
        std::fs::write(root.join("flood").join(format!("f{i}")), b"x").unwrap();
    }
    std::fs::remove_file(root.join("old/f1")).unwrap();
    std::fs::rename(root.join("old"), root.join("moved")).unwrap();
    std::fs::remove_file(root.join("keep/k2")).unwrap();
    std::fs::create_dir_all(root.join("late/a/b")).unwrap();
    std::fs::write(root.join("late/a/b/z"), b"z").unwrap();
    signal(m.pid(), Signal::SIGCONT);

    m.wait_for_within("rescan counted", Duration::from_secs(60), |_| {
        metric_value(&m.metrics(), "fs_monitor_rescans_total") >= 1.0
    });
    let evs = m.settle(Duration::from_millis(1500));
    assert!(evs.iter().any(|e| e.rescan), "no event flagged rescan");
    assert!(
        metric_value(
            &m.metrics(),
            "fs_monitor_events_dropped_total{reason=\"kernel_queue_overflow\"}"
        ) >= 1.0
    );
    assert_seq_contiguous(&evs);
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));

    // Directories found by the rescan are watched afterwards.
    std::fs::write(root.join("late/a/b/after"), b"1").unwrap();
    std::fs::write(root.join("moved/after"), b"1").unwrap();
    m.wait_for("live events after the rescan", |e| {
        has(e, "create file late/a/b/after") && has(e, "create file moved/after")
    });
    let evs = m.settle(Duration::from_millis(300));
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
}

/// Files moved into the root and out again while the kernel queue is full:
/// the moves in that fit behind the overflow notice are queued, the moves
/// out are lost without another notice (the kernel queues none while one
/// is unread). The rescan finds none of those files; replayed over it, the
/// queued moves in would report files that no longer exist.
#[test]
fn events_queued_behind_an_overflow_are_not_replayed_over_the_rescan() {
    let _g = heavy();
    const VISITORS: usize = 4096;
    let d = tempdir();
    let outside = tempdir();
    let root = d.path();
    std::fs::create_dir(root.join("flood")).unwrap();
    for i in 0..VISITORS {
        std::fs::write(outside.path().join(format!("v{i}")), b"v").unwrap();
    }
    let start = disk_tree(root, &[]);
    let m = Monitor::start(root, &[]);
    signal(m.pid(), Signal::SIGSTOP);
    for i in 0..max_queued_events() + 100 {
        std::fs::write(root.join(format!("flood/f{i}")), b"").unwrap();
    }
    // The monitor reads part of the queue (lines come out), not up to the
    // overflow notice...
    signal(m.pid(), Signal::SIGCONT);
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    while m.raw_lines().is_empty() && std::time::Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(m.pid(), Signal::SIGSTOP);
    assert!(
        !m.stderr().contains("overflowed"),
        "the monitor read up to the overflow notice before it could be stopped"
    );
    // ... and the moves in fill the room it made behind the notice.
    for i in 0..VISITORS {
        let name = format!("v{i}");
        std::fs::rename(outside.path().join(&name), root.join(&name)).unwrap();
    }
    for i in 0..VISITORS {
        let name = format!("v{i}");
        std::fs::rename(root.join(&name), outside.path().join(&name)).unwrap();
    }
    signal(m.pid(), Signal::SIGCONT);

    m.wait_for_within("rescan counted", Duration::from_secs(60), |_| {
        metric_value(&m.metrics(), "fs_monitor_rescans_total") >= 1.0
    });
    let evs = m.settle(Duration::from_millis(1500));
    assert_seq_contiguous(&evs);
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
}
