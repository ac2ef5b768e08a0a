//! Item 14: `--state-file` reports changes made while the monitor was down.

use std::time::Duration;

use crate::support::*;

#[test]
fn changes_while_down_are_reported_as_rescan_on_restart() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    sh(
        root,
        "echo 1 > a && echo 2 > b && mkdir dir && echo 3 > dir/c",
    );
    let start = disk_tree(root, &[]);

    let m = Monitor::start(root, &[&state_arg]);
    sh(root, "echo live > live");
    m.wait_for("live", |e| has(e, "create file live"));
    let first = m.stop();
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
    // A relative path, resolved against the monitor's working directory
    // (the root here; the state file is written at start).
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(root)
        .arg(root)
        .args(["--state-file=.monitor-state.json", "--metrics-addr=off"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let m = Monitor::spawn(cmd, None);
    assert!(root.join(".monitor-state.json").exists());
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
    let mut m = Monitor::start(root, &[&state_arg(&state)]);
    // Written at start already: the failure is counted.
    assert!(m.metric("fs_monitor_state_save_failures_total") >= 1.0);
    signal(m.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = m.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let err = m.stderr();
    assert!(err.contains("could not persist the index"), "{err}");
    // Only the lock and the journal (which never started: no save
    // succeeded), both empty.
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name();
            !(n == "index.json.lock" || n == "index.json.journal")
                || e.metadata().unwrap().len() > 0
        })
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}

/// SIGKILL (an OOM kill, an eviction) leaves no chance to write the state
/// file on exit.
fn kill(mut m: Monitor) -> String {
    signal(m.pid(), nix::sys::signal::Signal::SIGKILL);
    let _ = m.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    m.stderr()
}

fn attributed(user: &str, session: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TENANT_ID", "acme".to_owned()),
        ("USER_ID", user.to_owned()),
        ("SESSION_ID", session.to_owned()),
    ]
}

fn start_as(root: &std::path::Path, args: &[&str], user: &str, session: &str) -> Monitor {
    let env = attributed(user, session);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Monitor::start_with(root, args, &env)
}

#[test]
fn a_restart_after_sigkill_does_not_report_delivered_events_again() {
    let s = state_dirs();
    let (root, state_arg) = (s.root(), s.arg());

    let m = start_as(root, &[&state_arg], "alice", "s0");
    assert!(m.stderr().contains("first start"), "{}", m.stderr());
    m.stop();

    let m = start_as(root, &[&state_arg], "alice", "s1");
    sh(root, "echo hello > a.txt");
    m.wait_for("a.txt", |e| has(e, "create file a.txt"));
    // The state file follows the stream within about a second.
    std::thread::sleep(Duration::from_millis(1500));
    kill(m);

    let m = start_as(root, &[&state_arg], "bob", "s2");
    let evs = m.settle(Duration::from_millis(700));
    assert!(
        evs.is_empty(),
        "already delivered, reported again under bob/s2: {:?}",
        summary(&evs)
    );
    // Changes made by bob's session are still reported.
    sh(root, "echo bye > b.txt");
    m.wait_for("b.txt", |e| has(e, "create file b.txt"));
}

#[test]
fn changes_after_a_crash_before_any_clean_exit_are_reported_on_restart() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    sh(root, "echo 1 > kept && echo 2 > gone");

    let m = start_as(root, &[&state_arg], "alice", "s1");
    assert!(state.exists(), "the state file is written at start");
    kill(m);

    sh(root, "rm gone && echo offline > new && echo more >> kept");
    let m = start_as(root, &[&state_arg], "alice", "s2");
    let evs = m.settle(Duration::from_millis(700));
    let got = summary(&evs);
    for l in [
        "delete file gone (rescan)",
        "create file new (rescan)",
        "update file kept (rescan)",
    ] {
        assert!(got.contains(&l.to_string()), "{l} missing: {got:?}");
    }
    assert!(
        evs.iter().all(|e| e.session_id.as_deref() == Some("s2")),
        "changes found at restart belong to the restarting session"
    );
}

#[test]
fn a_line_the_reader_never_took_is_reported_after_a_restart() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    let mut child = std::process::Command::new(BIN)
        .arg(root)
        .args([&state_arg, "--metrics-addr=off"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(" watching") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0);
    }
    // The reader takes one line and leaves.
    sh(root, "echo a > a");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.contains("\"path\":\"a\""), "{first}");
    drop(out);
    // The state is saved after the line for `a` was written.
    let holds_a = || -> bool {
        let Ok(data) = std::fs::read(state) else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return false;
        };
        v["entries"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r[0] == "YQ=="))
    };
    let t = std::time::Instant::now();
    while !holds_a() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the state file never held `a`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // This line fails to be written: the monitor exits.
    sh(root, "echo b > b");
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    let m = Monitor::start(root, &[&state_arg]);
    let evs = m.wait_for("b, which no reader took", |e| {
        has(e, "create file b (rescan)")
    });
    assert!(!has(&evs, "create file a (rescan)"), "{:?}", summary(&evs));
}

/// Rewrites the devices a state file holds, as a remount (a PVC attached on
/// another node, an NFS or FUSE mount made anew) numbers them; `header`:
/// also the root's device recorded in the file.
fn renumber_devices(state: &std::path::Path, header: bool) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    if header {
        let dev = v["root_dev"].as_u64().expect("root_dev in the state file");
        v["root_dev"] = (dev + 1000).into();
    }
    for row in v["entries"].as_array_mut().unwrap() {
        let dev = row[5].as_u64().expect("device of the entry");
        row[5] = (dev + 1000).into();
    }
    std::fs::write(state, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_restart_on_a_remounted_root_reports_nothing_unchanged() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    sh(root, "echo 1 > a && mkdir d && echo 2 > d/b && ln d/b d/b2");
    Monitor::start(root, &[&state_arg]).stop();
    renumber_devices(state, true);

    let m = Monitor::start(root, &[&state_arg]);
    let evs = m.settle(Duration::from_millis(700));
    assert!(
        evs.is_empty(),
        "unchanged files reported: {:?}",
        summary(&evs)
    );
    assert!(m.stderr().contains("on another device"), "{}", m.stderr());
    // The devices are learnt again: the links of `d/b` are still known.
    sh(root, "echo more >> d/b");
    let evs = m.wait_for("both names of d/b", |e| {
        has(e, "update file d/b") && has(e, "update file d/b2")
    });
    m.stop();
    assert!(!has(&evs, "update file a"), "{:?}", summary(&evs));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r[5].as_u64().is_some_and(|dev| dev != 0)));
}

#[test]
fn a_state_file_of_a_newer_version_is_refused_by_name() {
    let s = state_dirs();
    let (root, state, state_arg) = (s.root(), s.state(), s.arg());
    sh(root, "echo 1 > a");
    Monitor::start(root, &[&state_arg]).stop();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    v["version"] = 99.into();
    std::fs::write(state, serde_json::to_vec(&v).unwrap()).unwrap();
    sh(root, "echo 2 > b");

    let m = Monitor::start(root, &[&state_arg]);
    let evs = m.settle(Duration::from_millis(500));
    let err = m.stderr();
    assert!(
        err.contains("has version 99, written by a newer file-monitor"),
        "{err}"
    );
    // As for any unusable state file: files present are indexed silently.
    assert!(evs.is_empty(), "{:?}", summary(&evs));
}
