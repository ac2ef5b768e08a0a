//! Ingest throughput benchmark: durable commits on the embedded store,
//! 1000-event NDJSON batches over real HTTP, against the physical ceiling
//! measured in the same run (the same bytes appended to a file with one fsync
//! per batch).
//!
//! ```text
//! cargo run --release -p fdb-sink --example ingest_bench -- [--batches 300] [--concurrency 4] [--dir DIR]
//! cargo run --release -p fdb-sink --example ingest_bench -- --validation-only [--batches 300]
//! ```
//!
//! Prints events/s, the share of the ceiling, and batch acknowledgement
//! latency percentiles. `--validation-only` measures validation alone, on
//! one thread, over every event of the workload, and stops there.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fdb_sink::audit::WriteOptions;
use fdb_sink::ingest::http::{self, IngestConfig, IngestState};
use fdb_sink::ingest::Ingestor;
use fdb_sink::keys::Keys;
use fdb_sink::metrics::Metrics;
use fdb_sink::store::embedded::EmbeddedStore;
use fdb_sink::store::{Store, StoreExt};
use prometheus_client::registry::Registry;

/// The same allocator as the `fdb-sink` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Opts {
    batches: usize,
    batch_events: usize,
    concurrency: usize,
    dir: Option<PathBuf>,
    validation_only: bool,
}

const USAGE: &str = "\
usage: ingest_bench [--batches N] [--batch-events N] [--concurrency N] [--dir DIR]
       ingest_bench --validation-only [--batches N] [--batch-events N]

  --batches N          batches in the workload (default 300)
  --batch-events N     events per batch (default 1000)
  --concurrency N      HTTP clients, each sending its next batch when the
                       previous one is answered (default 4)
  --dir DIR            where the store and the ceiling file go (default: a
                       temporary directory under $TMPDIR)
  --validation-only    measure validation alone on one thread, then stop";

fn parse_args() -> Opts {
    let mut o = Opts {
        batches: 300,
        batch_events: 1000,
        concurrency: 4,
        dir: None,
        validation_only: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = |why: String| -> ! {
        eprintln!("ingest_bench: {why}\n{USAGE}");
        std::process::exit(2)
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let number = |v: Option<&String>| -> usize {
            match v.map(|v| v.parse()) {
                Some(Ok(n)) if n > 0 => n,
                _ => usage(format!("{flag} needs a positive number")),
            }
        };
        match flag {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            "--validation-only" => {
                o.validation_only = true;
                i += 1;
                continue;
            }
            "--batches" => o.batches = number(args.get(i + 1)),
            "--batch-events" => o.batch_events = number(args.get(i + 1)),
            "--concurrency" => o.concurrency = number(args.get(i + 1)),
            "--dir" => match args.get(i + 1) {
                Some(d) => o.dir = Some(PathBuf::from(d)),
                None => usage("--dir needs a directory".into()),
            },
            other => usage(format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    o
}

/// Realistic events: 16 monitors (pods), each with its own session.
fn make_batches(o: &Opts) -> Vec<Vec<u8>> {
    let monitors: Vec<String> = (0..16).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut seqs = [0u64; 16];
    (0..o.batches)
        .map(|b| {
            let m = b % 16;
            let mut body = Vec::with_capacity(o.batch_events * 420);
            for i in 0..o.batch_events {
                seqs[m] += 1;
                let seq = seqs[m];
                let event_type = ["create", "update", "update", "delete"][(seq % 4) as usize];
                let line = serde_json::json!({
                    "schema": "file-event/1",
                    "event_id": uuid::Uuid::now_v7().to_string(),
                    "monitor_id": monitors[m],
                    "seq": seq,
                    // One event per millisecond per monitor, in `seq` order,
                    // as a monitor emits them.
                    "timestamp": format!(
                        "2026-11-26T{:02}:{:02}:{:02}.{:03}Z",
                        18 + seq / 3_600_000,
                        (seq / 60_000) % 60,
                        (seq / 1000) % 60,
                        seq % 1000
                    ),
                    "event_type": event_type,
                    "kind": "file",
                    "path": format!("src/module{}/file{}.rs", seq % 20, seq % 500),
                    "size": seq * 7,
                    "checksum": format!("sha256:{:064x}", seq % 1000),
                    "tenant_id": "acme",
                    "user_id": format!("user{m}"),
                    "session_id": format!("session-{m}"),
                    "metadata": {"team": "core"},
                    "namespace": "ide-acme",
                    "pod_name": format!("ws-{m}"),
                    "node_name": "node-1",
                    "container_name": "file-monitor",
                });
                if i > 0 {
                    body.push(b'\n');
                }
                serde_json::to_writer(&mut body, &line).expect("serialise");
            }
            body
        })
        .collect()
}

/// The command name and the CPU seconds (utime + stime) of a
/// `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // Fields after the command name (which is in parentheses).
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 here.
    Some((&stat[open + 1..close], (ticks(11) + ticks(12)) / 100.0))
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    parse_stat(&stat).map_or(0.0, |(_, cpu)| cpu)
}

/// CPU seconds per thread name (`comm`) of the live threads of this process.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if let Some((name, cpu)) = parse_stat(&stat) {
            *out.entry(name.to_string()).or_insert(0.0) += cpu;
        }
    }
    out
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Validates every line of `batches` on this thread; nanoseconds per line.
fn validation_ns(keys: &Keys, batches: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    let mut lines = 0usize;
    for b in batches {
        for line in b.split(|c| *c == b'\n') {
            std::hint::black_box(fdb_sink::record::validate_line(keys, line, 0));
            lines += 1;
        }
    }
    started.elapsed().as_secs_f64() * 1e9 / lines.max(1) as f64
}

/// Validates every event of the workload on one thread, three times, and
/// prints the time per event of each pass.
fn validation_only(o: &Opts) {
    let batches = make_batches(o);
    let keys = Keys::default();
    let events = o.batches * o.batch_events;
    let shown: Vec<String> = (0..3)
        .map(|_| format!("{:.0}", validation_ns(&keys, &batches)))
        .collect();
    println!(
        "validation alone: {} ns/event on one thread ({events} events, 3 passes)",
        shown.join(" / ")
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn main() {
    let o = parse_args();
    if o.validation_only {
        validation_only(&o);
        return;
    }
    let tmp = match &o.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("dir");
            tempfile::tempdir_in(d).expect("tempdir")
        }
        None => tempfile::tempdir().expect("tempdir"),
    };
    let batches = make_batches(&o);
    let events = (o.batches * o.batch_events) as f64;
    let bytes: usize = batches.iter().map(Vec::len).sum();
    println!(
        "workload: {} batches x {} events ({:.1} MB NDJSON, {} B/event), {} concurrent clients, dir {}",
        o.batches,
        o.batch_events,
        bytes as f64 / 1e6,
        bytes / (o.batches * o.batch_events),
        o.concurrency,
        tmp.path().display()
    );

    // Physical ceiling: append the same bytes, one fsync per batch.
    let mut f = std::fs::File::create(tmp.path().join("ceiling.ndjson")).expect("file");
    let started = Instant::now();
    for b in &batches {
        f.write_all(b).expect("write");
        f.write_all(b"\n").expect("write");
        f.sync_all().expect("fsync");
    }
    let ceiling = events / started.elapsed().as_secs_f64();
    drop(f);
    println!("ceiling (append + fsync per batch): {ceiling:.0} events/s");

    // Cost of validation alone (one thread), to split the sink's CPU use.
    let keys = Keys::default();
    let validate_us = validation_ns(&keys, &batches[..batches.len().min(20)]) / 1e3;
    println!("validation alone: {validate_us:.1} us/event on one thread");

    // The sink, served over real HTTP by the same router as `fdb-sink serve`.
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&tmp.path().join("store")).expect("store"));
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, store.metrics());
    let ingestor = Arc::new(
        Ingestor::new(
            store.clone(),
            Keys::default(),
            WriteOptions::default(),
            metrics,
        )
        .with_group_commit(fdb_sink::cli::serve::GROUP_COMMIT_BYTES),
    );
    let state = Arc::new(IngestState::new(
        ingestor,
        IngestConfig {
            max_body_bytes: 32 << 20,
            max_inflight_batches: 8,
            request_timeout: Duration::from_secs(30),
            retry_after_secs: 1,
            token: None,
        },
        Arc::new(registry),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move { axum::serve(listener, http::router(state)).await });
    let url = format!("http://{addr}/v1/events");

    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(o.batches)));
    let retries = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_seconds();
    let threads_before = cpu_by_thread();
    let started = Instant::now();
    // The HTTP clients run on their own runtime, whose threads live until
    // the CPU is counted, so that they are told apart from the sink's.
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.concurrency.clamp(1, 2))
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime");
    client_runtime.block_on(async {
        let http = reqwest::Client::new();
        let clients: Vec<_> = (0..o.concurrency)
            .map(|_| {
                let (batches, next, latencies, retries, url, http) = (
                    batches.clone(),
                    next.clone(),
                    latencies.clone(),
                    retries.clone(),
                    url.clone(),
                    http.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = batches.get(i) else { break };
                        loop {
                            let t = Instant::now();
                            let r = http
                                .post(&url)
                                .header("content-type", "application/x-ndjson")
                                .body(body.clone())
                                .send()
                                .await
                                .expect("send");
                            if r.status().as_u16() == 200 {
                                latencies.lock().expect("lock").push(t.elapsed());
                                break;
                            }
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client");
        }
    });
    let elapsed = started.elapsed();
    let cpu_total = cpu_seconds() - cpu_before;
    let cpu_us = cpu_total * 1e6 / events;
    let threads_after = cpu_by_thread();
    let rate = events / elapsed.as_secs_f64();
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort();
    let stored = store
        .read(|t| fdb_sink::audit::count_in(t, &Keys::default().audit_logs_all()))
        .expect("count");
    assert_eq!(stored as f64, events, "every event stored");
    let on_disk = dir_bytes(&tmp.path().join("store"));
    println!(
        "sink (HTTP, embedded, durable): {rate:.0} events/s = {:.0}% of ceiling; batch ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} retried (503) requests",
        100.0 * rate / ceiling,
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        retries.load(Ordering::Relaxed),
    );
    println!(
        "store on disk: {:.0} MB ({:.0} B/event)",
        on_disk as f64 / 1e6,
        on_disk as f64 / events
    );
    println!(
        "CPU: {cpu_us:.1} us/event (sink and HTTP clients together, user + system); \
         load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // Where the CPU went: the live threads by name (`bench-client`: the
    // HTTP clients), and the rest of the process total (the main thread,
    // and threads that have exited).
    let mut named = 0.0;
    let mut parts = Vec::new();
    for (name, after) in &threads_after {
        let used = after - threads_before.get(name).copied().unwrap_or(0.0);
        if used > 0.0 && name != "ingest_bench" {
            named += used;
            parts.push(format!("{name} {:.1}", used * 1e6 / events));
        }
    }
    parts.push(format!(
        "main and the rest {:.1}",
        (cpu_total - named).max(0.0) * 1e6 / events
    ));
    println!("CPU by thread, us/event: {}", parts.join(", "));
}
