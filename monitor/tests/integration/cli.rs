//! Item 12 (invocation): bad invocations exit 2 with a one-line reason;
//! flags read `--flag=value`, `--flag value` and `FILE_MONITOR_<FLAG>`;
//! attribution falls back to TENANT_ID / USER_ID / SESSION_ID.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn bad_invocations_exit_2_with_one_line() {
    let d = tempdir();
    let file = d.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    let root = d.path().to_str().unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![], "ROOT"),
        (vec!["/definitely/not/here"], vec![], "does not exist"),
        (vec![file.to_str().unwrap()], vec![], "not a directory"),
        (vec![root, "--no-such-flag"], vec![], "--no-such-flag"),
        (vec![root, "--metadata=tenant_id"], vec![], "--metadata"),
        (vec![root, "--metadata", "a b=c"], vec![], "--metadata"),
        (
            vec![root, "--metrics-addr=nowhere"],
            vec![],
            "--metrics-addr",
        ),
        (vec![root, "--checksum=md5"], vec![], "md5"),
        (vec![root, "--ignore=a["], vec![], "--ignore"),
        (vec![root], vec![("FILE_MONITOR_DEBOUNCE", "soon")], "soon"),
        (
            vec![root, "--metadata=tenant_id=a,user_id=u,tenant_id=b"],
            vec![],
            "more than once",
        ),
        (
            vec![root, "--state-file=/definitely/not/here/index.json"],
            vec![],
            "--state-file",
        ),
        (
            vec![root, "--output=/definitely/not/here/events.ndjson"],
            vec![],
            "--output",
        ),
        (
            vec![root, "--human-output=/definitely/not/here/log"],
            vec![],
            "--human-output",
        ),
    ];
    for (args, env, needle) in cases {
        let out = run(&args, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected, got {err:?}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} should mention {needle}"
        );
        assert!(
            err.matches("--help").count() <= 1,
            "{args:?}: one pointer to --help: {err:?}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn attribution_the_sink_would_reject_is_a_bad_invocation() {
    let d = tempdir();
    let root = d.path().to_str().unwrap();
    let long = "s".repeat(129);
    // fdb-sink dead-letters every event with such an id (`bad_id`).
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&[], &[("USER_ID", "alice+ci@example.com")], "user_id"),
        (&["--metadata=session_id=s 1"], &[], "session_id"),
        (&["--metadata=tenant_id=acme/eu"], &[], "tenant_id"),
        (&[], &[("SESSION_ID", &long)], "session_id"),
    ];
    for (args, env, needle) in cases {
        let mut c = Command::new(BIN);
        c.arg(root)
            .args(args)
            .arg("--metrics-addr=off")
            .env("TENANT_ID", "acme")
            .env("USER_ID", "alice")
            .env("SESSION_ID", "s1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{args:?} {env:?}: started instead of refusing: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(
            err.contains(needle) && err.contains("[A-Za-z0-9._:@-]"),
            "{err:?}"
        );
    }
}

#[test]
fn help_teaches_with_examples() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "--poll-interval",
        "--state-file",
        "FILE_MONITOR_",
        "**/node_modules",
        "[default: 100]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn flags_from_env_and_attribution_fallback() {
    let d = tempdir();
    let root = d.path();
    let m = Monitor::start_with(
        root,
        &["--metadata", "user_id=flag-user,team=infra"],
        &[
            ("TENANT_ID", "env-tenant"),
            ("USER_ID", "env-user"),
            ("FILE_MONITOR_CHECKSUM", "blake3"),
        ],
    );
    std::fs::write(root.join("f"), b"abc").unwrap();
    let evs = m.wait_for("create", |e| has(e, "create file f"));
    let e = &evs[0];
    assert_eq!(e.tenant_id.as_deref(), Some("env-tenant"));
    assert_eq!(
        e.user_id.as_deref(),
        Some("flag-user"),
        "the flag wins over USER_ID"
    );
    assert_eq!(e.session_id, None);
    assert_eq!(e.metadata.get("team"), Some(&serde_json::json!("infra")));
    assert_eq!(
        e.checksum.as_deref().map(|c| c.starts_with("blake3:")),
        Some(true)
    );
}

/// Deleting watched directories is ordinary work (`rm -rf node_modules`):
/// it puts no warning in the log, whichever backend runs.
#[test]
fn deleting_watched_directories_logs_no_warning() {
    for backend in ["--backend=inotify", "--backend=notify"] {
        let d = tempdir();
        let m = Monitor::start(
            d.path(),
            &[backend, "--metadata=tenant_id=t1,user_id=u1,session_id=s1"],
        );
        sh(
            d.path(),
            "for i in $(seq 1 20); do mkdir -p t/a$i/b/c; done",
        );
        m.wait_for("the new directories", |e| has(e, "create dir t/a20/b/c"));
        sh(d.path(), "rm -rf t");
        m.wait_for("the delete", |e| has(e, "delete dir t"));
        m.settle(Duration::from_millis(300));
        let log = m.stderr();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains("ERROR"))
            .collect();
        assert!(warnings.is_empty(), "{backend}: {warnings:?}");
    }
}
