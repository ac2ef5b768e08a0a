//! `fdb-sink late`: the markers of records stored after their day was
//! archived (`day tenant count`, one per line, oldest day first), and with
//! `--clear`, clears one marker if its count is still the one the caller saw.

use std::io::{BufWriter, Write};

use clap::Args;

use super::{ConditionFailed, StoreArgs, UsageError};
use crate::late::{self, Cleared};
use crate::record::valid_id;
use crate::store::StoreExt;

/// Arguments of `fdb-sink late`.
#[derive(Debug, Args)]
pub struct LateArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Clear the marker of --day and --tenant if its count is --if-count
    /// (read and cleared in one transaction). Another count (records stored
    /// since it was read, or no marker) clears nothing and exits 3, so that
    /// those records are re-exported by the next run.
    #[arg(long, requires_all = ["day", "tenant", "if_count"])]
    pub clear: bool,

    /// The marker's UTC day, YYYY-MM-DD (with --clear).
    #[arg(long, value_parser = late::day_arg, value_name = "YYYY-MM-DD")]
    pub day: Option<String>,

    /// The marker's tenant (with --clear).
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// The count the marker must still have (as listed; with --clear).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub if_count: Option<i64>,
}

/// Lists the markers, or clears one.
pub fn run(args: LateArgs) -> anyhow::Result<()> {
    if args.clear {
        return clear(args);
    }
    // Checked here rather than by clap, whose message would ask for the
    // other two selectors first.
    let given: Vec<&str> = [
        ("--day", args.day.is_some()),
        ("--tenant", args.tenant.is_some()),
        ("--if-count", args.if_count.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if !given.is_empty() {
        return Err(UsageError(format!(
            "late: {} only {} with --clear: `fdb-sink late` lists every marker; \
             `fdb-sink late --clear --day YYYY-MM-DD --tenant T --if-count N` clears one",
            given.join(", "),
            if given.len() == 1 { "goes" } else { "go" }
        ))
        .into());
    }
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    let markers = store.read(|t| late::markers(t, &keys))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for m in &markers {
        writeln!(out, "{} {} {}", m.day, m.tenant, m.count)?;
    }
    out.flush()?;
    eprintln!("late: {} markers", markers.len());
    Ok(())
}

fn clear(args: LateArgs) -> anyhow::Result<()> {
    let (Some(day), Some(tenant), Some(expected)) = (args.day, args.tenant, args.if_count) else {
        return Err(UsageError("--clear needs --day, --tenant and --if-count".into()).into());
    };
    if !valid_id(&tenant) {
        return Err(UsageError(format!(
            "--tenant {tenant:?} is not 1-128 chars of [A-Za-z0-9._:@-], so no record can have it"
        ))
        .into());
    }
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    // Across the attempts of the one transaction (see `clear_if_count`).
    let mut issued = false;
    match store
        .transact(|t| late::clear_if_count(t, &keys, &day, &tenant, expected, &mut issued))?
    {
        Cleared::Yes => {
            eprintln!("late: cleared day={day} tenant={tenant} count={expected}");
            Ok(())
        }
        Cleared::Changed(now) => {
            let now = now.map_or_else(|| "no marker".to_string(), |n| format!("count {n}"));
            Err(ConditionFailed(format!(
                "late: marker day={day} tenant={tenant} not cleared: it has {now}, not \
                 --if-count {expected} (records stored since it was read are re-exported by \
                 the next run)"
            ))
            .into())
        }
    }
}
