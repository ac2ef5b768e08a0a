//! `fdb-sink export`: a tenant's audit records as NDJSON (the backup
//! format; `fdb-sink import` restores it), or with `--dead-letters` the
//! store's dead letters.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{StoreArgs, UsageError};
use crate::export::{self, ExportFilter, ExportReport};
use crate::record::valid_id;
use crate::store::{Store, StoreExt};
use crate::timespec::format_ns;

/// Output compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
}

/// Arguments of `fdb-sink export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Tenant to export (required unless --dead-letters): 1-128 chars of
    /// [A-Za-z0-9._:@-], as records carry it. A tenant with no records in
    /// the store gives an empty export and a warning (`fdb-sink tenants`
    /// lists those that have records).
    #[arg(long, value_name = "TENANT", required_unless_present = "dead_letters")]
    pub tenant: Option<String>,

    /// Export the store's dead letters (the lines it refused, of every
    /// tenant) instead of a tenant's records: one
    /// `{"schema":"fdb-sink-dead-letter/1","ts_ns":…,"id":…,"reason":…,…}`
    /// line each, as `fdb-sink dead-letters` prints them. --since/--until
    /// select by when the sink received the line (`received_at`), so that a
    /// line with an old or forged timestamp is in the export of the day it
    /// arrived. `fdb-sink import` stores them back as dead letters.
    #[arg(long, conflicts_with_all = ["tenant", "user", "session"])]
    pub dead_letters: bool,

    /// Only this user's records.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Only this session's records.
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Only records at or after this time (RFC 3339; event time), or dead
    /// letters received at or after it. Before --until.
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub since: Option<i64>,

    /// Only records before this time (RFC 3339; event time), or dead letters
    /// received before it.
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub until: Option<i64>,

    /// Write here instead of standard output. A `.gz`/`.zst` name implies
    /// the compression unless --compress says otherwise.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Compress the output.
    #[arg(long, value_enum)]
    pub compress: Option<Compression>,

    /// Records (or dead letters) per read transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub page_records: u64,
}

enum Out {
    Plain(Box<dyn Write>),
    Gzip(flate2::write::GzEncoder<Box<dyn Write>>),
    Zstd(zstd::stream::write::Encoder<'static, Box<dyn Write>>),
}

impl Out {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Out::Plain(w) => w,
            Out::Gzip(w) => w,
            Out::Zstd(w) => w,
        }
    }

    fn finish(self) -> std::io::Result<()> {
        let mut inner = match self {
            Out::Plain(w) => w,
            Out::Gzip(w) => w.finish()?,
            Out::Zstd(w) => w.finish()?,
        };
        inner.flush()
    }
}

/// Refuses a command line that cannot select what the user meant: an id
/// that no record can carry, or a time range that ends before it starts.
pub fn check_args(args: &ExportArgs) -> Result<(), UsageError> {
    for (flag, id) in [
        ("--tenant", &args.tenant),
        ("--user", &args.user),
        ("--session", &args.session),
    ] {
        if let Some(id) = id.as_deref().filter(|id| !valid_id(id)) {
            return Err(UsageError(format!(
                "{flag} {id:?} is not 1-128 chars of [A-Za-z0-9._:@-], so no record can have it"
            )));
        }
    }
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            return Err(UsageError(format!(
                "--since {} is not before --until {} (which is exclusive): the range selects nothing",
                format_ns(since),
                format_ns(until)
            )));
        }
    }
    Ok(())
}

/// True when `tenant` has at least one session, the test `fdb-sink tenants`
/// lists tenants by.
fn tenant_has_records(
    store: &dyn Store,
    keys: &crate::keys::Keys,
    tenant: &str,
) -> anyhow::Result<bool> {
    let range = keys.sessions_tenant(tenant);
    let rows = store.read(|t| t.get_range(&range.begin, &range.end, 1, false))?;
    Ok(!rows.is_empty())
}

/// Runs the export; the totals go to stderr (stdout may be the data).
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let store = args.store.open_existing()?;
    let compress = args.compress.or_else(|| {
        let ext = args.output.as_ref()?.extension()?.to_str()?;
        match ext {
            "gz" => Some(Compression::Gzip),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    });
    let raw: Box<dyn Write> = match &args.output {
        Some(p) if p.as_os_str() != "-" => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        _ => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    let mut out = match compress {
        None => Out::Plain(raw),
        Some(Compression::Gzip) => Out::Gzip(flate2::write::GzEncoder::new(
            raw,
            flate2::Compression::default(),
        )),
        Some(Compression::Zstd) => Out::Zstd(zstd::stream::write::Encoder::new(raw, 3)?),
    };
    let tty = std::io::stderr().is_terminal();
    let keys = args.store.keys();
    let page = args.page_records as usize;
    // Without a tenant (clap requires one unless --dead-letters), the
    // dead letters.
    let tenant = args.tenant.filter(|_| !args.dead_letters);
    let mut progress = |r: &ExportReport| match (tty, &tenant) {
        (false, _) => {}
        (true, Some(_)) => eprint!("\rexport: {} records, {} bytes", r.records, r.bytes),
        (true, None) => eprint!(
            "\rexport: {} dead letters, {} bytes",
            r.dead_letters, r.bytes
        ),
    };
    let report = match &tenant {
        Some(tenant) => {
            let filter = ExportFilter {
                tenant: tenant.clone(),
                user: args.user,
                session: args.session,
                since_ns: args.since,
                until_ns: args.until,
            };
            export::export(
                store.as_ref(),
                &keys,
                &filter,
                out.writer(),
                page,
                &mut progress,
            )?
        }
        None => export::export_dead_letters(
            store.as_ref(),
            &keys,
            args.since,
            args.until,
            out.writer(),
            page,
            &mut progress,
        )?,
    };
    out.finish().context("finishing the export")?;
    if tty {
        eprintln!();
    }
    match &tenant {
        Some(tenant) => {
            eprintln!(
                "export: {} records and {} monitors ({} bytes uncompressed) for tenant {tenant}",
                report.records, report.monitors, report.bytes
            );
            // An empty range of a known tenant is a normal quiet day; an
            // unknown tenant is more likely a typo.
            // The export itself is complete: a failed check only warns.
            if report.records == 0 {
                match tenant_has_records(store.as_ref(), &keys, tenant) {
                    Ok(true) => {}
                    Ok(false) => eprintln!(
                        "export: warning: tenant {tenant} has no records in this store \
                         (`fdb-sink tenants` lists the tenants that have)"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not check whether the tenant has records")
                    }
                }
            }
            tracing::info!(
                records = report.records,
                bytes = report.bytes,
                "export finished"
            );
        }
        None => {
            eprintln!(
                "export: {} dead letters holding {} refused lines ({} bytes uncompressed)",
                report.dead_letters, report.dead_letter_lines, report.bytes
            );
            tracing::info!(
                dead_letters = report.dead_letters,
                lines = report.dead_letter_lines,
                bytes = report.bytes,
                "dead-letter export finished"
            );
        }
    }
    Ok(())
}
