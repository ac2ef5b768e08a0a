//! `--state-file`: an entry made while the monitor was stopped that got the
//! inode number of one deleted meanwhile (ext4 hands freed inodes out
//! again at once) is reported as created, not as the deleted one moved;
//! a rename made while stopped stays a move.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// Tries to arrange an inode reuse this many times at most.
const ATTEMPTS: usize = 20;

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// When the stopped monitor's state was last written (state file or
/// journal, whichever is later).
fn last_saved(state: &Path) -> SystemTime {
    let s = mtime(state).expect("state file written on exit");
    mtime(&journal(state)).map_or(s, |j| j.max(s))
}

/// Runs the monitor on `root` with `state` until it is watching, then
/// stops it; returns its events.
fn run_and_stop(root: &Path, state: &Path) -> Vec<file_event::FileEvent> {
    Monitor::start(root, &[&state_arg(state)]).stop()
}

/// Restarts the monitor and returns what it reports about the changes
/// made while it was stopped (`done` tells when they are all there).
fn restart(
    root: &Path,
    state: &Path,
    done: impl Fn(&[String]) -> bool,
) -> Vec<file_event::FileEvent> {
    let m = Monitor::start(root, &[&state_arg(state)]);
    m.wait_for("the changes made while stopped", |e| done(&summary(e)));
    let evs = m.settle(Duration::from_millis(300));
    assert_seq_contiguous(&evs);
    m.stop();
    evs
}

/// Makes `setup` in `root`, runs and stops the monitor, then runs
/// `replace` (which deletes `old` and makes `new`), until the file system
/// gave `new` the inode `old` had and `new` was born after the state was
/// saved (what a replacement made while the monitor is stopped looks like).
/// Returns the tree as the monitor last reported it.
fn replace_reusing_inode(
    root: &Path,
    state: &Path,
    setup: &str,
    replace: &str,
    (old, new): (&str, &str),
) -> Tree {
    for _ in 0..ATTEMPTS {
        sh(root, setup);
        let start = disk_tree(root, &[]);
        let first = run_and_stop(root, state);
        let ino = std::fs::symlink_metadata(root.join(old)).unwrap().ino();
        let saved = last_saved(state);
        sh(root, replace);
        let m = std::fs::symlink_metadata(root.join(new)).unwrap();
        let born_after = m.created().is_ok_and(|b| b > saved);
        if m.ino() == ino && born_after {
            return replay(&start, &first);
        }
        // Not reused this time (or no birth time): start afresh.
        sh(root, "rm -rf ./* && rm -f ../state/*");
    }
    panic!(
        "in {ATTEMPTS} attempts the file system never gave {new} the inode of {old} with a birth \
         time after the save (does it reuse inodes and record birth times?)"
    );
}

/// Replaces `old` by `new` in the inode `old` had while the monitor is
/// stopped (see [`replace_reusing_inode`]): the restart reports `want`,
/// and replaying it gives the disk.
fn assert_replacement_reported(
    setup: &str,
    replace: &str,
    (old, new): (&str, &str),
    want: &[&str],
) {
    let s = state_dirs();
    let (root, state) = (s.root(), s.state());
    let before = replace_reusing_inode(root, state, setup, replace, (old, new));
    let got = restart(root, state, |l| l.iter().any(|l| l.contains(new)));
    assert_eq!(summary(&got), want, "{new} is not {old}");
    assert_trees_equal(&replay(&before, &got), &disk_tree(root, &[]));
}

#[test]
fn a_directory_made_in_a_deleted_ones_inode_while_stopped_is_created_not_moved() {
    assert_replacement_reported(
        "mkdir e && echo x > e/f",
        "rm -rf e && mkdir e2",
        ("e", "e2"),
        &[
            "delete file e/f (rescan)",
            "delete dir e (rescan)",
            "create dir e2 (rescan)",
        ],
    );
}

#[test]
fn a_file_restored_in_a_deleted_ones_inode_while_stopped_is_created_not_moved() {
    // A copy that keeps the mtime (`cp -p`, `rsync -t`, `tar x`): the same
    // size and mtime as the deleted file, in its inode.
    assert_replacement_reported(
        "echo content > g && cp -p g ../state/g.bak",
        "rm g && cp -p ../state/g.bak g2 && rm ../state/g.bak",
        ("g", "g2"),
        &["delete file g (rescan)", "create file g2 (rescan)"],
    );
}

#[test]
fn a_rename_while_stopped_stays_a_move_for_a_directory_and_a_file() {
    let s = state_dirs();
    let (root, state) = (s.root(), s.state());
    sh(root, "mkdir e && echo x > e/f && echo content > g");
    let start = disk_tree(root, &[]);
    let first = run_and_stop(root, state);
    let before = replay(&start, &first);
    sh(root, "mv e e2 && mv g g2");
    let got = restart(root, state, |s| s.len() >= 2);
    assert_eq!(
        summary(&got),
        ["move dir e -> e2 (rescan)", "move file g -> g2 (rescan)"]
    );
    assert_trees_equal(&replay(&before, &got), &disk_tree(root, &[]));
}
