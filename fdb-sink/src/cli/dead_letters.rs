//! `fdb-sink dead-letters`: the stored dead letters (lines that could not
//! become audit records), as NDJSON, oldest first; with `--raw`, the stored
//! bytes of their lines instead.

use std::io::{BufWriter, Write};

use clap::Args;

use super::StoreArgs;
use crate::audit::{self, after};
use crate::record::{DeadLetter, RECEIPT_BUCKET_NS};
use crate::store::StoreExt;

/// Arguments of `fdb-sink dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Only dead letters at or after this time (RFC 3339; the line's own
    /// timestamp when it had a usable one, else when the sink received it,
    /// `received_at`).
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub since: Option<i64>,

    /// Only dead letters before this time (RFC 3339).
    #[arg(long, value_parser = crate::timespec::time_arg, value_name = "TIME")]
    pub until: Option<i64>,

    /// Only these reasons (repeatable or comma-separated, e.g. bad_timestamp).
    /// A group (`invalid_lines_grouped`) matches when one of its lines has
    /// one of them.
    #[arg(long, value_delimiter = ',', value_name = "REASON",
          value_parser = clap::builder::PossibleValuesParser::new(reasons()))]
    pub reason: Vec<String>,

    /// Print the stored bytes of the lines instead of JSON: each line as
    /// received, followed by a newline (a group's lines one after the
    /// other). A line whose dead letter says `raw_truncated` is only its
    /// beginning (the count on stderr says how many). With --reason, a
    /// matching group's lines are all printed, whatever their reason.
    #[arg(long)]
    pub raw: bool,

    /// Print at most this many (0 = all).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: u64,
}

fn reasons() -> Vec<&'static str> {
    let mut all = crate::record::reason::ALL.to_vec();
    all.push(crate::record::reason::GROUPED);
    all
}

/// True when the dead letter is for one of `wanted` (all when empty).
fn matches(letter: &DeadLetter, wanted: &[String]) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| {
            *w == letter.reason || letter.reasons.as_ref().is_some_and(|r| r.contains_key(w))
        })
}

/// True when the dead letter's time is in `[since, until)`: its own
/// timestamp (its key time), or for one keyed by its receipt, `received_at`
/// (one whose receipt time cannot be read is judged by its key).
fn in_time(row: &audit::DeadLetterRow, since: Option<i64>, until: Option<i64>) -> bool {
    let at = if row.letter.keyed_by_receipt {
        crate::timespec::parse_time_ns(&row.letter.received_at).unwrap_or(row.ts_ns)
    } else {
        row.ts_ns
    };
    since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)
}

/// Writes the stored bytes of a dead letter's lines.
fn write_raw(out: &mut impl Write, row: &audit::DeadLetterRow) -> anyhow::Result<()> {
    let bytes = row.letter.raw_bytes().ok_or_else(|| {
        anyhow::anyhow!(
            "dead letter {} at {}: raw_b64 is not valid base64",
            row.id,
            row.ts_ns
        )
    })?;
    out.write_all(&bytes)?;
    if row.letter.lines.is_none() {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Prints the matching dead letters, one JSON object per line, and a count
/// on stderr.
pub fn run(args: DeadLettersArgs) -> anyhow::Result<()> {
    let store = args.store.open_existing()?;
    let keys = args.store.keys();
    // One keyed by its receipt is keyed by the start of that hour: read
    // from an hour before --since, and select those by `received_at`.
    let range = keys.dead_letter_between(
        args.since
            .map_or(i64::MIN, |s| s.saturating_sub(RECEIPT_BUCKET_NS)),
        args.until.unwrap_or(i64::MAX),
    );
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut begin = range.begin.clone();
    let mut printed = 0u64;
    let mut truncated = 0u64;
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
            if !in_time(&row, args.since, args.until) || !matches(&row.letter, &args.reason) {
                continue;
            }
            if args.limit > 0 && printed == args.limit {
                more = true;
                break 'pages;
            }
            if args.raw {
                write_raw(&mut out, &row)?;
            } else {
                serde_json::to_writer(&mut out, &row)?;
                out.write_all(b"\n")?;
            }
            printed += 1;
            truncated += u64::from(row.letter.raw_truncated);
        }
    }
    out.flush()?;
    let hint = if more {
        " (more match: raise --limit, or narrow with --since/--until/--reason)"
    } else {
        ""
    };
    let cut = match truncated {
        0 => String::new(),
        n if args.raw => {
            format!(" ({n} of them only the beginning of its line: raw_truncated)")
        }
        n => format!(" ({n} of them with only the beginning of its line: raw_truncated)"),
    };
    eprintln!("dead-letters: {printed} printed{cut}{hint}");
    Ok(())
}
