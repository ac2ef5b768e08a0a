//! `fdb-sink monitors`: the monitors with their owner and delivery counters
//! (`list`), and giving a monitor to another tenant (`set-owner`).
//!
//! A monitor belongs to the first tenant that stored an event of it; an
//! event of it under another tenant is a `monitor_of_other_tenant` dead
//! letter. `set-owner` is how an operator gives a monitor to the tenant it
//! really belongs to, after which that tenant's dead-lettered events can be
//! imported again (docs/sink.md, "Giving a monitor to its tenant").

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{StoreArgs, UsageError};
use crate::audit::{self, MonitorRow};
use crate::record::valid_id;
use crate::store::StoreExt;

const MONITORS_EXAMPLES: &str = "\
Examples:

  fdb-sink monitors list --store embedded:/var/lib/fdb-sink
                                     # every monitor, its owner and counters (NDJSON)

  fdb-sink monitors list --tenant acme --limit 0
                                     # all of acme's monitors

  fdb-sink dead-letters --reason monitor_of_other_tenant
                                     # events refused because another tenant owns their monitor

  fdb-sink monitors set-owner 0190b5a0-0000-7000-8000-00000000abcd acme --dry-run
                                     # what giving the monitor to acme would change

  fdb-sink monitors set-owner 0190b5a0-0000-7000-8000-00000000abcd acme
                                     # give it to acme, then (after set-owner, so that the
                                     # events refused until then are all in the file)
                                     # import its dead letters again, marking their days
                                     # for the daily export:

  fdb-sink dead-letters --reason monitor_of_other_tenant --raw --limit 0 > refused.ndjson
  fdb-sink import --mark-late refused.ndjson

  (A file, not a pipe: two commands cannot open one embedded store at once.)

See docs/sink.md, \"Giving a monitor to its tenant\".";

const LIST_EXAMPLES: &str = "\
Each line: {\"monitor_id\":\"…\",\"tenant\":\"acme\",\"received\":10,\"highest_seq\":12,\"missing\":2}
(`tenant` is null for a monitor whose row has no owner; `received`, `highest_seq` and
`missing` as GET /api/v5/monitors/{id}/delivery answers them).

Examples:

  fdb-sink monitors list                       # the first 1000 monitors, in id order
  fdb-sink monitors list --tenant acme --limit 0
  fdb-sink monitors list --limit 0 | jq -c 'select(.missing > 0)'";

const SET_OWNER_EXAMPLES: &str = "\
Prints one JSON line: {\"monitor_id\":\"…\",\"old_tenant\":\"globex\",\"new_tenant\":\"acme\",
\"changed\":true,\"dry_run\":false} (`old_tenant` null when the row had no owner).

Exit status: 0 done (or nothing to change), 2 an invalid monitor id or tenant,
1 no such monitor (or the store failed).

Examples:

  fdb-sink monitors set-owner 0190b5a0-0000-7000-8000-00000000abcd acme --dry-run
  fdb-sink monitors set-owner 0190b5a0-0000-7000-8000-00000000abcd acme";

/// Arguments of `fdb-sink monitors`.
#[derive(Debug, Args)]
#[command(after_long_help = MONITORS_EXAMPLES)]
pub struct MonitorsArgs {
    #[command(subcommand)]
    pub command: MonitorsCommand,
}

#[derive(Debug, Subcommand)]
pub enum MonitorsCommand {
    /// Print the monitors with their owner and delivery counters (NDJSON).
    ///
    /// One JSON object per monitor, in id order: the owner (`tenant`) and
    /// the delivery counters (`received`, `highest_seq`, `missing`).
    #[command(after_long_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Give a monitor to a tenant (rewrite its owner).
    ///
    /// Rewrites the monitor's owner and prints the old and the new one. Its
    /// counters are kept as they are, so they may include events stored
    /// under the previous owner. From then on, events of the monitor are
    /// stored for the new owner and dead-lettered
    /// (`monitor_of_other_tenant`) under any other tenant; records stored
    /// before stay where they are.
    #[command(after_long_help = SET_OWNER_EXAMPLES)]
    SetOwner(SetOwnerArgs),
}

/// Arguments of `fdb-sink monitors list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Only the monitors this tenant owns.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Print at most this many (0 = all).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: u64,
}

/// Arguments of `fdb-sink monitors set-owner`.
#[derive(Debug, Args)]
pub struct SetOwnerArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The monitor (its `monitor_id`, as `monitors list` prints it).
    #[arg(value_name = "MONITOR_ID")]
    pub monitor_id: String,

    /// The tenant that owns the monitor from now on.
    #[arg(value_name = "TENANT")]
    pub tenant: String,

    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `fdb-sink monitors …`.
pub fn run(args: MonitorsArgs) -> anyhow::Result<()> {
    match args.command {
        MonitorsCommand::List(a) => list(a),
        MonitorsCommand::SetOwner(a) => set_owner(a),
    }
}

/// One line of `monitors list`.
#[derive(Debug, Serialize)]
struct ListLine<'a> {
    monitor_id: &'a str,
    tenant: Option<&'a str>,
    received: i64,
    highest_seq: u64,
    missing: i64,
}

impl<'a> ListLine<'a> {
    /// The counters as the delivery endpoint answers them
    /// ([`MonitorRow::missing`]).
    fn of(row: &'a MonitorRow) -> Self {
        ListLine {
            monitor_id: &row.monitor_id,
            tenant: owner(row),
            received: row.received,
            highest_seq: row.max_seq,
            missing: row.missing(),
        }
    }
}

/// The owner of a monitor's row; `None` when the row has none.
fn owner(row: &MonitorRow) -> Option<&str> {
    Some(row.tenant.as_str()).filter(|t| !t.is_empty())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    if let Some(t) = args.tenant.as_deref().filter(|t| !valid_id(t)) {
        return Err(UsageError(format!(
            "--tenant {t:?} is not 1-128 chars of [A-Za-z0-9._:@-], so no monitor can have it"
        ))
        .into());
    }
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut more = false;
    let mut failed: Option<std::io::Error> = None;
    audit::each_monitor_until(store.as_ref(), &keys, &mut |row| {
        if args
            .tenant
            .as_deref()
            .is_some_and(|t| owner(&row) != Some(t))
        {
            return ControlFlow::Continue(());
        }
        if args.limit > 0 && printed == args.limit {
            more = true;
            return ControlFlow::Break(());
        }
        let written = serde_json::to_writer(&mut out, &ListLine::of(&row))
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match written {
            Ok(()) => {
                printed += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    let hint = if more {
        " (more match: raise --limit, or narrow with --tenant)"
    } else {
        ""
    };
    eprintln!("monitors: {printed} printed{hint}");
    Ok(())
}

/// What `monitors set-owner` prints.
#[derive(Debug, Serialize)]
struct OwnerLine<'a> {
    monitor_id: &'a str,
    old_tenant: Option<&'a str>,
    new_tenant: &'a str,
    changed: bool,
    dry_run: bool,
}

fn set_owner(args: SetOwnerArgs) -> anyhow::Result<()> {
    let SetOwnerArgs {
        store: store_args,
        monitor_id,
        tenant,
        dry_run,
    } = args;
    // Events carry a UUID, stored in its lower-case hyphenated form.
    let Ok(monitor_id) = uuid::Uuid::parse_str(&monitor_id).map(|u| u.to_string()) else {
        return Err(UsageError(format!(
            "monitor id {:?} is not a UUID, so no monitor can have it",
            crate::api::error::shown(&monitor_id)
        ))
        .into());
    };
    if !valid_id(&tenant) {
        return Err(UsageError(format!(
            "tenant {tenant:?} is not a valid id (1-128 characters of A-Z a-z 0-9 . _ : @ -), \
             so no event can have it"
        ))
        .into());
    }
    let store = store_args.open_existing()?;
    let keys = store_args.keys();
    // The row the first attempt read: when a commit's outcome is unknown the
    // transaction runs again, and if the first attempt did commit, the next
    // one reads the new owner; the change is still reported with the owner
    // it replaced.
    let mut first_read: Option<Option<MonitorRow>> = None;
    let last_read = store.transact(|t| {
        let row = audit::set_monitor_owner(t, &keys, &monitor_id, &tenant, dry_run)?;
        first_read.get_or_insert_with(|| row.clone());
        Ok(row)
    })?;
    let before = match (first_read, last_read) {
        (Some(Some(first)), Some(last)) if owner(&last) == Some(tenant.as_str()) => Some(first),
        (_, last) => last,
    }
    .ok_or_else(|| {
        anyhow::anyhow!(
            "monitor {monitor_id} not found: no monitor row has this id (`fdb-sink monitors \
                 list` lists them; a monitor has a row once one of its events is stored); \
                 nothing was changed"
        )
    })?;
    let old = owner(&before);
    let changed = old != Some(tenant.as_str());
    let line = OwnerLine {
        monitor_id: &monitor_id,
        old_tenant: old,
        new_tenant: &tenant,
        changed,
        dry_run,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    let old_name = old.unwrap_or("(none)");
    let counters = format!(
        "counters kept: received {}, highest_seq {}",
        before.received, before.max_seq
    );
    match (changed, dry_run) {
        (false, _) => {
            eprintln!(
                "monitors: monitor {monitor_id} already belongs to {tenant}; nothing changed"
            );
        }
        (true, true) => {
            eprintln!(
                "monitors: dry run: monitor {monitor_id} would change owner from {old_name} to \
                 {tenant} ({counters}); nothing changed"
            );
        }
        (true, false) => {
            tracing::warn!(
                monitor_id = %monitor_id,
                old_owner = %old_name,
                new_owner = %tenant,
                received = before.received,
                highest_seq = before.max_seq,
                "monitor owner changed: events of the monitor under the new owner are stored \
                 from now on, under any other tenant they are dead-lettered"
            );
            eprintln!(
                "monitors: monitor {monitor_id}: owner changed from {old_name} to {tenant} \
                 ({counters})"
            );
        }
    }
    Ok(())
}
