//! Side-by-side benchmark of `file-monitor` and `inotifywait -m -r`: one
//! workload generator, both watchers running on the same tree in the same run,
//! inotifywait given the event mask file-monitor subscribes to.
//!
//! ```sh
//! cargo build --release -p monitor --bin file-monitor --example bench
//! target/release/examples/bench            # full run (about 2-4 minutes)
//! target/release/examples/bench --quick    # 10x smaller, for a smoke run
//! target/release/examples/bench --only sustained,latency   # some sections
//! ```
//!
//! Sections: `idle`, `burst`, `sustained`, `latency`, `initial`, `scan`.
//! Reports, for each watcher: events captured versus generated (100k-file
//! create burst, then delete burst), CPU seconds per 100k generated events,
//! peak RSS (idle on a 10k-file tree, during a 10k events/s load, on tmpfs
//! when `/dev/shm` exists; `--gen-threads N` for N generator threads), p50/p99
//! latency from `close()` to the line on stdout (file-monitor runs with
//! `--debounce=0`; elsewhere it runs with its defaults); and the time to
//! place the initial watch on a 100k-directory tree and, for file-monitor
//! alone, the cost of one poll scan of 100k files.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Inotify events file-monitor subscribes to (without `--access`; see
/// `monitor::watcher::mask`), given to inotifywait as well so that both make
/// the kernel do the same work.
const MASK: &[&str] = &[
    "create",
    "delete",
    "close_write",
    "modify",
    "moved_from",
    "moved_to",
    "delete_self",
    "move_self",
];

struct Watched {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    ready: Arc<Mutex<bool>>,
}

fn monitor_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("file-monitor");
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p monitor --bin file-monitor"
    );
    bin
}

fn spawn(name: &'static str, mut cmd: Command, ready_marker: &'static str) -> Watched {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(Mutex::new(false));
    let out = child.stdout.take().unwrap();
    let l2 = lines.clone();
    std::thread::spawn(move || {
        // Whole reads, one lock per read: the reader stays cheap beside the
        // generator on a small machine. Lines of one read share its time.
        let mut out = out;
        let mut buf = vec![0u8; 1 << 20];
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let n = match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let t = Instant::now();
            partial.extend_from_slice(&buf[..n]);
            let Some(end) = partial.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let mut lines = l2.lock().unwrap();
            for l in partial[..=end].split_inclusive(|&b| b == b'\n') {
                lines.push((t, String::from_utf8_lossy(l).into_owned()));
            }
            drop(lines);
            partial.drain(..=end);
        }
    });
    let err = child.stderr.take().unwrap();
    let r2 = ready.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains(ready_marker) {
                *r2.lock().unwrap() = true;
            }
            if line.contains("overflow") || line.contains("budget") || line.contains("ERROR") {
                eprintln!("  [{name}] {line}");
            }
        }
    });
    let w = Watched {
        name,
        child,
        lines,
        ready,
    };
    let t = Instant::now();
    while !*w.ready.lock().unwrap() {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "{name} never became ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    w
}

fn start_monitor(root: &Path, extra: &[&str]) -> Watched {
    let mut c = Command::new(monitor_bin());
    c.arg(root)
        .arg("--metrics-addr=off")
        .args(extra)
        .env("RUST_LOG", "info");
    spawn("file-monitor", c, " watching")
}

fn start_inotifywait(root: &Path) -> Watched {
    let mut c = Command::new("inotifywait");
    c.args(["-m", "-r", "--format", "%e %w%f"]);
    for e in MASK {
        c.args(["-e", e]);
    }
    c.arg(root);
    spawn("inotifywait", c, "Watches established")
}

impl Watched {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    /// utime + stime in seconds.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }
    fn peak_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }
    fn n_lines(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
    fn settle(&self, quiet: Duration, limit: Duration) {
        let t = Instant::now();
        let mut n = self.n_lines();
        let mut since = Instant::now();
        while since.elapsed() < quiet && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
            let m = self.n_lines();
            if m != n {
                n = m;
                since = Instant::now();
            }
        }
    }
    /// Distinct paths (relative) reported with the given event.
    fn paths_with(&self, root: &Path, from: usize, kind: &str) -> HashSet<String> {
        let lines = self.lines.lock().unwrap();
        let root = format!("{}/", root.display());
        lines[from..]
            .iter()
            .filter_map(|(_, l)| {
                if self.name == "file-monitor" {
                    if !l.contains(&format!("\"event_type\":\"{kind}\"")) {
                        return None;
                    }
                    json_field(l, "path")
                } else {
                    let (ev, p) = l.trim_end().split_once(' ')?;
                    if !ev.split(',').any(|e| e.eq_ignore_ascii_case(kind)) {
                        return None;
                    }
                    p.strip_prefix(&root).map(str::to_owned)
                }
            })
            .collect()
    }
    fn stop(mut self) {
        let _ = nix_kill(self.pid());
        let _ = self.child.wait();
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let i = line.find(&pat)? + pat.len();
    let j = line[i..].find('"')?;
    Some(line[i..i + j].to_owned())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn make_tree(root: &Path, dirs: usize, files_per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files_per_dir {
            std::fs::write(dir.join(format!("f{f}")), b"x").unwrap();
        }
    }
}

/// Sections to run: all, or the ones named by `--only a,b` (idle, burst,
/// sustained, latency, initial, scan).
fn wanted(section: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .is_some_and(|v| v.split(',').any(|s| s == section)),
        None => true,
    }
}

/// One sustained-load generator thread: creates (and writes) file `n` for
/// every `n` with `n % threads == k`, deletes it 50 files later, paced to
/// `files_per_sec / threads` in ticks of `TICK`. Returns the files it created.
fn generate(
    dirs: &[PathBuf],
    k: usize,
    threads: usize,
    files_per_sec: f64,
    t0: Instant,
    secs: u64,
) -> (Vec<usize>, f64) {
    const TICK: Duration = Duration::from_millis(1);
    let mut made = Vec::new();
    let mut n = k;
    let name = |n: usize| dirs[n % dirs.len()].join(format!("r{n}"));
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = (t0.elapsed().as_secs_f64() * files_per_sec) as usize;
        // A generator that fell behind catches up, but never past the window.
        while n < due && t0.elapsed() < Duration::from_secs(secs) {
            let mut f = std::fs::File::create(name(n)).unwrap();
            f.write_all(b"payload").unwrap();
            drop(f);
            made.push(n);
            if made.len() > 50 {
                let old = made[made.len() - 51];
                std::fs::remove_file(name(old)).unwrap();
            }
            n += threads;
        }
        std::thread::sleep(TICK);
    }
    (made, thread_cpu())
}

/// CPU seconds (utime + stime) of the calling thread.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// The value of `--name N`, if given.
fn arg_value(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let burst = 100_000 / scale;
    let base = tempfile::Builder::new()
        .prefix("fmon-bench-")
        .tempdir()
        .unwrap();
    println!(
        "# file-monitor vs inotifywait ({} run)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {} cores, {}", num_cpus(), mem_total());
    println!(
        "fs.inotify: max_user_watches={} max_queued_events={}",
        read_proc("/proc/sys/fs/inotify/max_user_watches"),
        read_proc("/proc/sys/fs/inotify/max_queued_events")
    );

    if wanted("idle") {
        idle(base.path());
    }
    if wanted("burst") {
        burst_run(base.path(), burst);
    }
    if wanted("sustained") {
        // On tmpfs when there is one: on ext4, creating files right after
        // deleting others sends the inode allocator scanning its bitmaps
        // (`recently_deleted`), which made the generator itself the
        // bottleneck (up to 0.5 ms of CPU per file on a busy disk).
        let shm = tempfile::Builder::new()
            .prefix("fmon-bench-")
            .tempdir_in("/dev/shm")
            .ok();
        sustained(shm.as_ref().map_or(base.path(), |d| d.path()), quick);
    }
    if wanted("latency") {
        latency(base.path(), scale);
    }
    if wanted("initial") {
        initial(base.path(), scale);
    }
    if wanted("scan") {
        scan_cost(base.path(), scale);
    }
}

fn idle(base: &Path) {
    // 1. Idle RSS on a 10k-file tree.
    let idle_root = base.join("idle");
    make_tree(&idle_root, 100, 10_000 / 100);
    let m = start_monitor(&idle_root, &[]);
    let w = start_inotifywait(&idle_root);
    std::thread::sleep(Duration::from_secs(2));
    println!("\n## idle on a 10k-file tree (100 dirs)");
    println!("| watcher | RSS MiB | peak RSS MiB |\n|---|---|---|");
    for x in [&m, &w] {
        println!("| {} | {:.1} | {:.1} |", x.name, x.rss_mib(), x.peak_mib());
    }
    m.stop();
    w.stop();
}

fn burst_run(base: &Path, burst: usize) {
    // 2. Burst: create then delete `burst` files in 100 watched directories.
    let root = base.join("burst");
    for d in 0..100 {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
    }
    let m = start_monitor(&root, &[]);
    let w = start_inotifywait(&root);
    let (c0m, c0w) = (m.cpu(), w.cpu());
    let t = Instant::now();
    for i in 0..burst {
        let mut f = std::fs::File::create(root.join(format!("d{}/f{i}", i % 100))).unwrap();
        f.write_all(b"0123456789").unwrap();
    }
    let gen_create = t.elapsed();
    m.settle(Duration::from_secs(2), Duration::from_secs(120));
    w.settle(Duration::from_secs(2), Duration::from_secs(120));
    let created_m = m.paths_with(&root, 0, "create").len();
    let created_w = w.paths_with(&root, 0, "create").len();
    let (nm, nw) = (m.n_lines(), w.n_lines());
    let t = Instant::now();
    for i in 0..burst {
        std::fs::remove_file(root.join(format!("d{}/f{i}", i % 100))).unwrap();
    }
    let gen_delete = t.elapsed();
    m.settle(Duration::from_secs(2), Duration::from_secs(120));
    w.settle(Duration::from_secs(2), Duration::from_secs(120));
    let deleted_m = m.paths_with(&root, nm, "delete").len();
    let deleted_w = w.paths_with(&root, nw, "delete").len();
    // The settle waits (2 s quiet each) cost no CPU.
    let (cpu_m, cpu_w) = (m.cpu() - c0m, w.cpu() - c0w);
    let generated = 2 * burst;
    println!(
        "\n## burst: {burst} files created ({:.1} s), then deleted ({:.1} s), both watchers at once",
        gen_create.as_secs_f64(),
        gen_delete.as_secs_f64()
    );
    println!("| watcher | creates captured | deletes captured | lines written | CPU s total | CPU s per 100k events | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    for (x, c, d, cpu) in [
        (&m, created_m, deleted_m, cpu_m),
        (&w, created_w, deleted_w, cpu_w),
    ] {
        println!(
            "| {} | {c}/{burst} | {d}/{burst} | {} | {cpu:.2} | {:.2} | {:.1} |",
            x.name,
            x.n_lines(),
            cpu / (generated as f64 / 100_000.0),
            x.peak_mib()
        );
    }
    println!(
        "(events generated: {generated}; CPU ratio file-monitor/inotifywait = {:.2})",
        cpu_m / cpu_w.max(0.01)
    );
    m.stop();
    w.stop();
}

fn sustained(base: &Path, quick: bool) {
    // 3. Sustained 10k events/s for 5 s: each file is created with a write
    // (one create event) and deleted 50 files later (one delete event),
    // paced in 1 ms ticks. One generator thread by default: with several,
    // one thread's delete falls between another's create and close, which
    // file-monitor deliberately does not merge across (a delete seals
    // earlier writes), so each such file costs a create and an update line.
    let root = base.join("rate");
    let fs = if base.starts_with("/dev/shm") {
        "tmpfs"
    } else {
        "the base directory's file system"
    };
    make_tree(&root, 100, 100);
    let dirs: Arc<Vec<PathBuf>> = Arc::new((0..100).map(|d| root.join(format!("d{d}"))).collect());
    let m = start_monitor(&root, &[]);
    let w = start_inotifywait(&root);
    let secs = 5;
    let per_sec = 10_000 / if quick { 2 } else { 1 };
    let threads = arg_value("--gen-threads").unwrap_or(1);
    let (c0m, c0w) = (m.cpu(), w.cpu());
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|k| {
            let dirs = dirs.clone();
            std::thread::spawn(move || generate(&dirs, k, threads, per_sec as f64 / 2.0, t0, secs))
        })
        .collect();
    let (made, gen_cpu): (Vec<Vec<usize>>, Vec<f64>) =
        workers.into_iter().map(|h| h.join().unwrap()).unzip();
    let gen_cpu: f64 = gen_cpu.iter().sum();
    let elapsed = t0.elapsed().as_secs_f64();
    let n: usize = made.iter().map(Vec::len).sum();
    let deleted: usize = made.iter().map(|v| v.len().saturating_sub(50)).sum();
    let achieved = (n + deleted) as f64 / elapsed;
    m.settle(Duration::from_secs(1), Duration::from_secs(60));
    w.settle(Duration::from_secs(1), Duration::from_secs(60));
    let (cpu_m, cpu_w) = (m.cpu() - c0m, w.cpu() - c0w);
    println!(
        "\n## sustained load: target {per_sec} events/s for {secs} s on a 10k-file tree on {fs} (generator threads: {threads}); generated {n} files, {} events ({achieved:.0}/s, generator CPU {gen_cpu:.2} s)",
        n + deleted
    );
    println!("| watcher | creates captured | deletes captured | peak RSS MiB | CPU s | CPU s per 100k events | lines |\n|---|---|---|---|---|---|---|");
    for (x, cpu) in [(&m, cpu_m), (&w, cpu_w)] {
        let c = x.paths_with(&root, 0, "create").len();
        let d = x.paths_with(&root, 0, "delete").len();
        println!(
            "| {} | {c}/{n} | {d}/{deleted} | {:.1} | {cpu:.2} | {:.2} | {} |",
            x.name,
            x.peak_mib(),
            cpu / ((n + deleted) as f64 / 100_000.0),
            x.n_lines()
        );
    }
    let updates = m
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.contains("\"event_type\":\"update\""))
        .count();
    println!(
        "(CPU ratio file-monitor/inotifywait = {:.2}; file-monitor update lines: {updates}, written when a file's write or close came after its create was already written)",
        cpu_m / cpu_w.max(0.01)
    );
    m.stop();
    w.stop();
}

fn latency(base: &Path, scale: usize) {
    // 4. Latency close() -> line, sequential samples on existing files.
    let root = base.join("lat");
    std::fs::create_dir_all(&root).unwrap();
    let samples = 2000 / scale.min(4);
    for i in 0..samples {
        std::fs::write(root.join(format!("l{i}")), b"").unwrap();
    }
    let m = start_monitor(&root, &["--debounce=0"]);
    let w = start_inotifywait(&root);
    let mut lat_m = Vec::new();
    let mut lat_w = Vec::new();
    for i in 0..samples {
        let name = format!("l{i}");
        let (sm, sw) = (m.n_lines(), w.n_lines());
        let closed;
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join(&name))
                .unwrap();
            f.write_all(b"sample").unwrap();
            drop(f);
            closed = Instant::now();
        }
        let full = format!("{}/{}", root.display(), name);
        let deadline = Instant::now() + Duration::from_secs(2);
        let (mut got_m, mut got_w) = (None, None);
        while (got_m.is_none() || got_w.is_none()) && Instant::now() < deadline {
            if got_m.is_none() {
                got_m = m.lines.lock().unwrap()[sm..]
                    .iter()
                    .find(|(_, l)| {
                        l.contains("\"event_type\":\"update\"")
                            && json_field(l, "path").as_deref() == Some(name.as_str())
                    })
                    .map(|(t, _)| *t);
            }
            if got_w.is_none() {
                got_w = w.lines.lock().unwrap()[sw..]
                    .iter()
                    .find(|(_, l)| l.starts_with("CLOSE_WRITE") && l.trim_end().ends_with(&full))
                    .map(|(t, _)| *t);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        if let Some(t) = got_m {
            lat_m.push(t.saturating_duration_since(closed).as_secs_f64() * 1000.0);
        }
        if let Some(t) = got_w {
            lat_w.push(t.saturating_duration_since(closed).as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("\n## latency close() -> line on stdout ({samples} sequential writes, file-monitor --debounce=0)");
    println!("| watcher | samples | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    for (name, v) in [("file-monitor", &mut lat_m), ("inotifywait", &mut lat_w)] {
        let n = v.len();
        let max = v.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {name} | {n} | {:.3} | {:.3} | {max:.3} |",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    m.stop();
    w.stop();
}

fn initial(base: &Path, scale: usize) {
    // 5. Initial watch of a 100k-directory tree (one watcher at a time: both
    // together would need more than the per-UID watch budget).
    let root = base.join("dirs");
    let ndirs = 100_000 / scale;
    for a in 0..(ndirs / 100) {
        for b in 0..100 {
            std::fs::create_dir_all(root.join(format!("a{a}/b{b}"))).unwrap();
        }
    }
    println!("\n## initial watch of a {ndirs}-directory tree");
    println!("| watcher | time to ready s | RSS MiB after |\n|---|---|---|");
    let t = Instant::now();
    let m = start_monitor(&root, &[]);
    println!(
        "| file-monitor | {:.2} | {:.1} |",
        t.elapsed().as_secs_f64(),
        m.rss_mib()
    );
    m.stop();
    let t = Instant::now();
    let w = start_inotifywait(&root);
    println!(
        "| inotifywait -r | {:.2} | {:.1} |",
        t.elapsed().as_secs_f64(),
        w.rss_mib()
    );
    w.stop();
}

fn scan_cost(base: &Path, scale: usize) {
    // 6. One poll scan of 100k files (the library's scan, warm cache).
    let root = base.join("scan");
    make_tree(&root, 100, 100_000 / scale / 100);
    let ignore = monitor::ignore::IgnoreSet::new(&[]).unwrap();
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let idx = monitor::index::scan(&root, b"", &ignore, &mut monitor::index::NoHook, false);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        n = idx.len();
    }
    let mut index = monitor::index::scan(&root, b"", &ignore, &mut monitor::index::NoHook, false);
    let snap = index.clone();
    let t = Instant::now();
    let changes = index.reconcile(b"", &snap);
    let diff_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("\n## one poll scan of {n} entries (warm cache)");
    println!(
        "scan: {:.0} / {:.0} / {:.0} ms (3 runs); diff against the index: {diff_ms:.0} ms ({} changes)",
        times[0],
        times[1],
        times[2],
        changes.len()
    );
}

fn read_proc(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn mem_total() -> String {
    read_proc("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .map(|k| format!("{:.0} GiB RAM", k.parse::<f64>().unwrap_or(0.0) / 1048576.0))
        .unwrap_or_default()
}
