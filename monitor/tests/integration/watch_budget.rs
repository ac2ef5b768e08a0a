//! Item 12 (watch budget): when inotify watches run out, the affected
//! subtrees are polled instead of going unwatched, and it is reported as a
//! metric and a log line. The budget is exhausted with `--max-watches`, which
//! takes the same path as the kernel's ENOSPC.

use crate::support::*;

#[test]
fn subtrees_beyond_the_watch_budget_are_polled() {
    let d = tempdir();
    let root = d.path();
    sh(root, "for i in 0 1 2 3 4 5; do mkdir -p d$i/sub; done");
    let m = Monitor::start(root, &["--max-watches=3", "--poll-interval=200"]);
    assert_eq!(m.metric("fs_monitor_watches"), 3.0);
    assert!(m.metric("fs_monitor_watch_limit_reached_total") >= 1.0);
    assert!(m.metric("fs_monitor_polled_subtrees") >= 1.0);
    assert!(
        m.stderr().contains("watch budget exhausted"),
        "{}",
        m.stderr()
    );
    sh(root, "for i in 0 1 2 3 4 5; do echo x > d$i/sub/f; mkdir d$i/sub/new; echo y > d$i/sub/new/g; done; rm -r d5");
    let evs = m.wait_for("every change, watched or polled", |e| {
        (0..5).all(|i| {
            has(e, &format!("create file d{i}/sub/f"))
                && has(e, &format!("create file d{i}/sub/new/g"))
        }) && has(e, "delete dir d5")
    });
    assert_seq_contiguous(&evs);
}

/// The kernel's own limit: inside a user namespace the watch budget
/// (`/proc/sys/user/max_inotify_watches`) can be lowered for this monitor
/// alone, so placing the fifth watch really fails with ENOSPC.
#[test]
fn real_enospc_from_the_kernel_falls_back_to_polling() {
    let probe = std::process::Command::new("unshare")
        .args([
            "-Ur",
            "sh",
            "-c",
            "echo 4 > /proc/sys/user/max_inotify_watches",
        ])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("skipped: unprivileged user namespaces (unshare -Ur) are not available");
        return;
    }
    let d = tempdir();
    let root = d.path();
    sh(root, "for i in 0 1 2 3 4 5 6 7; do mkdir -p d$i/sub; done");
    let port = free_port();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-Ur",
        "sh",
        "-c",
        "echo 4 > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"",
        BIN,
    ])
    .arg(root)
    .args([
        "--poll-interval=200",
        &format!("--metrics-addr=127.0.0.1:{port}"),
    ])
    .env("RUST_LOG", "info")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let m = Monitor::spawn(cmd, Some(port));
    assert_eq!(
        m.metric("fs_monitor_watches"),
        4.0,
        "the kernel allowed 4 watches"
    );
    assert!(m.metric("fs_monitor_watch_limit_reached_total") >= 1.0);
    assert!(m.metric("fs_monitor_polled_subtrees") >= 1.0);
    assert!(
        m.stderr().contains("watch budget exhausted"),
        "{}",
        m.stderr()
    );
    sh(
        root,
        "for i in 0 1 2 3 4 5 6 7; do echo x > d$i/sub/f; done",
    );
    m.wait_for("every change, watched or polled", |e| {
        (0..8).all(|i| has(e, &format!("create file d{i}/sub/f")))
    });
}
