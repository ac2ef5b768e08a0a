//! Item 8: never blocks, consumes or escapes.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::support::*;

#[test]
fn a_fifo_holding_bytes_still_holds_them() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--checksum=sha256", "--debounce=0"]);
    let fifo = root.join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Holding a read-write descriptor keeps the data in the pipe.
    let mut keep = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    keep.write_all(b"precious").unwrap();
    m.wait_for("fifo create", |e| has(e, "create other pipe"));
    // Another writer opens and closes it: a close-after-write on the FIFO.
    {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        w.write_all(b"!").unwrap();
    }
    let evs = m.wait_for("fifo events", |e| {
        has(e, "create other pipe") && has(e, "update other pipe")
    });
    assert!(evs
        .iter()
        .filter(|e| e.path == "pipe")
        .all(|e| e.checksum.is_none()));
    // The monitor is not blocked on the FIFO.
    std::fs::write(root.join("after"), b"1").unwrap();
    m.wait_for("event after the fifo", |e| has(e, "create file after"));
    let mut buf = [0u8; 64];
    let n = keep.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"precious!", "the FIFO's bytes were consumed");
}

#[test]
fn symlinks_are_never_followed_out_of_the_root() {
    let d = tempdir();
    let outside = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &["--checksum=sha256"]);
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    std::os::unix::fs::symlink("b", root.join("a")).unwrap();
    std::os::unix::fs::symlink("a", root.join("b")).unwrap();
    m.wait_for("symlink creates", |e| {
        ["out", "loop", "a", "b"]
            .iter()
            .all(|p| has(e, &format!("create symlink {p}")))
    });
    // Changes behind the link are outside the root and never reported.
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    std::fs::create_dir(outside.path().join("sub")).unwrap();
    std::fs::write(root.join("marker"), b"m").unwrap();
    let evs = m.wait_for("marker", |e| has(e, "create file marker"));
    let evs = {
        let _ = evs;
        m.settle(Duration::from_millis(300))
    };
    assert!(
        !evs.iter()
            .any(|e| e.path.contains("secret") || e.path.contains("sub")),
        "{:?}",
        summary(&evs)
    );
    assert!(evs
        .iter()
        .filter(|e| e.kind == file_event::Kind::Symlink)
        .all(|e| e.checksum.is_none()));
}

#[test]
fn non_utf8_names_round_trip_through_path_b64() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &[]);
    let name = b"caf\xe9.txt";
    let moved = b"n\xff\xfe";
    std::fs::write(root.join(OsStr::from_bytes(name)), b"x").unwrap();
    std::fs::rename(
        root.join(OsStr::from_bytes(name)),
        root.join(OsStr::from_bytes(moved)),
    )
    .unwrap();
    std::fs::remove_file(root.join(OsStr::from_bytes(moved))).unwrap();
    let evs = m.wait_for("delete of the moved name", |e| {
        e.iter()
            .any(|x| x.event_type == file_event::EventType::Delete && x.path_bytes() == moved)
    });
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let create = evs
        .iter()
        .find(|e| e.event_type == file_event::EventType::Create)
        .unwrap();
    assert_eq!(create.path_bytes(), name);
    assert_eq!(create.path, "caf\u{fffd}.txt");
    assert_eq!(create.path_b64.as_deref(), Some(b64(name).as_str()));
    let mv = evs
        .iter()
        .find(|e| e.event_type == file_event::EventType::Move)
        .unwrap();
    assert_eq!(mv.from_b64.as_deref(), Some(b64(name).as_str()));
    assert_eq!(mv.to_b64.as_deref(), Some(b64(moved).as_str()));
    assert_eq!(mv.path_bytes(), moved);
    let order: Vec<_> = evs
        .iter()
        .map(|e| e.event_type)
        .filter(|t| *t != file_event::EventType::Update)
        .collect();
    use file_event::EventType::*;
    assert_eq!(order, vec![Create, Move, Delete]);
    // Every line is valid UTF-8 JSON (the reader would have failed otherwise).
    assert!(m
        .raw_lines()
        .iter()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn permission_denied_and_deleted_files_do_not_stop_the_monitor() {
    if !can_run_as_nobody() {
        return;
    }
    let d = tempdir();
    let root = d.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(root.join("secret"), b"top").unwrap();
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::create_dir(root.join("closed")).unwrap();
    std::fs::write(root.join("closed/inner"), b"i").unwrap();
    std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let port = free_port();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg(root)
        .args([
            "--checksum=sha256",
            "--debounce=0",
            &format!("--metrics-addr=127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let m = Monitor::spawn(cmd, Some(port));
    assert!(m.metric("fs_monitor_events_dropped_total{reason=\"unreadable_dir\"}") >= 1.0);
    // Written by root, unreadable by the monitor: reported without a checksum.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("secret"))
        .unwrap();
    f.write_all(b" more").unwrap();
    drop(f);
    let evs = m.wait_for("update of unreadable file", |e| {
        has(e, "update file secret")
    });
    let u = evs.iter().find(|e| e.path == "secret").unwrap();
    assert_eq!(u.checksum, None);
    assert_eq!(u.size, Some(8));
    // A large file deleted right after it was written (often mid-checksum).
    sh(
        root,
        "head -c 30000000 /dev/zero > big && rm big && echo ok > after",
    );
    let evs = m.wait_for("big file and after", |e| {
        has(e, "delete file big") && has(e, "create file after")
    });
    let big = types_for(&evs, "big");
    assert_eq!(big.first().map(String::as_str), Some("create"), "{big:?}");
    assert_eq!(big.last().map(String::as_str), Some("delete"), "{big:?}");
    assert!(
        big[1..big.len() - 1].iter().all(|t| t == "update"),
        "{big:?}"
    );
    std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
}
