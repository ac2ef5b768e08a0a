//! `--output`, `--format=human` and `--human-output`; item 10: seq has no gaps.

use std::time::Duration;

use crate::support::*;

#[test]
fn human_format_and_side_log() {
    let d = tempdir();
    let logs = tempdir();
    let root = d.path();
    let human = logs.path().join("human.log");
    let m = Monitor::start(root, &[&format!("--human-output={}", human.display())]);
    sh(root, "echo 1 > a && mv a b");
    m.wait_for("move", |e| has(e, "move file a -> b"));
    // SIGTERM flushes both streams (a kill could land between the two flushes).
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&human).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(" #1 create file    a"), "{text}");
    assert!(
        lines
            .last()
            .unwrap()
            .contains(" move   file    a -> b size=2"),
        "{text}"
    );

    let m = Monitor::start(root, &["--format=human"]);
    sh(root, "rm b");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.raw_lines().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = &m.raw_lines()[0];
    assert!(line.ends_with("#1 delete file    b"), "{line}");
}

#[test]
fn output_to_a_file_and_seq_without_gaps() {
    let d = tempdir();
    let logs = tempdir();
    let root = d.path();
    let out = logs.path().join("events.ndjson");
    let m = Monitor::start(
        root,
        &[&format!("--output={}", out.display()), "--debounce=0"],
    );
    sh(
        root,
        "for i in $(seq 1 300); do echo $i > f$i; done; rm f1 f2; mkdir d; mv f3 d/",
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, on_stdout) = m.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(
        on_stdout.is_empty(),
        "nothing on stdout when --output is a file"
    );
    let evs: Vec<file_event::FileEvent> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| file_event::FileEvent::from_json(l).unwrap())
        .collect();
    for i in 1..=300 {
        assert!(
            has(&evs, &format!("create file f{i}")),
            "create f{i} missing"
        );
    }
    assert!(has(&evs, "create dir d"));
    // A rename into a directory whose watch is not yet in place is seen as
    // the source's delete plus the scan's create of the destination.
    assert!(
        has(&evs, "move file f3 -> d/f3")
            || (has(&evs, "delete file f3") && has(&evs, "create file d/f3")),
        "{:?}",
        summary(&evs)
    );
    assert_seq_contiguous(&evs);
    assert_trees_equal(&replay(&Tree::new(), &evs), &disk_tree(root, &[]));
}

#[test]
fn output_files_inside_the_root_are_not_reported() {
    let d = tempdir();
    let root = d.path();
    let out = root.join("events.ndjson");
    let log = root.join("human.log");
    let m = Monitor::start(
        root,
        &[
            &format!("--output={}", out.display()),
            &format!("--human-output={}", log.display()),
        ],
    );
    std::fs::write(root.join("a"), b"a").unwrap();
    // Each line written to either file would otherwise be an update of it,
    // reported into the file again.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));
    let evs: Vec<file_event::FileEvent> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| file_event::FileEvent::from_json(l).unwrap())
        .collect();
    assert_eq!(summary(&evs), vec!["create file a"]);
}

/// Every line of an event file: complete and a valid `file-event/1`.
fn complete_lines(path: &std::path::Path) -> Vec<file_event::FileEvent> {
    let data = std::fs::read(path).unwrap();
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "incomplete last line: {:?}",
        String::from_utf8_lossy(&data[data.len().saturating_sub(120)..])
    );
    String::from_utf8(data)
        .unwrap()
        .lines()
        .map(|l| file_event::FileEvent::from_json(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn an_incomplete_last_line_is_cut_before_appending() {
    let d = tempdir();
    let logs = tempdir();
    let root = d.path();
    let out = logs.path().join("events.ndjson");
    // What a full disk or a crash leaves behind: a line cut short.
    std::fs::write(
        &out,
        b"{\"schema\":\"file-event/1\"}\n{\"schema\":\"file-ev",
    )
    .unwrap();
    let m = Monitor::start(root, &[&format!("--output={}", out.display())]);
    std::fs::write(root.join("a"), b"a").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, _) = m.terminate();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{\"schema\":\"file-event/1\"}", "{text}");
    let evs: Vec<file_event::FileEvent> = lines[1..]
        .iter()
        .map(|l| file_event::FileEvent::from_json(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(summary(&evs), vec!["create file a"]);
}

#[test]
fn a_full_disk_ends_the_monitor_without_a_cut_line() {
    let d = tempdir();
    let root = d.path();
    let Some(mnt) = Tmpfs::mount("64k") else {
        return;
    };
    let out = mnt.path().join("events.ndjson");
    let mut m = Monitor::start(
        root,
        &[&format!("--output={}", out.display()), "--debounce=0"],
    );
    sh(root, "for i in $(seq 1 600); do echo $i > f$i; done");
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running with a full disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(100));
    let err = m.stderr();
    assert!(
        err.contains("writing events: No space left on device"),
        "{err}"
    );
    let evs = complete_lines(&out);
    assert!(evs.len() > 100, "{} lines", evs.len());
    assert_seq_contiguous(&evs);
}
