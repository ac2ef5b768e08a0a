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

/// A write to a hard-linked file updates its other names, and nothing on
/// another file system that happens to have the same inode number.
#[test]
fn a_hard_link_update_never_reaches_a_file_with_the_same_inode_number_elsewhere() {
    let Some(a) = Tmpfs::mount("1m") else {
        return;
    };
    let Some(b) = Tmpfs::mount("1m") else {
        return;
    };
    let root = a.path();
    sh(root, "echo v1 > a && ln a a2 && mkdir m");
    sh(b.path(), "for i in 1 2 3 4 5 6 7 8; do echo $i > f$i; done");
    let _bind = Bind::mount(b.path(), &root.join("m"));
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let twin = (1..=8)
        .map(|i| format!("m/f{i}"))
        .find(|p| ino(&root.join(p)) == ino(&root.join("a")));
    let Some(twin) = twin else {
        eprintln!("skipped: no file on the second tmpfs shares the first's inode number");
        return;
    };
    let before = std::fs::read(root.join(&twin)).unwrap();
    let m = Monitor::start(root, &["--checksum=sha256", "--poll-interval=100"]);

    sh(root, "echo v2 >> a");
    m.wait_for("both names of the written file", |e| {
        has(e, "update file a") && has(e, "update file a2")
    });
    let evs = m.settle(Duration::from_millis(500));
    assert!(
        evs.iter().all(|e| e.path != twin),
        "{twin} was not written: {:?}",
        summary(&evs)
    );
    assert_eq!(std::fs::read(root.join(&twin)).unwrap(), before);
    // Writing the file on the other file system reports it alone, with its
    // own content.
    sh(root, &format!("echo changed > {twin}"));
    m.wait_for("the other file system's file", |e| {
        has(e, &format!("update file {twin}"))
    });
    let evs = m.settle(Duration::from_millis(300));
    let later: Vec<_> = evs.iter().filter(|e| e.seq > 2).collect();
    assert_eq!(
        later.iter().map(|e| short(e)).collect::<Vec<_>>(),
        vec![format!("update file {twin}")]
    );
    assert_eq!(
        later[0].checksum.as_deref(),
        Some("sha256:7f8b1dfc466b6249f06cbe55c9174df2578e7754da793fded244ef5cba2a38f1"),
        "the checksum of \"changed\\n\""
    );
}
