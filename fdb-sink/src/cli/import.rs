//! `fdb-sink import [FILE|-]`: NDJSON from a file or standard input, through
//! the same validation and write path as the ingest endpoint.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::StoreArgs;
use crate::audit::WriteOptions;
use crate::export::MonitorLine;
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
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,

    /// Lines per batch (each batch is committed before the next is read).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_lines: u64,
}

/// Reads everything and prints the totals as JSON on stdout.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let store = args.store.open_or_create()?;
    let keys = args.store.keys();
    let ingestor = Ingestor::new(
        store.clone(),
        keys.clone(),
        WriteOptions::default(),
        Metrics::unregistered(),
    );
    let input = open_input(args.input.as_ref())?;
    let (total, monitors) = import(&ingestor, input, args.batch_lines as usize)?;
    crate::export::restore_monitors(store.as_ref(), &keys, &monitors)
        .context("restoring the monitor counters")?;
    #[derive(serde::Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        total: &'a BatchSummary,
        monitors_restored: usize,
    }
    let report = Report {
        total: &total,
        monitors_restored: monitors.len(),
    };
    println!("{}", serde_json::to_string(&report)?);
    if total.dead_lettered > 0 {
        eprintln!(
            "import: {} of {} lines were not valid events and were stored as dead letters \
             (fdb-sink dead-letters lists them with the reason)",
            total.dead_lettered, total.received
        );
    }
    tracing::info!(
        received = total.received,
        written = total.written,
        duplicates = total.duplicates,
        dead_lettered = total.dead_lettered,
        "import finished"
    );
    Ok(())
}

fn open_input(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn BufRead>> {
    let mut raw: Box<dyn Read> = match path.filter(|p| p.as_os_str() != "-") {
        None => Box::new(std::io::stdin()),
        Some(p) => {
            Box::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)
        }
    };
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
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else if zstd {
        Box::new(zstd::stream::read::Decoder::new(raw)?)
    } else {
        return Ok(Box::new(BufReader::with_capacity(1 << 20, raw)));
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Ingests every line of `input` in batches of `batch_lines`, and returns
/// the export's monitor lines (applied by the caller once every record is in).
pub fn import(
    ingestor: &Ingestor,
    mut input: impl BufRead,
    batch_lines: usize,
) -> anyhow::Result<(BatchSummary, Vec<MonitorLine>)> {
    let mut total = BatchSummary::default();
    let mut monitors = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(batch_lines);
    let mut line_no = 0u64;
    loop {
        let mut line = Vec::new();
        let n = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading input after line {line_no}"))?;
        if n > 0 {
            line_no += 1;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if let Some(m) = MonitorLine::parse(&line) {
                monitors.push(m);
            } else if !line.iter().all(u8::is_ascii_whitespace) {
                batch.push(line);
            }
        }
        if batch.len() >= batch_lines || (n == 0 && !batch.is_empty()) {
            let lines: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let s = ingestor
                .ingest(&lines)
                .with_context(|| format!("writing the batch ending at line {line_no}"))?;
            total.add(&s);
            batch.clear();
        }
        if n == 0 {
            return Ok((total, monitors));
        }
    }
}
