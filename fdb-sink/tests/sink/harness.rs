//! Starts `fdb-sink serve` processes on free ports and reads their stores.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fdb_sink::audit::{self, DeadLetterRow, MonitorRow, SessionSummary, StoredRecord};
use fdb_sink::keys::Keys;
use fdb_sink::store::embedded::EmbeddedStore;
use fdb_sink::store::StoreExt;

pub const BIN: &str = env!("CARGO_BIN_EXE_fdb-sink");

/// A running `fdb-sink serve`.
pub struct Sink {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Sink {
    /// Starts a sink on `dir` listening on a free port.
    pub fn start(dir: &Path, extra: &[&str]) -> Sink {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// Starts a sink on `dir` listening on `listen`, and waits until it listens.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Sink {
        let store = format!("embedded:{}", dir.display());
        let mut child = Command::new(BIN)
            .args(["serve", "--store", &store, "--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fdb-sink");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "sink did not start; log:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                )
            });
        Sink {
            child: Some(child),
            addr: addr.parse().expect("listen address"),
            dir: dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "sink exited with {status}");
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("sink did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits until /readyz answers `status`.
    pub fn wait_ready(&self, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = client();
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send() {
                if r.status().as_u16() == status {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the sink is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM in /proc/PID/status")
            * 1024
    }

    pub fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("metrics")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Posts an NDJSON body; returns status and JSON body.
/// An ingest or import summary's `[written, duplicates, dead_lettered,
/// dead_letter_duplicates]` (`u64::MAX` for one that is missing).
pub fn counts(r: &serde_json::Value) -> [u64; 4] {
    [
        "written",
        "duplicates",
        "dead_lettered",
        "dead_letter_duplicates",
    ]
    .map(|k| r[k].as_u64().unwrap_or(u64::MAX))
}

pub fn post(sink: &Sink, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = client()
        .post(sink.url("/v1/events"))
        .header("content-type", "application/x-ndjson");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.body(body).send().expect("post");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Runs `fdb-sink ARGS` to its end (warnings and errors on stderr).
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fdb-sink")
}

/// Runs `fdb-sink import --store STORE -` to its end with `body` on its
/// standard input.
pub fn import_stdin(store: &str, body: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["import", "--store", store, "-"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fdb-sink import -");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write to import's standard input");
    child.wait_with_output().expect("wait for import")
}

/// Runs `fdb-sink ARGS` to its end and asserts that it succeeded.
pub fn cli(args: &[&str]) -> std::process::Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "fdb-sink {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One valid event line.
pub fn event(monitor: &str, seq: u64, session: &str) -> String {
    serde_json::json!({
        "schema": "file-event/1",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "monitor_id": monitor,
        "seq": seq,
        "timestamp": format!("2026-11-26T18:{:02}:{:02}.{:09}Z", (seq / 60) % 60, seq % 60, seq),
        "event_type": "update",
        "kind": "file",
        "path": format!("src/file{}.rs", seq % 50),
        "size": seq,
        "checksum": format!("sha256:{:064x}", seq),
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": session,
        "metadata": {"team": "core"},
        "namespace": "ide",
        "pod_name": "ws-1",
    })
    .to_string()
}

pub fn ndjson(lines: &[String]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}

/// What a stopped sink left in its store.
pub struct Stored {
    pub records: Vec<StoredRecord>,
    pub sessions: Vec<SessionSummary>,
    pub monitors: Vec<MonitorRow>,
    pub dead_letters: Vec<DeadLetterRow>,
}

/// Reads the store in `dir` (the sink must be stopped: one process per file).
pub fn read_store(dir: &Path) -> Stored {
    let store = EmbeddedStore::open(dir).expect("open store");
    let keys = Keys::default();
    store
        .read(|t| {
            Ok(Stored {
                records: audit::records_in(t, &keys, &keys.audit_logs_all(), 0, false)?,
                sessions: audit::sessions_in(t, &keys, &keys.sessions_all())?,
                monitors: audit::monitors(t, &keys)?,
                dead_letters: audit::dead_letters(t, &keys, 0)?,
            })
        })
        .expect("read store")
}
