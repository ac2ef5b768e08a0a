//! Item 14: `--state-file` reports changes made while the monitor was down.

use std::time::Duration;

use crate::support::*;

#[test]
fn changes_while_down_are_reported_as_rescan_on_restart() {
    let d = tempdir();
    let st = tempdir();
    let root = d.path();
    let state = st.path().join("index.json");
    let state_arg = format!("--state-file={}", state.display());
    sh(
        root,
        "echo 1 > a && echo 2 > b && mkdir dir && echo 3 > dir/c",
    );
    let start = disk_tree(root, &[]);

    let m = Monitor::start(root, &[&state_arg]);
    sh(root, "echo live > live");
    m.wait_for("live", |e| has(e, "create file live"));
    let (status, _, first) = m.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(state.exists(), "state file written on exit");

    sh(
        root,
        "rm a && echo longer-content >> b && mkdir -p n && echo x > n/x && mv dir dir2",
    );
    let m = Monitor::start(root, &[&state_arg]);
    let second = m.settle(Duration::from_millis(500));
    let got: Vec<String> = summary(&second);
    for l in [
        "delete file a (rescan)",
        "update file b (rescan)",
        "create dir n (rescan)",
        "create file n/x (rescan)",
        "move dir dir -> dir2 (rescan)",
    ] {
        assert!(got.contains(&l.to_string()), "{l} missing: {got:?}");
    }
    assert_eq!(got.len(), 5, "{got:?}");
    assert_seq_contiguous(&second);
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    assert_trees_equal(&replay(&start, &all), &disk_tree(root, &[]));
}

#[test]
fn a_state_file_inside_the_root_is_not_reported() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--state-file=.monitor-state.json"]);
    std::fs::write(root.join("x"), b"x").unwrap();
    m.wait_for("x", |e| has(e, "create file x"));
    let (_, _, evs) = {
        // Changing directory for a relative path would race other tests; use an absolute one.
        drop(m);
        let m = Monitor::start(
            root,
            &[&format!(
                "--state-file={}/.monitor-state.json",
                root.display()
            )],
        );
        std::fs::write(root.join("y"), b"y").unwrap();
        m.wait_for("y", |e| has(e, "create file y"));
        m.terminate()
    };
    assert!(root.join(".monitor-state.json").exists());
    assert!(
        !evs.iter().any(|e| e.path.contains("monitor-state")),
        "{:?}",
        summary(&evs)
    );
}

#[test]
fn a_state_file_that_does_not_fit_leaves_no_partial_file_behind() {
    let d = tempdir();
    let root = d.path();
    let Some(disk) = Tmpfs::mount("16k") else {
        return;
    };
    // About 60 bytes per entry: far more than 16 KiB.
    sh(root, "for i in $(seq 1 1000); do echo $i > f$i; done");
    let state = disk.path().join("index.json");
    let mut m = Monitor::start(root, &[&format!("--state-file={}", state.display())]);
    signal(m.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = m.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let err = m.stderr();
    assert!(err.contains("could not persist the index"), "{err}");
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}
