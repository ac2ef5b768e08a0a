//! Item 11: SIGTERM writes pending events and exits 0 within one second; a
//! closed stdout ends the process cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn sigterm_flushes_pending_events_and_exits_zero_within_a_second() {
    let d = tempdir();
    let root = d.path();
    std::fs::write(root.join("held"), b"1").unwrap();
    let m = Monitor::start(root, &["--debounce=5000"]);
    sh(root, "echo 2 >> held; echo new > fresh; mkdir dd");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !has(&m.events(), "update file held"),
        "the update is still held by the debounce"
    );
    let (status, took, evs) = m.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for l in ["update file held", "create file fresh", "create dir dd"] {
        assert!(has(&evs, l), "{l} missing: {:?}", summary(&evs));
    }
    assert_seq_contiguous(&evs);
}

#[test]
fn sigterm_first_reads_the_events_the_kernel_still_holds() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start(root, &[]);
    // Made just before the signal: most of their kernel events are still
    // queued (not yet read by the monitor) when SIGTERM arrives.
    let n = 2000;
    for i in 0..n {
        std::fs::write(root.join(format!("f{i}")), b"x").unwrap();
    }
    let (status, took, evs) = m.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let created = evs
        .iter()
        .filter(|e| e.event_type == file_event::EventType::Create)
        .count();
    assert_eq!(created, n, "every file made before SIGTERM is reported");
    assert_seq_contiguous(&evs);
}

#[test]
fn sigint_also_exits_zero() {
    let d = tempdir();
    let m = Monitor::start(d.path(), &[]);
    signal(m.pid(), nix::sys::signal::Signal::SIGINT);
    let mut child = m;
    let t = Instant::now();
    let st = loop {
        if let Some(s) = child.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_closed_stdout_ends_the_process_cleanly() {
    let d = tempdir();
    let root = d.path();
    let mut child = Command::new(BIN)
        .arg(root)
        .arg("--metrics-addr=off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdout.take());
    let t = Instant::now();
    let mut i = 0;
    let status = loop {
        std::fs::write(root.join(format!("f{i}")), b"x").unwrap();
        i += 1;
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("closed"), "{err}");
}

#[test]
fn deleting_the_root_writes_pending_events_and_exits_1() {
    let d = tempdir();
    let root = d.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    let mut m = Monitor::start(&root, &["--debounce=5000"]);
    sh(&root, "echo 1 > f && echo 2 >> f");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_dir_all(&root).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still running without its root"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(100));
    let evs = m.events();
    assert_eq!(
        types_for(&evs, "f"),
        vec!["create", "update", "delete"],
        "{:?}",
        summary(&evs)
    );
    assert!(
        m.stderr().contains("deleted or moved away"),
        "{}",
        m.stderr()
    );
}

#[test]
fn sighup_flushes_pending_events_and_saves_the_state() {
    let d = tempdir();
    let st = tempdir();
    let root = d.path();
    let state = st.path().join("index.json");
    std::fs::write(root.join("held"), b"1").unwrap();
    let m = Monitor::start(
        root,
        &[
            "--debounce=5000",
            &format!("--state-file={}", state.display()),
        ],
    );
    sh(root, "echo 2 >> held");
    std::thread::sleep(Duration::from_millis(200));
    signal(m.pid(), nix::sys::signal::Signal::SIGHUP);
    let mut child = m;
    let t = Instant::now();
    let st = loop {
        if let Some(s) = child.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "SIGHUP ignored");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(st.code(), Some(0), "{}", child.stderr());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        has(&child.events(), "update file held"),
        "{:?}",
        summary(&child.events())
    );
    assert!(state.exists(), "state file written on exit");
}
