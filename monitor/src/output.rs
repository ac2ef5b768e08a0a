//! The event stream writer: assigns `seq` (1, 2, 3 … with no gaps: a number
//! is used only by a line that was written), builds `file-event/1` lines and
//! writes them as JSON or as readable text. A closed reader (`BrokenPipe`) is
//! reported as [`OutputError::Closed`] so the process can end cleanly. An
//! output file never keeps an incomplete last line (a full disk, a crash):
//! it is cut back to its last complete line on a write failure and at open,
//! so lines appended later stay valid.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use file_event::{EncodedPath, EventType, FileEvent, Kind};
use uuid::Uuid;

use crate::config::{Attribution, Format, OutputTarget};

/// One event ready to be written (everything but the identity fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub event_type: EventType,
    pub kind: Kind,
    pub path: Vec<u8>,
    /// Source of a move.
    pub from: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub rescan: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the reader of the event stream went away")]
    Closed,
    #[error("writing events")]
    Io(#[source] io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    }
}

/// How long the write to the event stream in progress has been waiting
/// (a reader that stopped reading holds it), readable from other threads.
#[derive(Debug, Clone)]
pub struct WriteClock {
    base: Instant,
    /// When the write in progress began, in µs after `base` plus one; 0
    /// while no write is in progress.
    since: Arc<AtomicU64>,
}

impl WriteClock {
    fn new() -> WriteClock {
        WriteClock {
            base: Instant::now(),
            since: Arc::new(AtomicU64::new(0)),
        }
    }

    fn begin(&self) {
        let us = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.since.store(us + 1, Ordering::Release);
    }

    fn end(&self) {
        self.since.store(0, Ordering::Release);
    }

    /// How long the write in progress has been waiting; `None` when no
    /// write is in progress.
    pub fn blocked_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            us => Some(
                self.base
                    .elapsed()
                    .saturating_sub(Duration::from_micros(us - 1)),
            ),
        }
    }
}

/// The stream's writer, timing each call into the file descriptor.
struct Timed {
    inner: Box<dyn Write + Send>,
    clock: WriteClock,
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.clock.begin();
        let r = self.inner.write(buf);
        self.clock.end();
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        self.clock.begin();
        let r = self.inner.flush();
        self.clock.end();
        r
    }
}

pub struct Output {
    main: BufWriter<Box<dyn Write + Send>>,
    clock: WriteClock,
    format: Format,
    human: Option<BufWriter<Box<dyn Write + Send>>>,
    monitor_id: Uuid,
    seq: u64,
    attribution: Attribution,
    /// The output file (not standard output), to cut an incomplete line.
    file: Option<(PathBuf, File)>,
    /// Lines written since the last flush, held back from the stream until
    /// then (see [`Output::hold`]).
    held: Option<Vec<u8>>,
}

fn open_append(p: &Path) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(p)?,
    ))
}

/// Opens the event file for appending, cutting an incomplete last line left
/// by an earlier failure. Returns the writer and a handle for later repairs
/// (none when the file cannot be read back).
fn open_events_file(p: &Path) -> io::Result<(Box<dyn Write + Send>, Option<File>)> {
    let f = match OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok((open_append(p)?, None))
        }
        Err(e) => return Err(e),
    };
    let cut = cut_incomplete_line(&f)?;
    if cut > 0 {
        tracing::warn!(file = %p.display(), bytes = cut, "removed an incomplete last line left by an earlier failure");
    }
    let repair = f.try_clone()?;
    Ok((Box::new(f), Some(repair)))
}

/// Truncates `f` after its last `\n` (to empty if it has none); returns the
/// bytes removed.
pub fn cut_incomplete_line(f: &File) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
    }
    Ok(len)
}

impl Output {
    pub fn open(
        target: &OutputTarget,
        format: Format,
        human: Option<&Path>,
        attribution: Attribution,
    ) -> io::Result<Output> {
        let (main, file): (Box<dyn Write + Send>, _) = match target {
            OutputTarget::Stdout => (Box::new(io::stdout()), None),
            OutputTarget::File(p) => {
                let (w, f) = open_events_file(p)?;
                (w, f.map(|f| (p.clone(), f)))
            }
        };
        let human = match human {
            Some(p) if p == Path::new("/dev/stderr") => Some(BufWriter::new(
                Box::new(io::stderr()) as Box<dyn Write + Send>,
            )),
            Some(p) if p == Path::new("/dev/stdout") || p == Path::new("-") => Some(
                BufWriter::new(Box::new(io::stdout()) as Box<dyn Write + Send>),
            ),
            Some(p) => Some(BufWriter::new(open_append(p)?)),
            None => None,
        };
        let clock = WriteClock::new();
        let main: Box<dyn Write + Send> = Box::new(Timed {
            inner: main,
            clock: clock.clone(),
        });
        Ok(Output {
            main: BufWriter::with_capacity(64 * 1024, main),
            clock,
            format,
            human,
            monitor_id: Uuid::new_v4(),
            seq: 0,
            attribution,
            file,
            held: None,
        })
    }

    /// From now on, lines reach the stream only at [`Output::flush`], all
    /// at once, never while a batch is being written: the state journal
    /// names the paths of a batch before its first byte can reach the
    /// stream.
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Bytes of lines held back until the next flush.
    pub fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, Vec::len)
    }

    /// How long the stream's current write has been waiting, for other threads.
    pub fn clock(&self) -> WriteClock {
        self.clock.clone()
    }

    pub fn monitor_id(&self) -> Uuid {
        self.monitor_id
    }

    /// The last `seq` written.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn build(&self, d: &Draft, seq: u64) -> FileEvent {
        let mut ev = FileEvent::new(
            self.monitor_id,
            seq,
            d.event_type,
            d.kind,
            EncodedPath::from_bytes(&d.path),
        );
        if let Some(from) = &d.from {
            let f = EncodedPath::from_bytes(from);
            let t = EncodedPath::from_bytes(&d.path);
            ev.from = Some(f.text);
            ev.from_b64 = f.b64;
            ev.to = Some(t.text);
            ev.to_b64 = t.b64;
        }
        ev.size = d.size;
        ev.checksum = d.checksum.clone();
        ev.tenant_id = self.attribution.tenant_id.clone();
        ev.user_id = self.attribution.user_id.clone();
        ev.session_id = self.attribution.session_id.clone();
        ev.metadata = self.attribution.metadata.clone();
        ev.rescan = d.rescan;
        ev
    }

    /// A failed write may have left part of a line in the file: cut it, so
    /// that the file holds complete lines only. What is still buffered (it
    /// may begin in the middle of a line) is thrown away, so that no later
    /// flush, at exit included, appends a fragment after the cut.
    fn failed(&mut self, e: io::Error) -> OutputError {
        let unwritten = std::mem::replace(
            &mut self.main,
            BufWriter::new(Box::new(io::sink()) as Box<dyn Write + Send>),
        );
        let _ = unwritten.into_parts();
        let e = OutputError::from(e);
        if let (OutputError::Io(_), Some((p, f))) = (&e, &self.file) {
            if let Err(err) = cut_incomplete_line(f) {
                tracing::error!(file = %p.display(), error = %err, "cannot remove the incomplete last line");
            }
        }
        e
    }

    /// Writes one event; `seq` advances only when the line was accepted.
    pub fn write(&mut self, d: &Draft) -> Result<(), OutputError> {
        let seq = self.seq + 1;
        let ev = self.build(d, seq);
        let to: &mut dyn Write = match &mut self.held {
            Some(h) => h,
            None => &mut self.main,
        };
        let res = match self.format {
            Format::Json => {
                // The same bytes as `FileEvent::to_json`, without an intermediate String.
                serde_json::to_writer(&mut *to, &ev)
                    .map_err(io::Error::from)
                    .and_then(|()| to.write_all(b"\n"))
            }
            Format::Human => {
                let mut line = human_line(&ev);
                line.push('\n');
                to.write_all(line.as_bytes())
            }
        };
        if let Err(e) = res {
            return Err(self.failed(e));
        }
        self.seq = seq;
        if let Some(h) = &mut self.human {
            let mut line = human_line(&ev);
            line.push('\n');
            // The readable log is a convenience: its failures never stop the stream.
            if let Err(e) = h.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "human-readable output failed; disabling it");
                self.human = None;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        if let Some(h) = self.held.as_mut().filter(|h| !h.is_empty()) {
            let lines = std::mem::take(h);
            let res = self.main.write_all(&lines);
            if let Some(h) = self.held.as_mut() {
                // The buffer is kept for the next batch, unless a large
                // batch left it large.
                if lines.capacity() <= 1 << 20 {
                    *h = lines;
                    h.clear();
                }
            }
            if let Err(e) = res {
                return Err(self.failed(e));
            }
        }
        if let Err(e) = self.main.flush() {
            return Err(self.failed(e));
        }
        if let Some(h) = &mut self.human {
            if h.flush().is_err() {
                self.human = None;
            }
        }
        Ok(())
    }
}

/// `2026-11-26T18:00:00.123456789Z #12 update file src/a.rs size=120 sha256:…`
pub fn human_line(ev: &FileEvent) -> String {
    let mut s = format!(
        "{} #{} {:<6} {:<7} ",
        ev.timestamp,
        ev.seq,
        ev.event_type.as_str(),
        ev.kind.as_str()
    );
    // Names are shown with control characters escaped: a file name cannot
    // forge a line or send escape sequences to the terminal.
    match (&ev.from, &ev.to) {
        (Some(f), Some(t)) => s.push_str(&format!(
            "{} -> {}",
            crate::shown(f.as_bytes()),
            crate::shown(t.as_bytes())
        )),
        _ => s.push_str(&crate::shown(ev.path.as_bytes())),
    }
    if let Some(sz) = ev.size {
        s.push_str(&format!(" size={sz}"));
    }
    if let Some(c) = &ev.checksum {
        s.push(' ');
        s.push_str(c);
    }
    if ev.rescan {
        s.push_str(" (rescan)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes into a file until its budget is spent, fails once there (as
    /// a full disk does), then accepts everything (space was freed).
    struct FullOnce {
        file: File,
        budget: usize,
        failed: bool,
    }

    impl Write for FullOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.failed && self.budget == 0 {
                self.failed = true;
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = if self.failed {
                buf.len()
            } else {
                buf.len().min(self.budget)
            };
            self.budget = self.budget.saturating_sub(n);
            self.file.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Takes 300 ms per call.
    struct Slow;

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(300));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_write_clock_says_how_long_the_write_under_way_has_waited() {
        let clock = WriteClock::new();
        let mut w = Timed {
            inner: Box::new(Slow),
            clock: clock.clone(),
        };
        assert_eq!(clock.blocked_for(), None);
        let writer = std::thread::spawn(move || w.write_all(b"x"));
        std::thread::sleep(Duration::from_millis(150));
        let waited = clock.blocked_for().expect("a write is under way");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        writer.join().expect("join").expect("write");
        assert_eq!(clock.blocked_for(), None);
    }

    #[test]
    fn a_failed_write_leaves_only_complete_lines_even_after_space_returns() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.jsonl");
        let mut out = Output::open(
            &OutputTarget::File(path.clone()),
            Format::Json,
            None,
            Attribution::default(),
        )
        .expect("open");
        let file = OpenOptions::new().append(true).open(&path).expect("file");
        out.main = BufWriter::with_capacity(
            64 * 1024,
            Box::new(FullOnce {
                file,
                budget: 10_000,
                failed: false,
            }) as Box<dyn Write + Send>,
        );
        let d = Draft {
            event_type: EventType::Create,
            kind: Kind::File,
            path: b"some/file/name.txt".to_vec(),
            from: None,
            size: Some(3),
            checksum: None,
            rescan: false,
        };
        let mut failed = false;
        for _ in 0..1000 {
            if out.write(&d).and_then(|()| out.flush()).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "the budget runs out");
        drop(out);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with('\n'), "no cut line at the end");
        for line in text.lines() {
            FileEvent::from_json(line).expect("every line is a whole event");
        }
    }

    #[test]
    fn json_lines_carry_attribution_and_lossless_paths() {
        let mut attr = Attribution {
            tenant_id: Some("t".into()),
            ..Default::default()
        };
        attr.metadata
            .insert("team".into(), serde_json::json!("infra"));
        let out = Output::open(&OutputTarget::Stdout, Format::Json, None, attr).expect("stdout");
        let d = Draft {
            event_type: EventType::Move,
            kind: Kind::File,
            path: b"caf\xe9".to_vec(),
            from: Some(b"a".to_vec()),
            size: Some(3),
            checksum: None,
            rescan: true,
        };
        let ev = out.build(&d, 7);
        let parsed = FileEvent::from_json(&ev.to_json()).expect("valid file-event/1");
        assert_eq!(parsed.seq, 7);
        assert_eq!(parsed.path_bytes(), b"caf\xe9");
        assert_eq!(parsed.to_b64, parsed.path_b64);
        assert_eq!(parsed.from.as_deref(), Some("a"));
        assert_eq!(parsed.tenant_id.as_deref(), Some("t"));
        assert!(parsed.rescan);
        let h = human_line(&ev);
        assert!(
            h.contains("move") && h.contains("a -> caf\u{fffd}") && h.ends_with("size=3 (rescan)"),
            "{h}"
        );
    }
}
