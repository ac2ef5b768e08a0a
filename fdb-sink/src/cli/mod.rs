//! The command line: one module per subcommand. `main` parses [`Cli`] and
//! calls [`run`].
//!
//! The doc comments of the argument structs are the `--help` text, written
//! for a terminal: `[A-Za-z0-9._:@-]` and `<dir>` are meant as they read.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::keys::{Keys, DEFAULT_ROOT};
use crate::store::{Store, StoreSpec, DEFAULT_STORE};

pub mod dead_letters;
pub mod export;
pub mod import;
pub mod late;
pub mod monitors;
pub mod retention;
pub mod serve;
pub mod tenants;
pub mod token;

/// Validates file events and writes idempotent audit records to
/// FoundationDB or an embedded store.
///
/// Typical uses:
///
///   fdb-sink serve --store embedded:/var/lib/fdb-sink          # Vector's http sink target
///
///   TENANT_ID=acme USER_ID=u1 SESSION_ID=s1 file-monitor ./ws | fdb-sink serve --stdin
///                                                              # local pipeline, no Vector
///
///   fdb-sink import --store embedded:./data events.ndjson      # load a file or an export
///
///   fdb-sink serve --api-listen 127.0.0.1:8081 --jwt-secret-file jwt.key   # + query/agent API
///
///   fdb-sink export --tenant acme --output acme.ndjson.zst     # backup
///
///   fdb-sink retention --older-than 90d --dry-run              # what retention would remove
///
///   fdb-sink dead-letters --since 2026-11-27T00:00:00Z         # lines that became no record, and why
///
///   fdb-sink tenants                                            # tenants with records
///
///   fdb-sink late                                               # days stored after their export
///
///   fdb-sink monitors list                                      # monitors, their owner and counters
///
///   fdb-sink monitors set-owner MONITOR_ID acme                 # give a monitor to its tenant
///
/// Logs go to stderr; set RUST_LOG (e.g. `RUST_LOG=fdb_sink=debug`) for more detail.
#[derive(Debug, Parser)]
#[command(name = "fdb-sink", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the ingest endpoint (POST /v1/events), /metrics, /healthz and
    /// /readyz; with --stdin, also ingest standard input; with --api-listen,
    /// also the query and agent API (docs/api.md).
    Serve(Box<serve::ServeArgs>),
    /// Read NDJSON events (the monitor's output, or an export) from a file or
    /// standard input and write them through the same validation. Old records
    /// are marked late (`fdb-sink late`) only with --mark-late (events
    /// recovered from a sidecar's log): restoring an export does not make
    /// the daily export archive those days again.
    Import(import::ImportArgs),
    /// Write a tenant's audit records as NDJSON (a backup that `import`
    /// restores), optionally for one user, session or time range.
    Export(export::ExportArgs),
    /// Remove audit records older than a cutoff, with their index entries,
    /// and fix the session summaries.
    Retention(retention::RetentionArgs),
    /// Print the stored dead letters (lines that could not become audit
    /// records, with the reason and the raw line) as NDJSON, oldest first.
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Print the tenants that have audit records, one per line (the daily
    /// export job archives each of them).
    Tenants(tenants::TenantsArgs),
    /// Print the markers of records stored after their UTC day ended (plus
    /// serve's --late-after), which the daily export may not hold: `day
    /// tenant count`, one per line, oldest day first. With --clear, clear
    /// one marker if its count is still --if-count (the daily export does,
    /// once it has re-exported that tenant's day).
    Late(late::LateArgs),
    /// List the monitors with their owner and delivery counters, or give a
    /// monitor to another tenant (`set-owner`), whose dead-lettered events
    /// can then be imported again.
    Monitors(monitors::MonitorsArgs),
    /// Mint an HS256 API token for local use and demos (development tool).
    Token(token::TokenArgs),
}

/// Where and under which root the audit records live.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Storage backend: `embedded:<dir>` (a fjall database in <dir>/audit.fjall; `serve`
    /// and `import` create it if missing, the other commands refuse a missing one) or
    /// `fdb[:<cluster-file>]` (FoundationDB; the cluster file defaults to
    /// $FDB_CLUSTER_FILE, then /etc/foundationdb/fdb.cluster).
    #[arg(long, env = "FDB_SINK_STORE", default_value = DEFAULT_STORE, value_name = "STORE")]
    pub store: StoreSpec,

    /// Root subspace (first tuple element of every key). Change it only to
    /// keep several independent audit trails in one store.
    #[arg(long, env = "FDB_SINK_SUBSPACE", default_value = DEFAULT_ROOT, value_name = "NAME")]
    pub subspace: String,
}

impl StoreArgs {
    pub fn keys(&self) -> Keys {
        Keys::new(&self.subspace)
    }

    /// Opens the store for a command that reads or changes it (`export`,
    /// `retention`, `dead-letters`, `monitors`) and checks that it answers.
    pub fn open_existing(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.require_existing()?;
        self.open_checked()
    }

    /// Opens (creating if needed) the store for `import` and checks that it
    /// answers.
    pub fn open_or_create(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.prepare()?;
        self.open_checked()
    }

    fn open_checked(&self) -> anyhow::Result<Arc<dyn Store>> {
        let store = self.open_store()?;
        match store.check() {
            Ok(()) => Ok(store),
            // Its message says what to do; running again would not help.
            Err(e @ crate::store::StoreError::Damaged(_)) => {
                Err(anyhow::Error::new(e).context(format!("store {} is damaged", store.describe())))
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "store {} is not available (nothing was read or written; run the command \
                 again once it is)",
                store.describe()
            ))),
        }
    }

    /// Opens the store; a store this build cannot open at all (`fdb`
    /// without the feature) is a command line that cannot work (exit 2).
    pub fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        match crate::store::open(&self.store) {
            Ok(store) => Ok(store),
            Err(crate::store::StoreError::Config(m)) => {
                Err(UsageError(format!("--store {}: {m}", self.store)).into())
            }
            Err(e) => Err(anyhow::Error::new(e).context("opening the store")),
        }
    }

    /// An embedded store must already exist, so that a mistyped path is an
    /// error rather than a new, empty store.
    fn require_existing(&self) -> Result<(), UsageError> {
        if let StoreSpec::Embedded { dir } = &self.store {
            let db = dir.join(crate::store::embedded::DB_DIR);
            if !db.is_dir() {
                return Err(UsageError(format!(
                    "no embedded store at {} ({} does not exist; check --store)",
                    dir.display(),
                    db.display()
                )));
            }
        }
        Ok(())
    }

    /// For commands that may create a store (`serve`, `import`): an
    /// embedded store's directory must exist or be creatable.
    pub fn prepare(&self) -> Result<(), UsageError> {
        if let StoreSpec::Embedded { dir } = &self.store {
            std::fs::create_dir_all(dir).map_err(|e| {
                UsageError(format!(
                    "--store embedded:{}: cannot create the directory: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// A command line that cannot work: `main` exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A conditional change found the data not as the caller expected and
/// changed nothing (`late --clear --if-count`): `main` exits with status 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConditionFailed(pub String);

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Retention(args) => retention::run(args),
        Command::DeadLetters(args) => dead_letters::run(args),
        Command::Tenants(args) => tenants::run(args),
        Command::Late(args) => late::run(args),
        Command::Monitors(args) => monitors::run(args),
        Command::Token(args) => token::run(args),
    }
}

/// What `import` and `serve --stdin` say on stderr of the lines stored as
/// dead letters instead of records (none when there were none): invalid
/// lines, and valid events that conflict with a stored record's key. How
/// many were stored now, and how many `earlier` had already stored.
fn dead_letters_message(
    program: &str,
    lines: &str,
    earlier: &str,
    total: &crate::ingest::pipeline::BatchSummary,
) -> Option<String> {
    let letters = total.dead_lettered + total.dead_letter_duplicates;
    if letters == 0 {
        return None;
    }
    let stored = match (total.dead_lettered, total.dead_letter_duplicates) {
        (n, 0) => format!("stored as {n} dead letters"),
        (0, d) => format!("already stored as dead letters ({d}) {earlier}"),
        (n, d) => format!("{n} stored as dead letters, {d} already stored {earlier}"),
    };
    Some(format!(
        "{program}: {letters} of {} {lines} were not stored as records: {stored} \
         (invalid lines, or events conflicting with a stored record; fdb-sink \
         dead-letters lists them with the reason)",
        total.received
    ))
}

/// Logs a warning for a line over the line limit (read by `import` and
/// `serve --stdin`, which store it as a `line_too_long` dead letter); nothing
/// for another line. `prefix` starts the message (`standard input: ` or
/// nothing).
fn warn_if_too_long(prefix: &str, line_no: u64, line: &crate::ingest::lines::Line) {
    if let crate::ingest::lines::Line::TooLong(l) = line {
        tracing::warn!(
            line = line_no,
            bytes = l.len,
            limit = l.limit,
            "{prefix}line over the line limit; stored as a line_too_long dead letter"
        );
    }
}
