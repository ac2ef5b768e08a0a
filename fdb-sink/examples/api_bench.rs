//! Measures the query API and the lifecycle jobs against the real binary on
//! an embedded store: paging, session queries, claims, export, retention.
//!
//! ```sh
//! cargo build --release -p fdb-sink --bin fdb-sink --example api_bench
//! target/release/examples/api_bench --records 200000
//! ```
//!
//! Uses the `fdb-sink` next to this example's directory (or `--bin PATH`).
//! Everything runs on 127.0.0.1 in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdb_sink::api::auth::{mint_hs256, Claims, Role};

const USERS: u64 = 10;
const SESSIONS_PER_USER: u64 = 10;

struct Args {
    records: u64,
    bin: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        records: 200_000,
        bin: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("fdb-sink")))
            .unwrap_or_else(|| PathBuf::from("fdb-sink")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--records" => a.records = v.parse().unwrap_or(a.records),
            "--bin" => a.bin = v.into(),
            _ => {
                eprintln!("usage: api_bench [--records N] [--bin PATH]");
                std::process::exit(2);
            }
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// N events over 200 days back from now; half are older than 90 days.
fn write_events(path: &Path, n: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let now = time::OffsetDateTime::now_utc();
    let span_ns: i128 = 200 * 86_400 * 1_000_000_000;
    for i in 0..n {
        let t = now
            - time::Duration::nanoseconds(
                (span_ns - span_ns * i128::from(i) / i128::from(n)) as i64,
            );
        let user = i % USERS;
        let session = (i / USERS) % SESSIONS_PER_USER;
        let event_type = ["create", "update", "update", "delete"][(i % 4) as usize];
        let line = serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": format!("0190b5a0-0000-7000-8000-{user:012}"),
            "seq": i / USERS + 1,
            "timestamp": t.format(&time::format_description::well_known::Rfc3339)?,
            "event_type": event_type,
            "kind": "file",
            "path": format!("src/mod{}/file{}.rs", i % 37, i % 1013),
            "size": i,
            "checksum": format!("sha256:{:064x}", i % 5000),
            "tenant_id": "acme",
            "user_id": format!("user{user}"),
            "session_id": format!("s-{user}-{session}"),
            "metadata": {"team": "core"},
            "namespace": "ide", "pod_name": format!("ws-{user}"), "node_name": "node-1",
        });
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    Ok(())
}

fn run(bin: &Path, args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        t.elapsed(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn start_api(bin: &Path, store: &str, secret: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--store",
            store,
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--jwt-secret-file")
        .arg(secret)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("server exited"))??;
        if let Some(rest) = line.split("api_addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, format!("http://{addr}")))
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let store = format!("embedded:{}", dir.path().join("store").display());
    let events = dir.path().join("events.ndjson");
    write_events(&events, a.records)?;
    let mut rows: Vec<(String, String)> = Vec::new();

    let (d, _) = run(
        &a.bin,
        &[
            "import",
            "--store",
            &store,
            events.to_str().unwrap_or_default(),
        ],
    )?;
    rows.push((
        "import (setup)".into(),
        format!(
            "{} records in {:.1} s = {:.0} records/s",
            a.records,
            d.as_secs_f64(),
            a.records as f64 / d.as_secs_f64()
        ),
    ));

    let secret_path = dir.path().join("jwt.key");
    std::fs::write(&secret_path, "bench-secret")?;
    let (mut server, api) = start_api(&a.bin, &store, &secret_path)?;
    let token = mint_hs256(
        b"bench-secret",
        &Claims {
            tenant_id: "acme".into(),
            user_id: "ops".into(),
            role: Role::Admin,
            exp: jsonwebtoken::get_current_timestamp() + 3600,
        },
    )?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let get = |url: &str| -> anyhow::Result<serde_json::Value> {
        let r = client.get(url).bearer_auth(&token).send()?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        Ok(r.json()?)
    };

    // 1. Walk one user's records (10 sessions merged by time), 1000 per page.
    let t = Instant::now();
    let (mut n, mut pages, mut cursor) = (0usize, 0, None::<String>);
    let mut page_times = Vec::new();
    loop {
        let url = match &cursor {
            Some(c) => format!("{api}/api/v5/agents/logs?user_id=user0&limit=1000&cursor={c}"),
            None => format!("{api}/api/v5/agents/logs?user_id=user0&limit=1000"),
        };
        let pt = Instant::now();
        let p = get(&url)?;
        page_times.push(pt.elapsed());
        pages += 1;
        n += p["records"].as_array().map_or(0, Vec::len);
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let d = t.elapsed();
    page_times.sort();
    rows.push((
        "GET /agents/logs?user_id (10 sessions merged), limit=1000".into(),
        format!(
            "{n} records in {pages} pages, {:.0} records/s; page p50 {} p99 {}",
            n as f64 / d.as_secs_f64(),
            ms(percentile(&page_times, 0.5)),
            ms(percentile(&page_times, 0.99))
        ),
    ));

    // 2. First page of a session, 100 records, many times.
    let mut lat = Vec::new();
    for i in 0..300u64 {
        let url = format!(
            "{api}/api/v5/agents/s-{}-{}/logs?limit=100",
            i % USERS,
            i % SESSIONS_PER_USER
        );
        let t = Instant::now();
        get(&url)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    rows.push((
        "GET /agents/{session}/logs?limit=100 (300 sequential)".into(),
        format!(
            "p50 {} p99 {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));

    // 3. Claims: 5 agents, each claims and releases its own 3 paths 200 times.
    let t = Instant::now();
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let (client, api, token, lat) = (client.clone(), api.clone(), token.clone(), lat.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                for r in 0..200 {
                    let paths: Vec<String> = (0..3).map(|k| format!("agent{i}/r{r}/f{k}.rs")).collect();
                    let t = Instant::now();
                    let resp = client.post(format!("{api}/api/v5/agents/claims")).bearer_auth(&token)
                        .json(&serde_json::json!({"session_id": format!("s-bench-{i}"), "agent_type": "bench", "paths": paths, "ttl_seconds": 60}))
                        .send()?;
                    anyhow::ensure!(resp.status().is_success(), "claim {}", resp.status());
                    lat.lock().map_err(|_| anyhow::anyhow!("lock"))?.push(t.elapsed());
                    let resp = client.delete(format!("{api}/api/v5/agents/claims")).bearer_auth(&token)
                        .json(&serde_json::json!({"session_id": format!("s-bench-{i}"), "paths": paths}))
                        .send()?;
                    anyhow::ensure!(resp.status().is_success(), "release {}", resp.status());
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    let d = t.elapsed();
    let mut lat = lat.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    lat.sort();
    rows.push((
        "POST+DELETE /agents/claims, 5 concurrent agents x 200, 3 paths each".into(),
        format!(
            "{:.0} claim+release pairs/s; claim p50 {} p99 {}",
            1000.0 / d.as_secs_f64(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    server.wait()?;

    // 4. Export the tenant (zstd) and 5. retention of the older half.
    let out = dir.path().join("acme.ndjson.zst");
    let (d, _) = run(
        &a.bin,
        &[
            "export",
            "--store",
            &store,
            "--tenant",
            "acme",
            "--output",
            out.to_str().unwrap_or_default(),
        ],
    )?;
    rows.push((
        "export --tenant (zstd)".into(),
        format!(
            "{} records in {:.2} s = {:.0} records/s, {} bytes",
            a.records,
            d.as_secs_f64(),
            a.records as f64 / d.as_secs_f64(),
            std::fs::metadata(&out)?.len()
        ),
    ));
    let (d, out) = run(
        &a.bin,
        &["retention", "--store", &store, "--older-than", "90d"],
    )?;
    let rep: serde_json::Value = serde_json::from_str(out.trim())?;
    let removed = rep["records_removed"].as_f64().unwrap_or(0.0);
    rows.push((
        "retention --older-than 90d".into(),
        format!(
            "{removed} records removed in {:.2} s = {:.0} records/s ({} transactions)",
            d.as_secs_f64(),
            removed / d.as_secs_f64(),
            rep["transactions"]
        ),
    ));

    println!("| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
