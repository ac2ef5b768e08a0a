//! The optional ingest bearer token.

use crate::harness::{event, post, Sink};

#[test]
fn a_token_file_requires_the_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let sink = Sink::start(
        &dir.path().join("store"),
        &["--ingest-token-file", token_file.to_str().expect("utf8")],
    );
    let body = || event(&uuid::Uuid::new_v4().to_string(), 1, "s-auth").into_bytes();
    let (s, r) = post(&sink, body(), &[]);
    assert_eq!((s, r["error"].as_str()), (401, Some("unauthorized")));
    let (s, _) = post(&sink, body(), &[("authorization", "Bearer wrong")]);
    assert_eq!(s, 401);
    let (s, _) = post(&sink, body(), &[("authorization", "s3cret-token")]);
    assert_eq!(s, 401, "the Bearer scheme is required");
    assert!(
        sink.metrics()
            .contains("fdb_sink_batches_total{outcome=\"rejected\"} 3"),
        "the three 401s are rejected batches"
    );
    // Vector drops a batch refused with a 4xx: the sink's log says why.
    let refused = || {
        let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.contains("ingest request refused") && l.contains("401"))
            .count();
        (n, log)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while refused().0 < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (n, log) = refused();
    assert_eq!(n, 3, "{log}");
    let (s, r) = post(&sink, body(), &[("authorization", "Bearer s3cret-token")]);
    assert_eq!((s, r["written"].as_u64()), (200, Some(1)), "{r}");
    let (s, r) = post(&sink, body(), &[("authorization", "bearer s3cret-token")]);
    assert_eq!(
        (s, r["written"].as_u64()),
        (200, Some(1)),
        "the scheme is case-insensitive: {r}"
    );
    // Health and metrics stay open for probes and Prometheus.
    let h = crate::harness::client()
        .get(sink.url("/healthz"))
        .send()
        .expect("healthz");
    assert_eq!(h.status().as_u16(), 200);
}

#[test]
fn an_empty_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "\n").expect("token");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--ingest-token-file"])
        .arg(&token_file)
        .arg("--store")
        .arg(format!("embedded:{}", dir.path().join("s").display()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
}

/// `dir/token` laid out as a Kubernetes Secret volume: `token` links to
/// `..data/token`, `..data` to a directory per version of the Secret.
struct SecretVolume {
    dir: std::path::PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: &std::path::Path, token: &str) -> SecretVolume {
        std::fs::create_dir_all(dir).expect("secret dir");
        let mut v = SecretVolume {
            dir: dir.to_path_buf(),
            version: 0,
        };
        v.update(token);
        std::os::unix::fs::symlink("..data/token", dir.join("token")).expect("token link");
        v
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("token")
    }

    /// What the kubelet does on a Secret update: writes the new version in a
    /// new directory, swaps `..data` to it atomically, removes the old one.
    fn update(&mut self, token: &str) {
        let old = format!("..v{}", self.version);
        self.version += 1;
        let new = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&new)).expect("version dir");
        std::fs::write(self.dir.join(&new).join("token"), token).expect("token");
        std::os::unix::fs::symlink(&new, self.dir.join("..data_tmp")).expect("link");
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).expect("swap");
        let _ = std::fs::remove_dir_all(self.dir.join(old));
    }
}

/// Posts one event with `token`; the status.
fn post_with(sink: &Sink, token: &str) -> u16 {
    let body = event(&uuid::Uuid::new_v4().to_string(), 1, "s-rotate").into_bytes();
    let auth = format!("Bearer {token}");
    post(sink, body, &[("authorization", &auth)]).0
}

const UNUSABLE: &str = "ingest token file unusable; still accepting the tokens read before";

/// Posts with `token` (each accepted) until the log says `text` `count`
/// times: the sink has read the file again and kept accepting `token`.
fn keeps_accepting_until_logged(sink: &Sink, token: &str, text: &str, count: usize) {
    let started = std::time::Instant::now();
    loop {
        assert_eq!(post_with(sink, token), 200, "{token} refused");
        let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        if log.matches(text).count() >= count {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "never logged {text:?} {count} times: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls until a request with `token` is answered `status`, for at most
/// `limit`; how long it took.
fn answered_within(
    sink: &Sink,
    token: &str,
    status: u16,
    limit: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    while post_with(sink, token) != status {
        assert!(
            started.elapsed() < limit,
            "{token} not answered {status} {:?} after the change",
            started.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    started.elapsed()
}

/// Polls until `token` is refused, for at most the documented delay (2 s
/// after the change) and a margin; how long it took.
fn refused_within(sink: &Sink, token: &str) -> std::time::Duration {
    answered_within(sink, token, 401, std::time::Duration::from_secs(4))
}

/// A Secret rotation without restart: the new token is added next to the
/// old one (accepted by the first request that presents it: Vector drops a
/// batch answered 401), the clients move to it, the old one is
/// removed (refused within 2 s). Neither a moment without a usable token
/// nor a restart.
#[test]
fn a_token_rotated_in_a_secret_volume_is_taken_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secret = SecretVolume::new(&dir.path().join("secret"), "old-token\n");
    let path = secret.path();
    let sink = Sink::start(
        &dir.path().join("store"),
        &["--ingest-token-file", path.to_str().expect("utf8")],
    );
    assert_eq!(post_with(&sink, "old-token"), 200);
    assert_eq!(post_with(&sink, "new-token"), 401);

    // 1. Both tokens, one per line: the new one is accepted at once,
    // without waiting for the periodic check.
    secret.update("old-token\n\n  new-token  \n");
    assert_eq!(post_with(&sink, "new-token"), 200, "the first request");
    assert_eq!(post_with(&sink, "old-token"), 200, "the old token still");

    // 2. The old token removed: refused within the documented delay.
    secret.update("new-token\n");
    let took = refused_within(&sink, "old-token");
    assert_eq!(post_with(&sink, "new-token"), 200);
    eprintln!("old token refused {took:?} after its removal");

    // 3. A broken update (an empty Secret, then a link to nothing) keeps the
    // token read before: nobody is locked out, and ingest does not open.
    secret.update("\n");
    keeps_accepting_until_logged(&sink, "new-token", UNUSABLE, 1);
    assert_eq!(post_with(&sink, "other"), 401);
    secret.update("new-token\n");
    keeps_accepting_until_logged(&sink, "new-token", "ingest token file readable again", 1);
    let current = format!("..v{}", secret.version);
    std::fs::remove_dir_all(dir.path().join("secret").join(current)).expect("break the link");
    keeps_accepting_until_logged(&sink, "new-token", UNUSABLE, 2);
    assert_eq!(post_with(&sink, "other"), 401);
    let unauthenticated = post(
        &sink,
        event(&uuid::Uuid::new_v4().to_string(), 1, "s-rotate").into_bytes(),
        &[],
    );
    assert_eq!(unauthenticated.0, 401);
    let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        !log.contains("new-token") && !log.contains("old-token"),
        "no token is logged"
    );
}

/// A plain file edited in place, as outside Kubernetes.
#[test]
fn a_token_file_edited_in_place_is_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first\nsecond\n").expect("token");
    let sink = Sink::start(
        &dir.path().join("store"),
        &["--ingest-token-file", token_file.to_str().expect("utf8")],
    );
    assert_eq!(post_with(&sink, "first"), 200);
    assert_eq!(post_with(&sink, "second"), 200);
    std::fs::write(&token_file, "second\nthird\n").expect("token");
    assert_eq!(post_with(&sink, "third"), 200, "the first request");
    refused_within(&sink, "first");
    assert_eq!(post_with(&sink, "second"), 200);
}

/// A wrong token is answered 401 at once, however often it comes: it never
/// waits for a read of the unchanged file. A client sending wrong tokens
/// nonstop does not hold back a token added to the file either.
#[test]
fn a_wrong_token_is_refused_without_waiting() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "right\n").expect("token");
    let sink = Sink::start(
        &dir.path().join("store"),
        &["--ingest-token-file", token_file.to_str().expect("utf8")],
    );
    assert_eq!(post_with(&sink, "right"), 200);
    let started = Instant::now();
    for _ in 0..8 {
        assert_eq!(post_with(&sink, "wrong"), 401);
    }
    let took = started.elapsed();
    eprintln!("eight requests with a wrong token answered in {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "eight requests with a wrong token answered in {took:?}"
    );

    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let one = Instant::now();
                assert_eq!(post_with(&sink, "wrong"), 401);
                slowest = slowest.max(one.elapsed());
            }
            slowest
        });
        std::fs::write(&token_file, "right\nadded\n").expect("token");
        let added = post_with(&sink, "added");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let slowest = flood.join().expect("flood");
        assert_eq!(added, 200, "the first request with the added token");
        eprintln!("slowest 401 {slowest:?}");
        assert!(
            slowest < Duration::from_millis(500),
            "a 401 took {slowest:?}"
        );
    });
    assert_eq!(post_with(&sink, "right"), 200);
}
