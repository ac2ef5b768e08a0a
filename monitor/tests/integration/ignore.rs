//! Items 9 and 13: ignore globs prune directories before watches are placed,
//! and the monitor's own reads never show up as events.

use std::time::Duration;

use crate::support::*;

#[test]
fn default_and_custom_ignores_are_pruned_and_cost_no_watches() {
    let d = tempdir();
    let root = d.path();
    sh(root, "mkdir -p src node_modules/.git .git/objects target/debug && for i in $(seq 1 40); do mkdir -p node_modules/p$i/lib; done");
    let m = Monitor::start(root, &["--ignore=*.log", "--ignore", "build/**"]);
    assert_eq!(
        m.metric("fs_monitor_watches"),
        2.0,
        "only the root and src/ are watched"
    );
    sh(
        root,
        "echo x > node_modules/p1/lib/i.js; echo y > .git/objects/o; echo z > target/debug/bin; \
         mkdir -p build/out a/node_modules/q; echo b > build/out/b; echo q > a/node_modules/q/x; echo l > app.log; \
         echo m > src/main.rs",
    );
    let evs = m.wait_for("src/main.rs", |e| has(e, "create file src/main.rs"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    assert_eq!(
        summary(&evs),
        vec!["create dir a", "create file src/main.rs"],
        "only unignored paths"
    );
    // a/node_modules was pruned too: a, and nothing below the ignored name.
    assert_eq!(m.metric("fs_monitor_watches"), 3.0);
}

#[test]
fn an_ignore_glob_written_as_an_absolute_path_under_the_root_applies() {
    let d = tempdir();
    let root = d.path();
    let glob = format!("--ignore={}/build/**", root.display());
    let m = Monitor::start(root, &[&glob]);
    sh(root, "mkdir build && echo b > build/b && echo s > s");
    m.wait_for("s", |e| has(e, "create file s"));
    let evs = m.settle(Duration::from_millis(300));
    assert_eq!(summary(&evs), vec!["create file s"]);
}

#[test]
fn own_reads_are_not_events_and_access_is_opt_in() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--checksum=sha256"]);
    sh(
        root,
        "echo data > f && echo more >> f && cat f > /dev/null && mkdir d && ls d > /dev/null",
    );
    let evs = m.wait_for("update of f", |e| has(e, "update file f"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(400))
    };
    assert!(
        evs.iter()
            .all(|e| e.event_type != file_event::EventType::Access),
        "{:?}",
        summary(&evs)
    );
    assert_eq!(
        summary(&evs),
        vec!["create file f", "update file f", "create dir d"]
    );
    drop(m);

    let m = Monitor::start(root, &["--checksum=sha256", "--debounce=1000", "--access"]);
    sh(root, "echo again >> f");
    let evs = m.wait_for("update with checksum", |e| {
        e.iter().any(|x| x.path == "f" && x.checksum.is_some())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !m.events()
            .iter()
            .any(|e| e.event_type == file_event::EventType::Access),
        "the checksum read was reported as access: {:?}",
        summary(&evs)
    );
    sh(root, "cat f > /dev/null");
    m.wait_for("access by cat", |e| has(e, "access file f"));
}
