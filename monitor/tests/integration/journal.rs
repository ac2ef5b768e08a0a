//! The journal beside `--state-file`: after a SIGKILL, the restart starts
//! from what the stream said, not from the last save; one monitor per state
//! file; an unusable state file is kept aside and counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// SIGKILL: no chance to write anything on exit.
fn kill(mut m: Monitor) -> Vec<file_event::FileEvent> {
    signal(m.pid(), nix::sys::signal::Signal::SIGKILL);
    let _ = m.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    m.events()
}

/// Whether the saved state file lists `path`.
fn saved_holds(state: &Path, path: &str) -> bool {
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode(path);
    let Ok(data) = std::fs::read(state) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
        return false;
    };
    v["entries"]
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r[0] == want.as_str()))
}

/// Whether the journal names `path` (base64, as its lines do).
fn journal_holds(state: &Path, path: &str) -> bool {
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode(path);
    std::fs::read(journal_of(state))
        .is_ok_and(|d| d.windows(want.len()).any(|w| w == want.as_bytes()))
}

fn journal_of(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Setup {
    _d: tempfile::TempDir,
    _st: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    arg: String,
}

fn setup() -> Setup {
    let d = tempdir();
    let st = tempdir();
    let root = d.path().to_path_buf();
    let state = st.path().join("index.json");
    let arg = format!("--state-file={}", state.display());
    Setup {
        _d: d,
        _st: st,
        root,
        state,
        arg,
    }
}

/// Starts the monitor and waits until the save made at start is followed by
/// a quiet spell, so that the next line is saved at once and the one after
/// it is not saved for about a second.
fn start_quiet(s: &Setup) -> Monitor {
    let m = Monitor::start(&s.root, &[&s.arg]);
    std::thread::sleep(Duration::from_millis(1200));
    m
}

/// Writes `g` (saved at once after a quiet spell), so that the next line
/// is not saved for about a second.
fn after_a_save(s: &Setup, m: &Monitor) {
    sh(&s.root, "echo a > g");
    m.wait_for("g", |e| has(e, "create file g"));
    wait_until("g saved", || saved_holds(&s.state, "g"));
}

/// `g`, then the line `act` makes (about `new`), then SIGKILL before that
/// line is saved.
fn told_then_killed(s: &Setup, act: &str, line: &str, new: &str) -> Vec<file_event::FileEvent> {
    let m = start_quiet(s);
    after_a_save(s, &m);
    let saved = generation(&s.state);
    sh(&s.root, act);
    m.wait_for(line, |e| has(e, line));
    // Appended right after the line was written (a kill in between makes
    // the restart report the line again instead).
    wait_until("the line journaled", || {
        journal_holds(&s.state, new)
            && std::fs::read(journal_of(&s.state)).is_ok_and(|d| d.ends_with(b"\"done\"\n"))
    });
    let evs = kill(m);
    assert_eq!(
        generation(&s.state),
        saved,
        "the state file was saved after {line:?}: the scenario needs a kill before that save"
    );
    evs
}

/// The generation of the save in the state file.
fn generation(state: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).ok()?).ok()?;
    v["generation"].as_str().map(str::to_owned)
}

#[test]
fn a_create_told_after_the_last_save_and_undone_while_down_is_deleted_on_restart() {
    let s = setup();
    let start = disk_tree(&s.root, &[]);
    let first = told_then_killed(&s, "echo hello > f", "create file f", "f");
    sh(&s.root, "rm f");
    let m = Monitor::start(&s.root, &[&s.arg]);
    let second = m.settle(Duration::from_millis(700));
    assert_eq!(summary(&second), vec!["delete file f (rescan)"]);
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    assert_trees_equal(&replay(&start, &all), &disk_tree(&s.root, &[]));
}

#[test]
fn a_move_told_after_the_last_save_and_moved_back_while_down_is_moved_back_on_restart() {
    let s = setup();
    sh(&s.root, "echo report > report.pdf");
    let start = disk_tree(&s.root, &[]);
    let first = told_then_killed(
        &s,
        "mv report.pdf old.pdf",
        "move file report.pdf -> old.pdf",
        "old.pdf",
    );
    sh(&s.root, "mv old.pdf report.pdf");
    let m = Monitor::start(&s.root, &[&s.arg]);
    let second = m.settle(Duration::from_millis(700));
    assert_eq!(
        summary(&second),
        vec!["move file old.pdf -> report.pdf (rescan)"]
    );
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    assert_trees_equal(&replay(&start, &all), &disk_tree(&s.root, &[]));
}

#[test]
fn a_journal_with_a_torn_last_line_is_replayed_up_to_it() {
    let s = setup();
    let start = disk_tree(&s.root, &[]);
    let first = told_then_killed(&s, "echo hello > f", "create file f", "f");
    // A kill in the middle of an append: the last change is incomplete.
    let journal = journal_of(&s.state);
    let mut data = std::fs::read(&journal).unwrap();
    data.extend_from_slice(br#"{"rm":"Z"#);
    std::fs::write(&journal, &data).unwrap();
    sh(&s.root, "rm f");

    let m = Monitor::start(&s.root, &[&s.arg]);
    let second = m.settle(Duration::from_millis(700));
    assert_eq!(summary(&second), vec!["delete file f (rescan)"]);
    assert!(m.stderr().contains("incomplete change"), "{}", m.stderr());
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    assert_trees_equal(&replay(&start, &all), &disk_tree(&s.root, &[]));
}

#[test]
fn a_kill_right_after_a_save_neither_repeats_nor_applies_an_older_journal() {
    let s = setup();
    let m = start_quiet(&s);
    let journal = journal_of(&s.state);
    after_a_save(&s, &m);
    // The journal of that save, holding the create of `f`, as a kill
    // between the next save and the journal's restart leaves it.
    sh(&s.root, "echo b > f");
    m.wait_for("f", |e| has(e, "create file f"));
    wait_until("f journaled", || journal_holds(&s.state, "f"));
    let older = std::fs::read(&journal).unwrap();
    let older_generation = generation(&s.state);
    sh(&s.root, "rm f");
    m.wait_for("delete f", |e| has(e, "delete file f"));
    wait_until("the delete saved", || {
        generation(&s.state) != older_generation && !saved_holds(&s.state, "f")
    });
    let first = kill(m);
    std::fs::write(&journal, &older).unwrap();

    // Applied to the newer save, the older journal would bring `f` back,
    // and the restart would delete it a second time.
    let m = Monitor::start(&s.root, &[&s.arg]);
    let second = m.settle(Duration::from_millis(700));
    assert!(second.is_empty(), "{:?}", summary(&second));
    assert_eq!(
        summary(&first),
        vec!["create file g", "create file f", "delete file f"]
    );
}

/// Runs another monitor with `state_arg`, expected to exit at once; its
/// output (it is killed, and the test fails, if it keeps running).
fn second_monitor(root: &Path, state_arg: &str) -> std::process::Output {
    let mut second = std::process::Command::new(BIN)
        .arg(root)
        .args([state_arg, "--metrics-addr=off"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second monitor with {state_arg} kept running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    second.wait_with_output().unwrap()
}

#[test]
fn a_second_monitor_on_the_same_state_file_exits_2() {
    let s = setup();
    let m = Monitor::start(&s.root, &[&s.arg]);
    let out = second_monitor(&s.root, &s.arg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another file-monitor")
            && err.contains(&s.state.display().to_string()),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The first one keeps going, and its state file is its own.
    sh(&s.root, "echo x > x");
    m.wait_for("x", |e| has(e, "create file x"));
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(saved_holds(&s.state, "x"));
    // Once it is gone, the state file can be used again.
    let m = Monitor::start(&s.root, &[&s.arg]);
    assert!(m.settle(Duration::from_millis(300)).is_empty());
}

#[test]
fn a_second_monitor_on_another_name_of_the_state_file_exits_2() {
    let s = setup();
    let m = Monitor::start(&s.root, &[&s.arg]);
    // Through a symlink to its directory, and a path with `..`.
    let dir = s.state.parent().unwrap();
    let other = tempdir();
    std::os::unix::fs::symlink(dir, other.path().join("dir")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    for name in [
        other.path().join("dir/index.json"),
        dir.join("sub/../index.json"),
    ] {
        let name = name.display();
        let arg = format!("--state-file={name}");
        let out = second_monitor(&s.root, &arg);
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("in use by another file-monitor"),
            "{name}: {err}"
        );
    }
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));
}

/// Files beside the state file named `<name>.unusable-*`.
fn kept_aside(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.unusable-");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect()
}

#[test]
fn an_unusable_state_file_is_kept_aside_and_counted() {
    for (what, bytes) in [
        ("garbage", b"\x00\xff{{".to_vec()),
        ("truncated", br#"{"version":2,"root":"#.to_vec()),
    ] {
        let s = setup();
        sh(&s.root, "echo 1 > a");
        std::fs::write(&s.state, &bytes).unwrap();
        let m = Monitor::start(&s.root, &[&s.arg]);
        assert_eq!(
            m.metric("fs_monitor_state_load_failures_total"),
            1.0,
            "{what}"
        );
        let dir = s.state.parent().unwrap();
        let aside = kept_aside(dir, "index.json");
        assert_eq!(aside.len(), 1, "{what}: {aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes, "{what}");
        assert!(m.stderr().contains("kept aside"), "{}", m.stderr());
        // A state file of its own is written, and used at the next start.
        assert!(saved_holds(&s.state, "a"), "{what}");
        let (status, _, evs) = m.terminate();
        assert_eq!(status.code(), Some(0));
        assert!(evs.is_empty(), "{:?}", summary(&evs));
        let m = Monitor::start(&s.root, &[&s.arg]);
        assert_eq!(m.metric("fs_monitor_state_load_failures_total"), 0.0);
        assert_eq!(kept_aside(dir, "index.json").len(), 1);
    }
}

#[test]
fn an_unusable_state_file_under_the_root_is_kept_aside_without_an_event() {
    let d = tempdir();
    let root = d.path();
    let state = root.join(".monitor-state.json");
    let arg = format!("--state-file={}", state.display());
    sh(root, "echo 1 > a");
    std::fs::write(&state, b"not json").unwrap();
    let m = Monitor::start(root, &[&arg]);
    sh(root, "echo 2 > b");
    m.wait_for("b", |e| has(e, "create file b"));
    let (_, _, evs) = m.terminate();
    assert_eq!(kept_aside(root, ".monitor-state.json").len(), 1);
    assert_eq!(summary(&evs), vec!["create file b"]);
    // Nor at the next start, which finds it on the disk.
    let m = Monitor::start(root, &[&arg]);
    sh(root, "echo 3 > c");
    m.wait_for("c", |e| has(e, "create file c"));
    let (_, _, evs) = m.terminate();
    assert_eq!(summary(&evs), vec!["create file c"]);
}

/// The journal as a kill between writing the last batch to the stream and
/// journaling its changes leaves it: cut after the batch's taint line (and
/// `extra` bytes of the next line, a change torn in the middle).
fn cut_after_last_taint(state: &Path, extra: usize) {
    let journal = journal_of(state);
    let data = std::fs::read(&journal).unwrap();
    let at = data
        .windows(b"{\"taint\":".len())
        .rposition(|w| w == b"{\"taint\":")
        .expect("a taint line");
    let end = at + data[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
    assert!(
        data.len() > end + extra,
        "the batch's changes follow its taint"
    );
    std::fs::write(&journal, &data[..end + extra]).unwrap();
}

#[test]
fn a_kill_between_the_stream_and_the_journal_reports_the_paths_as_they_are() {
    for (torn, act, line, new, undo, expect) in [
        (
            0,
            "mv x ../x",
            "delete file x",
            "x",
            "mv ../x x",
            "create file x (rescan)",
        ),
        (
            5,
            "mv x ../x",
            "delete file x",
            "x",
            "mv ../x x",
            "create file x (rescan)",
        ),
        (
            0,
            "echo hello > f",
            "create file f",
            "f",
            "rm f",
            "delete file f (rescan)",
        ),
    ] {
        let s = setup();
        std::fs::create_dir(s.root.join("in")).unwrap();
        let root = s.root.join("in");
        sh(&root, "echo x > x");
        let s = Setup { root, ..s };
        let start = disk_tree(&s.root, &[]);
        let first = told_then_killed(&s, act, line, new);
        cut_after_last_taint(&s.state, torn);
        sh(&s.root, undo);

        // The stream said the change; the journal does not hold it, but
        // names the path.
        let m = Monitor::start(&s.root, &[&s.arg]);
        let second = m.settle(Duration::from_millis(700));
        assert_eq!(summary(&second), vec![expect], "{act} / torn {torn}");
        let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
        assert_trees_equal(&replay(&start, &all), &disk_tree(&s.root, &[]));
    }
}

#[test]
fn a_kill_during_a_burst_leaves_nothing_wrong_after_the_restart() {
    const N: usize = 3000;
    let s = setup();
    let outside = tempdir();
    std::fs::create_dir(s.root.join("d")).unwrap();
    for i in 0..N {
        std::fs::write(s.root.join(format!("d/f{i}")), b"x").unwrap();
    }
    let start = disk_tree(&s.root, &[]);
    let m = start_quiet(&s);
    for i in 0..N {
        std::fs::rename(
            s.root.join(format!("d/f{i}")),
            outside.path().join(format!("f{i}")),
        )
        .unwrap();
    }
    // Killed while it writes the burst's lines.
    m.wait_for("the burst", |e| e.len() >= N / 10);
    let first = kill(m);
    for i in 0..N {
        std::fs::rename(
            outside.path().join(format!("f{i}")),
            s.root.join(format!("d/f{i}")),
        )
        .unwrap();
    }
    let m = Monitor::start(&s.root, &[&s.arg]);
    let second = m.settle(Duration::from_millis(1500));
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    assert_trees_equal(&replay(&start, &all), &disk_tree(&s.root, &[]));
}
