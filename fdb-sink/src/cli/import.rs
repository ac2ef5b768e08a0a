//! `fdb-sink import [FILE|-]`: NDJSON from a file or standard input, through
//! the same validation and write path as the ingest endpoint. By default it
//! marks no record late: a restored export must not be archived again by the
//! daily export. With `--mark-late` it marks records as ingest does, for
//! events recovered from the monitor's own output that never reached the
//! store.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{StoreArgs, UsageError};
use crate::audit::WriteOptions;
use crate::export::{DeadLetterLine, MonitorLine, RestoredDeadLetters};
use crate::ingest::lines::{Line, LineReader, MAX_BATCH_BYTES};
use crate::ingest::pipeline::BatchSummary;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;

/// Arguments of `fdb-sink import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// NDJSON file to read; `-` or nothing reads standard input. gzip and
    /// zstd input (an `export --compress`) is recognised and decompressed.
    /// A line over 32 MiB is stored as a `line_too_long` dead letter.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,

    /// Lines per batch (each batch is committed before the next is read;
    /// a batch also ends at 16 MiB of lines). As for a request of the ingest
    /// endpoint, a batch's invalid lines past its first 1000 are kept
    /// together, about 60 kB of lines per dead letter
    /// (`invalid_lines_grouped`).
    #[arg(long, default_value_t = crate::ingest::grouping::STREAM_BATCH_LINES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_lines: u64,

    /// Mark late records as `serve` does: a record stored anew (not one
    /// already in the store) whose UTC day ended more than --late-after
    /// before it is stored is added to the marker ("late", day, tenant),
    /// `fdb-sink late` lists it, and the next daily export archives that
    /// tenant's day again. Use it for events that never reached the store,
    /// e.g. lines recovered from `kubectl logs … -c file-monitor` after
    /// Vector dropped them: without it, those of a day the daily export has
    /// already archived are never archived, and retention deletes them.
    /// Leave it off to restore an export: its records are archived already.
    #[arg(long)]
    pub mark_late: bool,

    /// With --mark-late: how long past the end of its UTC day a record is
    /// late [default: 1h, as serve's --late-after]. Keep it below the daily
    /// export's start after midnight (02:00 UTC), or records of the day it
    /// just archived are not marked.
    #[arg(long, requires = "mark_late", value_name = "DURATION",
          value_parser = crate::timespec::duration_arg)]
    pub late_after: Option<Duration>,
}

/// `--late-after` of `import --mark-late` when not given: `serve`'s default.
const DEFAULT_LATE_AFTER: Duration = Duration::from_secs(3600);

/// Reads everything and prints the totals as JSON on stdout.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    // The file first: a mistyped file name must not create a store. Its
    // first bytes are read once the store is open (standard input may wait).
    let raw = open_input(args.input.as_ref())?;
    let store = args.store.open_or_create()?;
    let (input, format) = decompress(raw)?;
    let keys = args.store.keys();
    let metrics = Metrics::unregistered();
    let marked_late = metrics.events_late.clone();
    let mut ingestor = Ingestor::new(
        store.clone(),
        keys.clone(),
        WriteOptions::default(),
        metrics,
    );
    // Without --mark-late, records are not marked late (a restored export).
    if args.mark_late {
        ingestor = ingestor.with_late_after(args.late_after.unwrap_or(DEFAULT_LATE_AFTER));
    }
    let name = match args.input.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(p) => p.display().to_string(),
        None => "standard input".to_string(),
    };
    let Imported {
        total,
        monitors,
        dead_letters,
    } = import(&ingestor, input, args.batch_lines as usize)
        .with_context(|| format!("importing {name} ({format})"))?;
    let monitors_refused = crate::export::restore_monitors(store.as_ref(), &keys, &monitors)
        .context("restoring the monitor counters")?;
    #[derive(serde::Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        total: &'a BatchSummary,
        monitors_restored: usize,
        /// Monitor lines of another tenant's monitor: not restored.
        monitors_refused: usize,
        dead_letters_restored: u64,
        dead_letters_present: u64,
        /// With --mark-late only.
        #[serde(skip_serializing_if = "Option::is_none")]
        marked_late: Option<u64>,
    }
    let marked_late = args.mark_late.then(|| marked_late.get());
    let report = Report {
        total: &total,
        monitors_restored: monitors.len() - monitors_refused,
        monitors_refused,
        dead_letters_restored: dead_letters.restored,
        dead_letters_present: dead_letters.present,
        marked_late,
    };
    println!("{}", serde_json::to_string(&report)?);
    if let Some(line) = super::dead_letters_message(
        "import",
        "lines",
        "by an earlier import of the same input",
        &total,
    ) {
        eprintln!("{line}");
    }
    if let Some(n) = marked_late.filter(|n| *n > 0) {
        eprintln!(
            "import: {n} records marked late: the next daily export archives their days \
             again (fdb-sink late lists the markers)"
        );
    }
    if dead_letters.restored + dead_letters.present > 0 {
        eprintln!(
            "import: {} dead letters of a dead-letter export stored back as dead letters \
             ({} were already stored)",
            dead_letters.restored, dead_letters.present
        );
    }
    tracing::info!(
        received = total.received,
        written = total.written,
        duplicates = total.duplicates,
        dead_lettered = total.dead_lettered,
        dead_letter_duplicates = total.dead_letter_duplicates,
        dead_letters_restored = dead_letters.restored,
        "import finished"
    );
    Ok(())
}

/// Opens the input file (or standard input). A file that cannot be opened,
/// or a directory, is a usage error.
fn open_input(path: Option<&PathBuf>) -> Result<Box<dyn Read>, UsageError> {
    match path.filter(|p| p.as_os_str() != "-") {
        None => Ok(Box::new(std::io::stdin())),
        Some(p) => {
            let usage = |why: String| UsageError(format!("import: {}: {why}", p.display()));
            let file = std::fs::File::open(p).map_err(|e| usage(e.to_string()))?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(usage("is a directory, not a file".into()));
            }
            Ok(Box::new(file))
        }
    }
}

/// Recognises the input's compression; returns the reader and what it
/// holds (`NDJSON`, `gzip-compressed NDJSON`, …).
pub(crate) fn decompress(
    mut raw: Box<dyn Read>,
) -> anyhow::Result<(Box<dyn BufRead>, &'static str)> {
    // Compression is recognised by its magic bytes, whatever the name (or
    // on standard input, which has none). A pipe may deliver them in pieces.
    let mut head = Vec::with_capacity(4);
    while head.len() < 4 {
        let mut buf = [0u8; 4];
        match raw.read(&mut buf[..4 - head.len()]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow::Error::new(e).context("reading the input")),
        }
    }
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    let raw = std::io::Cursor::new(head).chain(raw);
    let (reader, format): (Box<dyn Read>, _) = if gzip {
        (
            Box::new(flate2::read::MultiGzDecoder::new(raw)),
            "gzip-compressed NDJSON",
        )
    } else if zstd {
        (
            Box::new(zstd::stream::read::Decoder::new(raw)?),
            "zstd-compressed NDJSON",
        )
    } else {
        return Ok((Box::new(BufReader::with_capacity(1 << 20, raw)), "NDJSON"));
    };
    Ok((Box::new(BufReader::with_capacity(1 << 20, reader)), format))
}

/// What [`import`] read.
pub struct Imported {
    /// The event lines (and lines that are neither events nor export lines).
    pub total: BatchSummary,
    /// The export's monitor lines, for the caller to apply once every record
    /// is in.
    pub monitors: Vec<MonitorLine>,
    /// The dead-letter lines of a dead-letter export, stored back as dead
    /// letters.
    pub dead_letters: RestoredDeadLetters,
}

/// Dead-letter lines held before they are stored (their values are at most
/// 100 kB each).
const DEAD_LETTER_BATCH: usize = 500;

/// Ingests every line of `input` in batches of `batch_lines`. The lines of a
/// dead-letter export (`fdb-sink export --dead-letters`) are stored back
/// under their own keys as dead letters, not validated as events.
/// Lines are read in bounded memory: one over the line limit is stored as a
/// `line_too_long` dead letter ([`crate::ingest::lines`]).
pub fn import(
    ingestor: &Ingestor,
    input: impl BufRead,
    batch_lines: usize,
) -> anyhow::Result<Imported> {
    let mut input = LineReader::new(input);
    let mut total = BatchSummary::default();
    let mut monitors = Vec::new();
    let mut letters: Vec<DeadLetterLine> = Vec::new();
    let mut restored = RestoredDeadLetters::default();
    let mut restore = |letters: &mut Vec<DeadLetterLine>, line_no: u64| {
        let r = crate::export::restore_dead_letters(
            ingestor.store().as_ref(),
            ingestor.keys(),
            letters,
        )
        .with_context(|| format!("storing the dead letters read up to line {line_no}"))?;
        restored.restored += r.restored;
        restored.present += r.present;
        letters.clear();
        anyhow::Ok(())
    };
    let mut batch: Vec<Line> = Vec::with_capacity(batch_lines);
    let mut batch_bytes = 0usize;
    let mut line_no = 0u64;
    loop {
        let line = input
            .next_line()
            .with_context(|| format!("reading input after line {line_no}"))?;
        let end = line.is_none();
        if let Some(line) = line {
            line_no += 1;
            super::warn_if_too_long("", line_no, &line);
            let (monitor, letter) = match &line {
                Line::Whole(l) => (MonitorLine::parse(l), DeadLetterLine::parse(l)),
                Line::TooLong(_) => (None, None),
            };
            if let Some(m) = monitor {
                monitors.push(m);
            } else if let Some(d) = letter {
                letters.push(d);
                if letters.len() >= DEAD_LETTER_BATCH {
                    restore(&mut letters, line_no)?;
                }
            } else if !line.is_blank() {
                batch_bytes += line.held_bytes();
                batch.push(line);
            }
        }
        let full = batch.len() >= batch_lines || batch_bytes >= MAX_BATCH_BYTES;
        if full || (end && !batch.is_empty()) {
            let s = ingestor.ingest_stream(&batch).with_context(|| {
                format!(
                    "writing the batch ending at line {line_no} (the lines before it are \
                         committed: importing the same input again stores only what is missing)"
                )
            })?;
            total.add(&s);
            batch.clear();
            batch_bytes = 0;
        }
        if end {
            if !letters.is_empty() {
                restore(&mut letters, line_no)?;
            }
            return Ok(Imported {
                total,
                monitors,
                dead_letters: restored,
            });
        }
    }
}
