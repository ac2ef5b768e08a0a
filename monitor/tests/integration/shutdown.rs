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

#[test]
fn a_reader_that_stops_reading_delays_sigterm_by_the_grace_period_only() {
    let _g = heavy();
    let d = tempdir();
    let st = tempdir();
    let root = d.path();
    let state = st.path().join("index.json");
    let mut child = Command::new(BIN)
        .arg(root)
        .arg("--metrics-addr=off")
        .arg(format!("--state-file={}", state.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let e2 = stderr.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            e2.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let t = Instant::now();
    while !stderr.lock().unwrap().contains(" watching") {
        assert!(t.elapsed() < Duration::from_secs(30), "did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Far more lines than the pipe and the monitor's buffer hold; nobody
    // reads the pipe.
    let n = 3000;
    let pad = "x".repeat(150);
    for i in 0..n {
        std::fs::write(root.join(format!("f{i}-{pad}")), b"x").unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "SIGTERM held up by a reader that does not read"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert_eq!(status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(100));
    let err = stderr.lock().unwrap().clone();
    assert!(err.contains("its reader stopped reading"), "{err}");

    // What reached the pipe, plus what a restart reports, covers every
    // file: nothing left unwritten was recorded as told.
    let mut piped = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut piped).unwrap();
    let text = String::from_utf8_lossy(&piped);
    let complete = text.rsplit_once('\n').map_or("", |(c, _)| c);
    let mut told: std::collections::BTreeSet<String> = complete
        .lines()
        .map(|l| file_event::FileEvent::from_json(l).unwrap().path)
        .collect();
    let written = told.len();
    assert!(written < n, "the pipe cannot hold every line");
    let m = Monitor::start(root, &[&format!("--state-file={}", state.display())]);
    let evs = m.wait_for("the rest, reported on restart", |e| {
        let mut all = told.clone();
        all.extend(e.iter().map(|x| x.path.clone()));
        all.len() >= n
    });
    told.extend(
        evs.iter()
            .filter(|x| x.rescan && x.event_type == file_event::EventType::Create)
            .map(|x| x.path.clone()),
    );
    assert_eq!(told.len(), n, "{written} written before the stop");
}

#[test]
fn a_reader_gone_before_the_last_lines_of_a_sigterm_exits_zero() {
    let d = tempdir();
    let root = d.path();
    std::fs::write(root.join("held"), b"1").unwrap();
    let mut child = Command::new(BIN)
        .arg(root)
        .args(["--metrics-addr=off", "--debounce=5000"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains(" watching") {
        assert!(std::io::BufRead::read_line(&mut err, &mut log).unwrap() > 0);
    }
    sh(root, "echo 2 >> held");
    std::thread::sleep(Duration::from_millis(300));
    // The update is still held by the debounce when the reader leaves.
    drop(child.stdout.take());
    signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "still running");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::io::Read::read_to_string(&mut err, &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("closed by its reader"), "{log}");
}
