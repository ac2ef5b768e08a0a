//! A file system mounted below the root after start is detected, watched
//! and rescanned; so is the directory underneath once it is unmounted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A bind mount, unmounted on drop (also when the test fails).
struct Bind(Option<PathBuf>);

impl Bind {
    fn mount(src: &Path, at: &Path) -> Bind {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind");
        Bind(Some(at.to_path_buf()))
    }

    fn unmount(mut self) {
        if let Some(p) = self.0.take() {
            assert!(Command::new("umount").arg(&p).status().unwrap().success());
        }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}

#[test]
fn a_file_system_mounted_below_the_root_after_start_is_watched_and_reported() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let d = tempdir();
    let root = d.path();
    sh(root, "mkdir sub && echo under > sub/under");
    std::fs::create_dir(fs.path().join("deep")).unwrap();
    std::fs::write(fs.path().join("deep/inside"), b"in the mount\n").unwrap();
    let m = Monitor::start(root, &["--poll-interval=100"]);
    let start = disk_tree(root, &[]);

    let bind = Bind::mount(fs.path(), &root.join("sub"));
    let evs = m.wait_for("the mount's contents", |e| {
        has(e, "create file sub/deep/inside (rescan)") && has(e, "delete file sub/under (rescan)")
    });
    assert!(
        m.stderr().contains("mounted below the root"),
        "{}",
        m.stderr()
    );
    assert_eq!(m.metric("fs_monitor_mount_changes_total"), 1.0);
    let _ = evs;
    // The mount is watched, down to its subdirectories.
    sh(root, "echo new > sub/deep/later");
    m.wait_for("a file made in the mount", |e| {
        has(e, "create file sub/deep/later")
    });

    bind.unmount();
    m.wait_for("the directory underneath", |e| {
        has(e, "create file sub/under (rescan)") && has(e, "delete dir sub/deep (rescan)")
    });
    sh(root, "echo again > sub/after");
    m.wait_for("a file made underneath", |e| {
        has(e, "create file sub/after")
    });
    let evs = m.settle(Duration::from_millis(300));
    assert_eq!(m.metric("fs_monitor_mount_changes_total"), 2.0);
    assert_trees_equal(&replay(&start, &evs), &disk_tree(root, &[]));
    assert_seq_contiguous(&evs);
}
