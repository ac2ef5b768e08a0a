//! `fdb-sink serve`: the ingest server, and optionally standard input.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::StoreArgs;
use crate::audit::{self, WriteOptions};
use crate::conn::{Limits, Listener};
use crate::ingest::health::{self, Probe, StoreHealth};
use crate::ingest::http::{self, IngestConfig, IngestState};
use crate::ingest::lines::{Line, LineReader, MAX_BATCH_BYTES};
use crate::ingest::pipeline::{Attempts, BatchSummary};
use crate::ingest::Ingestor;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::store::{self, Store};

/// Arguments of `fdb-sink serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address of the ingest server (POST /v1/events, /metrics, /healthz,
    /// /readyz). Port 0 picks a free port (printed in the log).
    #[arg(
        long,
        env = "FDB_SINK_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Also ingest NDJSON from standard input (e.g. `file-monitor ./ws |
    /// fdb-sink serve --stdin`); the process exits once standard input
    /// closes and everything read is committed.
    #[arg(long)]
    pub stdin: bool,

    /// File holding the bearer tokens ingest clients must send one of
    /// (`Authorization: Bearer <token>`), one per line (blank lines and
    /// surrounding whitespace ignored). Read again when it changes, so a
    /// token can be rotated without a restart: add the new one, move the
    /// clients to it, remove the old one. Without it, ingest is open to
    /// anyone who can reach --listen.
    #[arg(long, env = "FDB_SINK_INGEST_TOKEN_FILE", value_name = "PATH")]
    pub ingest_token_file: Option<PathBuf>,

    /// Limits of the ingest server and of --stdin (boxed: they are many).
    #[command(flatten)]
    pub limits: Box<IngestLimits>,

    /// Seconds between refreshes of fdb_sink_delivery_missing_events (1-86400).
    #[arg(
        long,
        env = "FDB_SINK_DELIVERY_REFRESH_SECS",
        default_value_t = 15,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub delivery_refresh_secs: u64,

    /// A record received this long past the end of its UTC day is counted
    /// in fdb_sink_events_late_total, logged with its day and tenant, and
    /// added to the marker ("late", day, tenant) in the transaction that
    /// stores it: the daily export of that day (02:00 UTC) may have run
    /// without it, and the next daily export re-exports the marked days
    /// (`fdb-sink late` lists them). Keep it below the export's start after
    /// midnight.
    #[arg(long, env = "FDB_SINK_LATE_AFTER", default_value = "1h",
          value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub late_after: Duration,

    #[command(flatten)]
    pub api: crate::api::ApiArgs,
}

/// Sizes and deadlines of ingest (`serve` flags).
#[derive(Debug, Args)]
pub struct IngestLimits {
    /// Largest request body in bytes, before and after decompression
    /// (Vector batches up to 10 MB by default). Larger bodies get 413.
    #[arg(long, env = "FDB_SINK_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30), value_name = "BYTES")]
    pub max_body_bytes: u64,

    /// Batches validated or committed at the same time; more get 503 with
    /// Retry-After, so overload becomes back-pressure, not memory growth.
    #[arg(long, env = "FDB_SINK_MAX_INFLIGHT_BATCHES", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    pub max_inflight_batches: u64,

    /// Bytes of decompressed request bodies (gzip, zstd) held at once,
    /// across requests; raised to --max-body-bytes + 1 if lower. A body that
    /// would go beyond gets 503 with Retry-After (it fits once others are
    /// done), so that concurrent decompression bombs cannot add up.
    #[arg(long, env = "FDB_SINK_MAX_DECOMPRESSED_BYTES", default_value_t = http::DEFAULT_DECODE_BUDGET as u64,
          value_parser = clap::value_parser!(u64).range(1 << 20..=1 << 36), value_name = "BYTES")]
    pub max_decompressed_bytes: u64,

    /// Seconds to receive and commit one request (Vector gives up after
    /// 60 s); a commit still running then is answered 503 and finishes in
    /// the background (a retry is deduplicated).
    #[arg(long, env = "FDB_SINK_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=55), value_name = "SECS")]
    pub request_timeout_secs: u64,

    /// Value of the Retry-After header on 503 answers, in seconds.
    #[arg(
        long,
        env = "FDB_SINK_RETRY_AFTER_SECS",
        default_value_t = 2,
        value_name = "SECS"
    )]
    pub retry_after_secs: u64,

    /// Target size of one store transaction in bytes; a larger batch is
    /// committed as several transactions (FoundationDB allows 10 MB).
    #[arg(long, env = "FDB_SINK_TXN_TARGET_BYTES", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(10_000..=9_000_000), value_name = "BYTES")]
    pub txn_target_bytes: u64,

    /// With --stdin: bytes of lines read from standard input ahead of their
    /// commit (besides the batch being committed). Beyond, reading waits and
    /// the pipe applies back-pressure to the writer. A single line larger
    /// than this is still read (up to the 32 MiB line limit).
    #[arg(long, env = "FDB_SINK_STDIN_READ_AHEAD_BYTES", default_value_t = 16 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(65536..=1 << 30), value_name = "BYTES")]
    pub stdin_read_ahead_bytes: u64,
}

/// Largest group of batches the embedded store commits in one transaction.
pub const GROUP_COMMIT_BYTES: usize = 8_000_000;

/// What `serve` shares between its servers and background tasks.
pub struct ServeContext {
    pub store: Arc<dyn Store>,
    pub ingestor: Arc<Ingestor>,
    pub registry: Registry,
}

/// Runs the server until SIGINT/SIGTERM (or the end of stdin with --stdin).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token = match &args.ingest_token_file {
        Some(p) => {
            let tokens = http::IngestTokens::load(p)?;
            tracing::info!(file = %p.display(), tokens = tokens.len(), "ingest tokens read");
            Some(Arc::new(tokens))
        }
        None => None,
    };
    let verifier = match args.api.api_listen {
        Some(_) => Some(args.api.verifier()?),
        None => None,
    };
    args.store.prepare()?;
    let store = args.store.open_store()?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, store.metrics());
    let mut ingestor = Ingestor::new(
        store.clone(),
        args.store.keys(),
        WriteOptions {
            target_txn_bytes: args.limits.txn_target_bytes as usize,
            // Set by with_late_after below.
            late_after_ns: None,
        },
        metrics,
    )
    .with_late_after(args.late_after);
    // The embedded store has one writer and an fsync per commit: commit
    // concurrent batches together. FoundationDB runs transactions in parallel.
    if matches!(args.store.store, store::StoreSpec::Embedded { .. }) {
        ingestor = ingestor.with_group_commit(GROUP_COMMIT_BYTES);
    }
    let ingestor = Arc::new(ingestor);
    let ctx = ServeContext {
        store,
        ingestor,
        registry,
    };
    let config = IngestConfig {
        max_body_bytes: args.limits.max_body_bytes as usize,
        max_inflight_batches: args.limits.max_inflight_batches as usize,
        request_timeout: Duration::from_secs(args.limits.request_timeout_secs),
        retry_after_secs: args.limits.retry_after_secs,
        token,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let r = runtime.block_on(serve(args, ctx, config, verifier));
    // Do not wait for a stdin reader blocked on input.
    runtime.shutdown_timeout(Duration::from_secs(5));
    r
}

async fn serve(
    args: ServeArgs,
    ctx: ServeContext,
    config: IngestConfig,
    verifier: Option<crate::api::auth::Verifier>,
) -> anyhow::Result<()> {
    // Listening for the signals before anything else: one sent right after
    // start-up is then a clean shutdown, not the default kill.
    let mut shutdown = Shutdown::listen().context("installing the signal handlers")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, store = %ctx.store.describe(), "ingest server listening");

    tokio::spawn(readiness_loop(
        ctx.store.clone(),
        ctx.ingestor.keys().clone(),
        ctx.ingestor.health().clone(),
    ));
    tokio::spawn(delivery_loop(
        ctx.ingestor.clone(),
        Duration::from_secs(args.delivery_refresh_secs),
    ));

    let request_timeout = config.request_timeout;
    let state = Arc::new(
        IngestState::new(ctx.ingestor.clone(), config, Arc::new(ctx.registry)).with_decode_budget(
            usize::try_from(args.limits.max_decompressed_bytes).unwrap_or(usize::MAX),
        ),
    );
    let app = http::router(state);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            Listener::new(listener, Limits::ingest(request_timeout), "ingest"),
            app,
        )
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .await
    });

    if let Some(older_than) = args.api.retention_older_than {
        tokio::spawn(crate::retention::periodic(
            ctx.store.clone(),
            ctx.ingestor.keys().clone(),
            older_than,
            args.api.retention_interval,
            args.api.retention_allow_removing_all,
            stop_rx.clone(),
        ));
    }
    let api_server = match (args.api.api_listen, verifier) {
        (Some(addr), Some(verifier)) => Some(
            crate::api::spawn(
                addr,
                &args.api,
                verifier,
                ctx.store.clone(),
                ctx.ingestor.keys().clone(),
                ctx.ingestor.metrics().clone(),
                stop_rx.clone(),
            )
            .await?,
        ),
        _ => None,
    };

    let mut stdin_task = args.stdin.then(|| {
        let ingestor = ctx.ingestor.clone();
        let stop = stop_rx.clone();
        let read_ahead = args.limits.stdin_read_ahead_bytes as usize;
        tokio::task::spawn_blocking(move || ingest_stdin(&ingestor, &stop, read_ahead))
    });

    let stdin_ended = tokio::select! {
        _ = shutdown.wait() => {
            tracing::info!("shutting down");
            None
        }
        r = async {
            match stdin_task.as_mut() {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        } => Some(r),
    };
    let _ = stop_tx.send(true);
    // After a signal, what was read from stdin is still committed first.
    let stdin = match (stdin_ended, stdin_task) {
        (Some(r), _) => Some(r),
        (None, Some(t)) => Some(t.await),
        (None, None) => None,
    };
    let mut uncommitted = 0;
    let mut read_error = None;
    if let Some(r) = stdin {
        let outcome = r.context("stdin ingest task")?;
        tracing::info!(
            received = outcome.total.received,
            written = outcome.total.written,
            duplicates = outcome.total.duplicates,
            dead_lettered = outcome.total.dead_lettered,
            dead_letter_duplicates = outcome.total.dead_letter_duplicates,
            "standard input done"
        );
        println!("{}", serde_json::to_string(&outcome.total)?);
        if let Some(line) = super::dead_letters_message(
            "serve",
            "lines of standard input",
            "from an earlier run",
            &outcome.total,
        ) {
            eprintln!("{line}");
        }
        uncommitted = outcome.uncommitted;
        read_error = outcome.read_error;
    }
    server.await?.context("ingest server")?;
    if let Some(api) = api_server {
        api.await?.context("API server")?;
    }
    anyhow::ensure!(
        uncommitted == 0,
        "{uncommitted} lines read from standard input were not committed (the store was unavailable at shutdown)"
    );
    match read_error {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere than on Unix).
struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers now (the default action no longer applies).
    fn listen() -> std::io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Shutdown {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// Resolves at the first of them.
    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Period of the readiness loop while the store is up.
const READY_EVERY: Duration = Duration::from_secs(5);
/// Period of the readiness loop while the store is down.
const DOWN_EVERY: Duration = Duration::from_secs(1);
/// How long the store may go without a successful write, while ready,
/// before the readiness loop probes one (an idle sink whose disk filled
/// up is then not ready within this; a busy one learns it from its next
/// commit). Each probe leaves about 8 KiB of tombstones to compact away.
const IDLE_PROBE_AFTER: Duration = Duration::from_secs(15);
/// How long a check (with its probe write) may take before the store
/// counts as down: a store that does not answer (a cluster out of reach, a
/// frozen file system) is not ready. The check keeps running, and the loop
/// waits for it before it starts another.
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// Checks the store every few seconds (every second while it is down) and
/// publishes the result to /readyz and fdb_sink_store_up, which every
/// commit's outcome also sets at once ([`StoreHealth`]).
///
/// A check that the store opens (or that the cluster answers) is followed
/// by a probe write ([`health::probe_write`], which stores nothing): at
/// start and while not ready a full one (about 1 MB, so that a store on a
/// full disk is not ready before its first batch fails), while ready a
/// light one when no write succeeded for [`IDLE_PROBE_AFTER`]. Once the store is
/// down, ingest refuses batches without trying them, so these probes are
/// what finds it back.
async fn readiness_loop(store: Arc<dyn Store>, keys: Keys, health: Arc<StoreHealth>) {
    let mut was_up = None;
    let mut running: Option<tokio::task::JoinHandle<Result<bool, store::StoreError>>> = None;
    loop {
        let mut task = running.take().unwrap_or_else(|| {
            let probe = if !health.is_ready() {
                Some(Probe::Full)
            } else if health.take_probe_wanted() || health.no_write_within(IDLE_PROBE_AFTER) {
                Some(Probe::Light)
            } else {
                None
            };
            let (s, k) = (store.clone(), keys.clone());
            tokio::task::spawn_blocking(move || match probe {
                // Not ready: the write first, since a store whose last
                // write failed passes its check only once a write works.
                Some(Probe::Full) => {
                    health::probe_write(s.as_ref(), &k, Probe::Full)?;
                    s.check().map(|()| true)
                }
                Some(p) => {
                    s.check()?;
                    health::probe_write(s.as_ref(), &k, p).map(|()| true)
                }
                None => s.check().map(|()| false),
            })
        });
        let outcome = match tokio::time::timeout(CHECK_DEADLINE, &mut task).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("the store check failed: {e}")),
            Err(_) => {
                running = Some(task);
                Err(format!(
                    "the store did not answer a check within {} s",
                    CHECK_DEADLINE.as_secs()
                ))
            }
        };
        let up = outcome.is_ok();
        match outcome {
            Ok(true) => health.write_succeeded(),
            Ok(false) => health.checked(true),
            Err(e) => {
                if was_up != Some(false) {
                    tracing::warn!(error = %e, "store unavailable; checking it again every second");
                }
                health.checked(false);
            }
        }
        if up && was_up == Some(false) {
            tracing::info!("store available again");
        }
        was_up = Some(up);
        if up {
            // A failed commit starts the pace of a store that is down.
            tokio::select! {
                _ = tokio::time::sleep(READY_EVERY) => {}
                _ = health.write_failure() => tokio::time::sleep(DOWN_EVERY).await,
            }
        } else {
            tokio::time::sleep(DOWN_EVERY).await;
        }
    }
}

/// The most one monitor adds to fdb_sink_delivery_missing_events. A gap
/// this large comes from a wrong `seq`, not from lost events; capping its
/// share keeps the sum far below 2^53, where Prometheus (which stores
/// floats) still sees an increase by one, so a monitor with an absurd
/// `seq` cannot hide the later gaps of every other one from
/// `AuditDeliveryGap`.
pub const MONITOR_GAP_CAP: i64 = 1_000_000_000;

/// The largest value of fdb_sink_delivery_missing_events: the largest
/// integer a float holds exactly (reached only with millions of monitors at
/// [`MONITOR_GAP_CAP`]).
const GAP_SUM_MAX: i64 = (1 << 53) - 1;

/// fdb_sink_delivery_missing_events over the monitor rows: the sum of their
/// gaps, each at most [`MONITOR_GAP_CAP`].
#[derive(Debug, Default)]
struct GapSum {
    total: i128,
    /// Monitors whose gap is over the cap, and the largest of them.
    capped: u64,
    largest: Option<(String, String, i64)>,
}

impl GapSum {
    fn add(&mut self, m: &audit::MonitorRow) {
        let missing = m.missing();
        if missing > MONITOR_GAP_CAP {
            self.capped += 1;
            if self.largest.as_ref().is_none_or(|(_, _, n)| missing > *n) {
                self.largest = Some((m.monitor_id.clone(), m.tenant.clone(), missing));
            }
        }
        self.total += i128::from(missing.clamp(0, MONITOR_GAP_CAP));
    }

    fn value(&self) -> i64 {
        i64::try_from(self.total.min(i128::from(GAP_SUM_MAX))).unwrap_or(GAP_SUM_MAX)
    }
}

/// Refreshes fdb_sink_delivery_missing_events from the monitors rows.
async fn delivery_loop(ingestor: Arc<Ingestor>, every: Duration) {
    let mut failing = false;
    let mut capped = 0;
    loop {
        let ing = ingestor.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut sum = GapSum::default();
            audit::each_monitor(ing.store().as_ref(), ing.keys(), &mut |m| sum.add(&m))
                .map(|()| sum)
        })
        .await;
        match r {
            Ok(Ok(sum)) => {
                ingestor.metrics().delivery_missing_events.set(sum.value());
                failing = false;
                if sum.capped != capped {
                    capped = sum.capped;
                    if let Some((monitor, tenant, missing)) = &sum.largest {
                        tracing::warn!(
                            monitors = sum.capped,
                            largest_monitor = %monitor,
                            largest_tenant = %tenant,
                            largest_missing = missing,
                            cap = MONITOR_GAP_CAP,
                            "monitors with a gap over the cap (a wrong seq?) count for the cap \
                             each in fdb_sink_delivery_missing_events"
                        );
                    }
                }
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the monitor rows; fdb_sink_delivery_missing_events keeps its last value");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(error = %e, "delivery refresh task failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Lines per stdin batch (its invalid lines are grouped past the first
/// 1000, as a request's are), and how long a partial batch may wait.
const STDIN_BATCH_LINES: usize = crate::ingest::grouping::STREAM_BATCH_LINES;
const STDIN_FLUSH: Duration = Duration::from_millis(200);
/// Lines read from stdin ahead of their batch at most (besides
/// `--stdin-read-ahead-bytes`).
const STDIN_QUEUE_LINES: usize = 4000;

/// What `serve --stdin` committed, and how many lines it read but could not
/// commit before shutdown.
struct StdinOutcome {
    total: BatchSummary,
    uncommitted: usize,
    /// Why standard input was not read to its end, if it was not.
    read_error: Option<String>,
}

/// How often an idle stdin loop looks at the shutdown flag.
const STDIN_STOP_CHECK: Duration = Duration::from_millis(100);
/// After a shutdown signal, how long standard input may still bring lines:
/// a monitor piped in gets the same signal, writes its last lines and
/// closes the pipe.
const STDIN_GRACE: Duration = Duration::from_secs(2);

/// Reads NDJSON from stdin and commits it in batches, retrying a failed
/// commit until it succeeds, so nothing read is lost. On shutdown it keeps
/// reading until the pipe closes (at most [`STDIN_GRACE`]), commits what it
/// read and returns; lines it then still cannot commit are counted in
/// `uncommitted`.
fn ingest_stdin(
    ingestor: &Ingestor,
    stop: &watch::Receiver<bool>,
    read_ahead_bytes: usize,
) -> StdinOutcome {
    use std::sync::mpsc::RecvTimeoutError;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Line>(STDIN_QUEUE_LINES);
    let gate = Arc::new(ByteGate::new(read_ahead_bytes));
    // Closed when this function returns, so that a reader waiting for room
    // stops instead of waiting forever.
    let _close = CloseOnDrop(gate.clone());
    let reader_gate = gate.clone();
    // Why reading stopped before the end of the input, if it did: set
    // before the channel closes, so it is known once it has.
    let read_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let reader_error = read_error.clone();
    std::thread::spawn(move || {
        if let Err(e) = read_stdin(&reader_gate, &tx) {
            tracing::error!(error = %format!("{e:#}"), "reading standard input");
            if let Ok(mut slot) = reader_error.lock() {
                *slot = Some(format!("{e:#}"));
            }
        }
        drop(tx);
    });
    let mut total = BatchSummary::default();
    let mut batch: Vec<Line> = Vec::new();
    let mut batch_bytes = 0usize;
    // When the partial batch must be committed (STDIN_FLUSH after its first
    // line, so that a quiet monitor's events land promptly).
    let mut flush_at: Option<Instant> = None;
    // Set at shutdown: when to stop waiting for the pipe to close.
    let mut give_up_at: Option<Instant> = None;
    let mut open = true;
    while open || !batch.is_empty() {
        let now = Instant::now();
        if give_up_at.is_none() && *stop.borrow() {
            give_up_at = Some(now + STDIN_GRACE);
        }
        if open && give_up_at.is_some_and(|t| now >= t) {
            tracing::warn!("standard input still open after the shutdown grace; stopping");
            for line in rx.try_iter() {
                gate.release(line.held_bytes());
                batch_bytes += line.held_bytes();
                batch.push(line);
            }
            open = false;
        }
        let waiting = open
            && batch.len() < STDIN_BATCH_LINES
            && batch_bytes < MAX_BATCH_BYTES
            && flush_at.is_none_or(|t| now < t);
        if waiting {
            let wake = [flush_at, give_up_at]
                .into_iter()
                .flatten()
                .min()
                .map_or(STDIN_STOP_CHECK, |t| t.saturating_duration_since(now))
                .min(STDIN_STOP_CHECK);
            match rx.recv_timeout(wake) {
                Ok(line) => {
                    gate.release(line.held_bytes());
                    flush_at.get_or_insert_with(|| Instant::now() + STDIN_FLUSH);
                    batch_bytes += line.held_bytes();
                    batch.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            continue;
        }
        if batch.is_empty() {
            continue;
        }
        let lines = &batch;
        let mut backoff = Duration::from_millis(200);
        // A retry finds stored what an earlier attempt committed: the
        // batch's own writes, not duplicate deliveries.
        let mut attempts = Attempts::default();
        loop {
            match ingestor.ingest_stream_attempt(lines, &mut attempts) {
                Ok(s) => {
                    total.add(&s);
                    break;
                }
                Err(e) if *stop.borrow() => {
                    total.add(&attempts.committed_so_far());
                    let uncommitted = lines.len() + rx.try_iter().count();
                    tracing::error!(error = %e, lines = uncommitted, "shutting down with uncommitted lines from standard input");
                    return StdinOutcome {
                        total,
                        uncommitted,
                        read_error: take(&read_error),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "stdin batch not committed; retrying");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !*stop.borrow() {
                        std::thread::sleep(STDIN_STOP_CHECK);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        batch.clear();
        batch_bytes = 0;
        flush_at = None;
    }
    StdinOutcome {
        total,
        uncommitted: 0,
        read_error: take(&read_error),
    }
}

fn take(slot: &std::sync::Mutex<Option<String>>) -> Option<String> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// Reads the lines of standard input (decompressed when it is gzip or zstd)
/// into `tx` until its end; an error when it cannot be read to its end (a
/// truncated or corrupt compressed stream). Stops early, without error, when
/// the committer is gone.
fn read_stdin(gate: &ByteGate, tx: &std::sync::mpsc::SyncSender<Line>) -> anyhow::Result<()> {
    let (input, format) = open_stdin()?;
    let mut input = LineReader::new(input);
    let mut line_no = 0u64;
    loop {
        let line = input.next_line().with_context(|| {
            format!(
                "standard input ({format}) is cut short or corrupt after {line_no} lines \
                 (the lines before it are committed)"
            )
        })?;
        let Some(line) = line else {
            return Ok(());
        };
        line_no += 1;
        super::warn_if_too_long("standard input: ", line_no, &line);
        if line.is_blank() {
            continue;
        }
        if !gate.acquire(line.held_bytes()) || tx.send(line).is_err() {
            return Ok(());
        }
    }
}

/// Standard input, decompressed when it starts with the magic bytes of gzip
/// or zstd (as `import` recognises them), and what it holds. Plain NDJSON
/// is passed on from its first byte (its first line is not held back until
/// more bytes come).
fn open_stdin() -> anyhow::Result<(Box<dyn std::io::BufRead>, &'static str)> {
    use std::io::BufRead;
    let mut stdin = std::io::stdin().lock();
    let first = loop {
        match stdin.fill_buf() {
            Ok(b) => break b.first().copied(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow::Error::new(e).context("reading standard input")),
        }
    };
    // The first byte of the gzip (1f 8b) and zstd (28 b5 2f fd) magic; a
    // line of JSON never starts with either.
    if matches!(first, Some(0x1f | 0x28)) {
        super::import::decompress(Box::new(stdin))
    } else {
        Ok((Box::new(stdin), "NDJSON"))
    }
}

/// Bounds the bytes of lines read ahead of their commit: the reader takes
/// room for a line before queueing it (waiting while the queue is full), the
/// committer gives it back when it takes the line out of the queue.
struct ByteGate {
    state: std::sync::Mutex<GateState>,
    room: std::sync::Condvar,
    limit: usize,
}

#[derive(Default)]
struct GateState {
    queued: usize,
    closed: bool,
}

impl ByteGate {
    fn new(limit: usize) -> Self {
        ByteGate {
            state: std::sync::Mutex::new(GateState::default()),
            room: std::sync::Condvar::new(),
            limit,
        }
    }

    /// Waits until `n` more bytes fit (a line larger than the limit fits an
    /// empty queue); false once the gate is closed.
    fn acquire(&self, n: usize) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        while !st.closed && st.queued > 0 && st.queued.saturating_add(n) > self.limit {
            st = match self.room.wait(st) {
                Ok(st) => st,
                Err(_) => return false,
            };
        }
        if st.closed {
            return false;
        }
        st.queued += n;
        true
    }

    fn release(&self, n: usize) {
        if let Ok(mut st) = self.state.lock() {
            st.queued = st.queued.saturating_sub(n);
            self.room.notify_all();
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            self.room.notify_all();
        }
    }
}

struct CloseOnDrop(Arc<ByteGate>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(max_seq: u64, received: i64) -> audit::MonitorRow {
        audit::MonitorRow {
            monitor_id: format!("m{max_seq}"),
            tenant: "acme".into(),
            received,
            max_seq,
            last_ns: 0,
        }
    }

    #[test]
    fn a_monitor_with_an_absurd_gap_counts_for_the_cap_only() {
        let mut sum = GapSum::default();
        for _ in 0..5000 {
            sum.add(&row(u64::MAX, 1));
        }
        let before = sum.value();
        assert_eq!(before, 5000 * MONITOR_GAP_CAP);
        sum.add(&row(10, 9));
        assert_eq!(sum.value() - before, 1, "a later gap of one still counts");
        assert_eq!(sum.capped, 5000);
        assert!(sum.value() < 1 << 53);
    }

    #[test]
    fn the_sum_never_goes_past_what_a_float_holds_exactly() {
        // As after about nine million monitors at the cap.
        let mut sum = GapSum {
            total: i128::from(GAP_SUM_MAX) - 1,
            ..GapSum::default()
        };
        sum.add(&row(u64::MAX, 0));
        assert_eq!(sum.value(), GAP_SUM_MAX);
        sum.add(&row(5, 0));
        assert_eq!(sum.value(), GAP_SUM_MAX);
    }
}
