//! Symlinks, FIFOs and sockets that exist for less than `--debounce` are
//! reported with their own kind: it is read when their create is, not only
//! when the line is written (by then they are gone).

use std::time::Duration;

use crate::support::*;

#[test]
fn short_lived_symlinks_fifos_and_sockets_keep_their_kind() {
    let d = tempdir();
    let root = d.path();
    sh(root, "mkdir realdir");
    let m = Monitor::start(root, &["--debounce=2000"]);
    // Each lives long enough for its create to be read, and far less than
    // the debounce its line waits for.
    let lifetime = Duration::from_millis(300);
    for (make, remove) in [
        ("ln -s target s1", "rm s1"),
        ("ln -s realdir D", "rm D"),
        ("mkfifo ff", "rm ff"),
    ] {
        sh(root, make);
        std::thread::sleep(lifetime);
        sh(root, remove);
    }
    let sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    std::thread::sleep(lifetime);
    drop(sock);
    std::fs::remove_file(root.join("sock")).unwrap();

    let evs = m.wait_for("the socket's delete", |e| {
        types_for(e, "sock") == ["create", "delete"]
    });
    assert_eq!(
        summary(&evs),
        [
            "create symlink s1",
            "delete symlink s1",
            "create symlink D",
            "delete symlink D",
            "create other ff",
            "delete other ff",
            "create other sock",
            "delete other sock",
        ]
    );
    assert_seq_contiguous(&evs);
}

#[test]
fn a_short_lived_regular_file_is_still_a_file() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--debounce=2000"]);
    sh(root, "echo x > f");
    std::thread::sleep(Duration::from_millis(300));
    sh(root, "rm f");
    let evs = m.wait_for("the delete", |e| types_for(e, "f") == ["create", "delete"]);
    assert_eq!(summary(&evs), ["create file f", "delete file f"]);
}

/// A directory made, filled, moved away and a file made at its old name,
/// all read in one batch: the create at that name is of a directory (what
/// the kernel said), the move is of a directory, and the file at the old
/// name is a file. The stream replays to the disk.
#[test]
fn a_directory_moved_away_and_replaced_by_a_file_in_one_read_stays_a_directory() {
    if skipped_on_notify() {
        return;
    }
    let d = tempdir();
    let root = d.path();
    let start = disk_tree(root, &[]);
    let m = Monitor::start(root, &["--debounce=0"]);
    signal(m.pid(), nix::sys::signal::Signal::SIGSTOP);
    sh(root, "mkdir -p a/b/c; echo x > a/b/c/x; mv a z; echo y > a");
    signal(m.pid(), nix::sys::signal::Signal::SIGCONT);
    m.wait_for("the file at the old name", |e| has(e, "create file a"));
    let evs = m.settle(Duration::from_millis(300));
    let lines = summary(&evs);
    assert!(!has(&evs, "move file a -> z"), "{lines:?}");
    assert!(has(&evs, "create dir a"), "{lines:?}");
    assert!(has(&evs, "move dir a -> z"), "{lines:?}");
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
    assert_seq_contiguous(&evs);
}
