//! `fdb-sink dead-letters`: the stored dead letters (lines that could not
//! become audit records), as NDJSON, oldest first.

use std::io::{BufWriter, Write};

use clap::Args;

use super::StoreArgs;
use crate::audit::{self, after};
use crate::store::StoreExt;

/// Arguments of `fdb-sink dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Only dead letters at or after this time (RFC 3339; the line's own
    /// timestamp when it had a valid one, else when the sink received it).
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub since: Option<i64>,

    /// Only dead letters before this time (RFC 3339).
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub until: Option<i64>,

    /// Only these reasons (repeatable or comma-separated, e.g. bad_timestamp).
    #[arg(long, value_delimiter = ',', value_name = "REASON",
          value_parser = clap::builder::PossibleValuesParser::new(crate::record::reason::ALL))]
    pub reason: Vec<String>,

    /// Print at most this many (0 = all).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: u64,
}

/// Prints the matching dead letters, one JSON object per line, and a count
/// on stderr.
pub fn run(args: DeadLettersArgs) -> anyhow::Result<()> {
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    let range = keys.dead_letter_between(
        args.since.unwrap_or(i64::MIN),
        args.until.unwrap_or(i64::MAX),
    );
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut begin = range.begin.clone();
    let mut printed = 0u64;
    let mut more = false;
    'pages: loop {
        let page = crate::keys::KeyRange {
            begin: begin.clone(),
            end: range.end.clone(),
        };
        let rows = store.read(|t| audit::dead_letters_in(t, &keys, &page, 1000))?;
        let Some(last) = rows.last() else { break };
        begin = after(&keys.dead_letter(last.ts_ns, &last.id));
        for row in rows {
            if !args.reason.is_empty() && !args.reason.contains(&row.letter.reason) {
                continue;
            }
            if args.limit > 0 && printed == args.limit {
                more = true;
                break 'pages;
            }
            serde_json::to_writer(&mut out, &row)?;
            out.write_all(b"\n")?;
            printed += 1;
        }
    }
    out.flush()?;
    let hint = if more {
        " (more match: raise --limit, or narrow with --since/--until/--reason)"
    } else {
        ""
    };
    eprintln!("dead-letters: {printed} printed{hint}");
    Ok(())
}
