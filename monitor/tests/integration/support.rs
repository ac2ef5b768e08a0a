//! Runs the monitor, collects and checks its lines, replays them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use file_event::{EventType, FileEvent};

pub const BIN: &str = env!("CARGO_BIN_EXE_file-monitor");

/// Tests that flood the kernel or the disk take turns.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Monitor {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    pub metrics_port: Option<u16>,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Monitor {
    /// Starts the monitor on `root` and waits until its initial watch is in place.
    pub fn start(root: &Path, args: &[&str]) -> Monitor {
        Self::start_with(root, args, &[])
    }

    pub fn start_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Monitor {
        let mut cmd = Command::new(BIN);
        cmd.arg(root);
        let mut metrics_port = None;
        if !args.iter().any(|a| a.starts_with("--metrics-addr")) {
            let p = free_port();
            metrics_port = Some(p);
            cmd.arg(format!("--metrics-addr=127.0.0.1:{p}"));
        }
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env_remove("TENANT_ID")
            .env_remove("USER_ID")
            .env_remove("SESSION_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, metrics_port)
    }

    pub fn spawn(mut cmd: Command, metrics_port: Option<u16>) -> Monitor {
        let mut child = cmd.spawn().expect("spawn file-monitor");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => l2.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = String::new();
            while r.read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
                e2.lock().unwrap().push_str(&buf);
                buf.clear();
            }
        });
        let m = Monitor {
            child,
            lines,
            stderr,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !m.stderr().contains(" watching") {
            assert!(
                Instant::now() < deadline,
                "monitor did not start: {}",
                m.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        m
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn raw_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line so far, each checked to be a valid `file-event/1`.
    pub fn events(&self) -> Vec<FileEvent> {
        self.raw_lines()
            .iter()
            .map(|l| FileEvent::from_json(l).unwrap_or_else(|e| panic!("invalid line {l:?}: {e}")))
            .collect()
    }

    /// Waits until `pred` holds for the events so far.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[FileEvent]) -> bool) -> Vec<FileEvent> {
        self.wait_for_within(what, Duration::from_secs(15), pred)
    }

    pub fn wait_for_within(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&[FileEvent]) -> bool,
    ) -> Vec<FileEvent> {
        let deadline = Instant::now() + limit;
        loop {
            let evs = self.events();
            if pred(&evs) {
                return evs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; events so far:\n{}\nstderr:\n{}",
                    summary(&evs).join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until no new line arrived for `quiet`.
    pub fn settle(&self, quiet: Duration) -> Vec<FileEvent> {
        let mut n = self.raw_lines().len();
        let mut since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        while since.elapsed() < quiet && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let m = self.raw_lines().len();
            if m != n {
                n = m;
                since = Instant::now();
            }
        }
        self.events()
    }

    /// SIGTERM; returns the exit status, how long it took, and all events.
    pub fn terminate(mut self) -> (ExitStatus, Duration, Vec<FileEvent>) {
        let t = Instant::now();
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "monitor ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = t.elapsed();
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let evs = self.events();
        (status, took, evs)
    }

    /// SIGTERM, checked to be a clean exit; returns all events.
    pub fn stop(self) -> Vec<FileEvent> {
        let (status, _, evs) = self.terminate();
        assert_eq!(status.code(), Some(0), "clean exit");
        evs
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port.expect("metrics enabled"), "/metrics").1
    }

    /// The value of one sample line (`name{labels}` exactly as printed).
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs a shell line in `dir`.
pub fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "`{script}` failed");
}

pub fn summary(evs: &[FileEvent]) -> Vec<String> {
    evs.iter().map(short).collect()
}

/// `create file a/b` / `move dir a -> b` (with `(rescan)` when flagged).
pub fn short(e: &FileEvent) -> String {
    let mut s = match e.event_type {
        EventType::Move => format!(
            "move {} {} -> {}",
            e.kind.as_str(),
            e.from.clone().unwrap_or_default(),
            e.to.clone().unwrap_or_default()
        ),
        t => format!("{} {} {}", t, e.kind.as_str(), e.path),
    };
    if e.rescan {
        s.push_str(" (rescan)");
    }
    s
}

/// The event kinds for one path, in order.
pub fn types_for(evs: &[FileEvent], path: &str) -> Vec<String> {
    evs.iter()
        .filter(|e| e.path == path || e.from.as_deref() == Some(path))
        .map(|e| e.event_type.to_string())
        .collect()
}

pub fn has(evs: &[FileEvent], line: &str) -> bool {
    evs.iter().any(|e| short(e) == line)
}

/// `seq` is 1..=n with no gap and no repeat; event ids are unique.
pub fn assert_seq_contiguous(evs: &[FileEvent]) {
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seq gap or repeat at line {}", i + 1);
    }
    let ids: std::collections::HashSet<_> = evs.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), evs.len(), "event ids repeat");
    if let Some(first) = evs.first() {
        assert!(evs.iter().all(|e| e.monitor_id == first.monitor_id));
    }
}

pub type Tree = BTreeMap<Vec<u8>, &'static str>;

/// Applies a stream to a model of the tree, the way a consumer would: a
/// delete or move of a directory takes its subtree along.
pub fn replay(start: &Tree, evs: &[FileEvent]) -> Tree {
    replay_with(start, evs, |e, _| e.kind.as_str())
}

/// Applies a stream to a model that holds a value for each path: `create`
/// and `update` set it to `value(event, None)`, a `move` to
/// `value(event, value its source had)` and carries the subtree's values
/// along, a `delete` drops the path with everything below.
pub fn replay_with<V: Clone>(
    start: &BTreeMap<Vec<u8>, V>,
    evs: &[FileEvent],
    value: impl Fn(&FileEvent, Option<V>) -> V,
) -> BTreeMap<Vec<u8>, V> {
    let mut t = start.clone();
    let below = |t: &BTreeMap<Vec<u8>, V>, p: &[u8]| -> Vec<Vec<u8>> {
        let mut pre = p.to_vec();
        pre.push(b'/');
        t.keys().filter(|k| k.starts_with(&pre)).cloned().collect()
    };
    for e in evs {
        let path = e.path_bytes();
        match e.event_type {
            EventType::Create | EventType::Update => {
                t.insert(path, value(e, None));
            }
            EventType::Delete => {
                for k in below(&t, &path) {
                    t.remove(&k);
                }
                t.remove(&path);
            }
            EventType::Move => {
                let from = match &e.from_b64 {
                    Some(b) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(b).unwrap()
                    }
                    None => e.from.clone().unwrap().into_bytes(),
                };
                for k in below(&t, &path) {
                    t.remove(&k);
                }
                let moved: Vec<Vec<u8>> = below(&t, &from);
                for k in moved {
                    let v = t.remove(&k).unwrap();
                    let mut nk = path.clone();
                    nk.extend_from_slice(&k[from.len()..]);
                    t.insert(nk, v);
                }
                let carried = t.remove(&from);
                t.insert(path, value(e, carried));
            }
            EventType::Access => {}
        }
    }
    t
}

/// The real tree below `root` (not following symlinks), minus `skip` names.
pub fn disk_tree(root: &Path, skip: &[&str]) -> Tree {
    let mut t = Tree::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for de in rd.flatten() {
            let name = de.file_name();
            if skip.iter().any(|s| name.as_bytes() == s.as_bytes()) {
                continue;
            }
            let r = rel.join(&name);
            let ft = de.file_type().unwrap();
            let k = if ft.is_symlink() {
                "symlink"
            } else if ft.is_dir() {
                stack.push(r.clone());
                "dir"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            t.insert(r.as_os_str().as_bytes().to_vec(), k);
        }
    }
    t
}

pub fn assert_trees_equal(model: &Tree, disk: &Tree) {
    if model == disk {
        return;
    }
    let show = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
    let missing: Vec<String> = disk
        .keys()
        .filter(|k| !model.contains_key(*k))
        .take(20)
        .map(show)
        .collect();
    let extra: Vec<String> = model
        .keys()
        .filter(|k| !disk.contains_key(*k))
        .take(20)
        .map(show)
        .collect();
    let kinds: Vec<String> = disk
        .iter()
        .filter(|(k, v)| model.get(*k).is_some_and(|m| m != *v))
        .take(20)
        .map(|(k, v)| format!("{} disk={v} model={}", show(k), model[k]))
        .collect();
    panic!(
        "replayed stream differs from the disk ({} vs {} entries)\nmissing from stream: {missing:?}\nonly in stream: {extra:?}\nkind mismatch: {kinds:?}",
        model.len(),
        disk.len()
    );
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("fmon-").tempdir().unwrap()
}

/// A root to watch and, beside it, the directory of its state file:
/// `<tmp>/root` and `<tmp>/state/index.json` (`../state` seen from the
/// root), removed on drop.
pub struct StateDirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

pub fn state_dirs() -> StateDirs {
    let tmp = tempdir();
    let root = tmp.path().join("root");
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&state_dir).unwrap();
    StateDirs {
        _tmp: tmp,
        root,
        state: state_dir.join("index.json"),
    }
}

impl StateDirs {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state file (written by the monitor).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// `--state-file=<state>`.
    pub fn arg(&self) -> String {
        state_arg(&self.state)
    }
}

/// `--state-file=<state>`.
pub fn state_arg(state: &Path) -> String {
    format!("--state-file={}", state.display())
}

/// The journal kept beside a state file.
pub fn journal(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// A small tmpfs (to fill a disk), unmounted on drop; `None` without the
/// privilege to mount.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempdir();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipped: needs root to mount a small tmpfs");
            return None;
        }
        Some(Tmpfs(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Whether the monitor can run as uid 65534 through `setpriv`: root, util-linux,
/// and a binary that user may execute (not the case when the checkout lives
/// under a private home directory). Says why not on stderr.
pub fn can_run_as_nobody() -> bool {
    let can = nix::unistd::geteuid().is_root()
        && Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "--version",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !can {
        eprintln!(
            "skipped: needs root, setpriv (util-linux) and a binary that uid 65534 can execute"
        );
    }
    can
}

/// Whether the suite runs on the notify backend, which a test that relies
/// on reading every queued kernel event at once skips (logged): the default
/// backend reads them together, `--backend=notify` hands them over in
/// smaller groups (docs/monitor.md, "Kind, size and checksum").
pub fn skipped_on_notify() -> bool {
    if std::env::var("FILE_MONITOR_BACKEND").is_ok_and(|b| b == "notify") {
        eprintln!("skipped on the notify backend (see docs/monitor.md)");
        return true;
    }
    false
}
