//! Command lines of `export` and `token` that cannot do what was meant are
//! usage errors (exit 2, nothing written), with the real binary and store.

use std::path::Path;
use std::process::Output;

use crate::api_harness::{ev, SECRET};
use crate::harness::run;

const MONITOR: &str = "0190b5a0-0000-7000-8000-0000000000c1";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A store in `dir` holding one record of tenant `acme` on 2026-11-27.
fn seed(dir: &Path) -> String {
    let file = dir.join("events.ndjson");
    let line = ev(
        "acme",
        "alice",
        "s-1",
        MONITOR,
        1,
        "2026-11-27T12:00:00Z",
        "update",
        "src/a.rs",
    );
    std::fs::write(&file, line.to_string()).expect("write");
    let store = format!("embedded:{}", dir.join("store").display());
    let out = run(&["import", "--store", &store, file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    store
}

fn assert_usage_error(out: &Output, says: &[&str], what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    for s in says {
        assert!(err.contains(s), "{what}: {s:?} not in {err}");
    }
    assert!(out.stdout.is_empty(), "{what}: wrote to stdout");
}

#[test]
fn export_with_since_after_until_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = seed(dir.path());
    let output = dir.path().join("out.ndjson");
    let o = output.to_str().expect("utf8");
    let range = [
        "--since",
        "2026-11-28T00:00:00Z",
        "--until",
        "2026-11-27T00:00:00Z",
    ];
    for selection in [&["--tenant", "acme"][..], &["--dead-letters"][..]] {
        let mut args = vec!["export", "--store", &store, "--output", o];
        args.extend_from_slice(selection);
        args.extend_from_slice(&range);
        let out = run(&args);
        assert_usage_error(
            &out,
            &["--since", "--until", "is not before"],
            &format!("{args:?}"),
        );
        assert!(!output.exists(), "{args:?} created the output file");
    }
    // An empty range [t, t) selects nothing either (--until is exclusive).
    let out = run(&[
        "export",
        "--store",
        &store,
        "--tenant",
        "acme",
        "--since",
        "2026-11-27T00:00:00Z",
        "--until",
        "2026-11-27T00:00:00Z",
    ]);
    assert_usage_error(&out, &["is not before"], "since == until");
}

#[test]
fn export_of_a_malformed_id_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = seed(dir.path());
    let output = dir.path().join("out.ndjson");
    let o = output.to_str().expect("utf8");
    let long = "a".repeat(129);
    for (args, flag) in [
        (vec!["--tenant", "ac me"], "--tenant \"ac me\""),
        (vec!["--tenant", ""], "--tenant \"\""),
        (vec!["--tenant", &long], "--tenant \"aaa"),
        (vec!["--tenant", "acme", "--user", "a/b"], "--user \"a/b\""),
        (
            vec!["--tenant", "acme", "--user", "alice", "--session", "s 1"],
            "--session \"s 1\"",
        ),
    ] {
        let mut all = vec!["export", "--store", &store, "--output", o];
        all.extend_from_slice(&args);
        let out = run(&all);
        assert_usage_error(
            &out,
            &[flag, "1-128 chars of [A-Za-z0-9._:@-]"],
            &format!("{args:?}"),
        );
        assert!(!output.exists(), "{args:?} created the output file");
    }
}

#[test]
fn export_of_an_unknown_tenant_warns_but_an_empty_day_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = seed(dir.path());
    let out = run(&["export", "--store", &store, "--tenant", "nosuch"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "nothing to export");
    assert!(
        err.contains("warning: tenant nosuch has no records") && err.contains("fdb-sink tenants"),
        "{err}"
    );
    // The daily export of a day without records of a known tenant.
    let output = dir.path().join("acme.ndjson.gz");
    let out = run(&[
        "export",
        "--store",
        &store,
        "--tenant",
        "acme",
        "--since",
        "2026-11-20T00:00:00Z",
        "--until",
        "2026-11-21T00:00:00Z",
        "--output",
        output.to_str().expect("utf8"),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("0 records"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert!(output.exists(), "the empty day's file is written");
}

#[test]
fn token_usage_errors_exit_2_and_print_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).expect("secret");
    let s = secret.to_str().expect("utf8");
    for (args, says) in [
        (
            ["--tenant", "", "--user", "alice", "--ttl", "1h"],
            "--tenant \"\"",
        ),
        (
            ["--tenant", "acme", "--user", "a b", "--ttl", "1h"],
            "--user \"a b\"",
        ),
        (
            ["--tenant", "acme", "--user", "alice", "--ttl", "0s"],
            "--ttl 0s",
        ),
        (
            ["--tenant", "acme", "--user", "alice", "--ttl", "0h0m"],
            "already expired",
        ),
    ] {
        let mut all = vec!["token", "--jwt-secret-file", s];
        all.extend_from_slice(&args);
        assert_usage_error(&run(&all), &[says], &format!("{args:?}"));
    }
    let out = run(&[
        "token",
        "--jwt-secret-file",
        s,
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--ttl",
        "1s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty(), "a 1s token is minted");
}

/// A FoundationDB store on a build without FoundationDB cannot work
/// whatever the store's state: a usage error for every command that opens
/// a store, as for any other flag this build cannot honour.
#[cfg(not(feature = "fdb"))]
#[test]
fn an_fdb_store_on_a_build_without_it_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, "").expect("write");
    let f = file.to_str().expect("utf8");
    for args in [
        &["export", "--store", "fdb", "--tenant", "acme"][..],
        &["tenants", "--store", "fdb"][..],
        &["import", "--store", "fdb", f][..],
        &["serve", "--store", "fdb", "--listen", "127.0.0.1:0"][..],
    ] {
        let out = run(args);
        assert_usage_error(&out, &["built without FoundationDB support"], args[0]);
    }
}
