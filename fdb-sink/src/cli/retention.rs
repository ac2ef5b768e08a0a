//! `fdb-sink retention`: removes audit records older than a cutoff.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::StoreArgs;
use crate::retention::{self, RetentionOptions, RetentionReport, GUARD_PERCENT};

/// Arguments of `fdb-sink retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Remove records whose event time is older than this (e.g. 90d, 12w).
    #[arg(long, value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub older_than: Duration,

    /// Count what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Records removed per transaction at most (keeps each FoundationDB
    /// transaction well under its 5 s and 10 MB limits). A transaction that
    /// still cannot finish (too old, too large, conflicting) is tried again
    /// with half as many, down to 1; the size is doubled back after 8
    /// transactions in a row that finish. A store that refuses transactions
    /// whatever their size (locked, throttled) stops the run at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_records: u64,

    /// Run even when more than 90 % of the store's sessions would lose all of
    /// their records. Without it such a run removes nothing and fails: that
    /// is what a clock set far ahead looks like.
    #[arg(long)]
    pub allow_removing_all: bool,
}

/// Runs retention, shows progress on a terminal, prints the totals as JSON.
pub fn run(args: RetentionArgs) -> anyhow::Result<()> {
    let store = args.store.open_existing()?;
    let cutoff_ns = crate::timespec::ns_ago(args.older_than);
    let tty = std::io::stderr().is_terminal();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut progress = |r: &RetentionReport| {
        if tty {
            eprint!(
                "\rretention: {verb} {} records in {} sessions, {} dead letters",
                r.records_removed, r.sessions_affected, r.dead_letters_removed
            );
        }
    };
    let report = retention::run(
        store.as_ref(),
        &args.store.keys(),
        RetentionOptions {
            cutoff_ns,
            dry_run: args.dry_run,
            batch_records: args.batch_records as usize,
            allow_removing_all: args.allow_removing_all,
        },
        &mut progress,
    )?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "retention: {verb} {} records older than {} ({} sessions affected, {} of {} emptied, {} dead letters, {} late markers)",
        report.records_removed,
        crate::timespec::format_ns(cutoff_ns),
        report.sessions_affected,
        report.sessions_removed,
        report.sessions_total,
        report.dead_letters_removed,
        report.late_markers_removed
    );
    if report.would_refuse {
        eprintln!(
            "retention: a run without --dry-run would refuse and remove nothing: it would empty \
             more than {GUARD_PERCENT} % of the sessions (check this node's time; pass \
             --allow-removing-all if intended)"
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
