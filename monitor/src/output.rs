//! The event stream writer: assigns `seq` (1, 2, 3 … with no gaps: a number
//! is used only by a line that was written), builds `file-event/1` lines and
//! writes them as JSON or as readable text. A closed reader (`BrokenPipe`) is
//! reported as [`OutputError::Closed`] so the process can end cleanly.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;

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
    #[error("writing events: {0}")]
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

pub struct Output {
    main: BufWriter<Box<dyn Write + Send>>,
    format: Format,
    human: Option<BufWriter<Box<dyn Write + Send>>>,
    monitor_id: Uuid,
    seq: u64,
    attribution: Attribution,
}

fn open_append(p: &Path) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(p)?,
    ))
}

impl Output {
    pub fn open(
        target: &OutputTarget,
        format: Format,
        human: Option<&Path>,
        attribution: Attribution,
    ) -> io::Result<Output> {
        let main: Box<dyn Write + Send> = match target {
            OutputTarget::Stdout => Box::new(io::stdout()),
            OutputTarget::File(p) => open_append(p)?,
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
        Ok(Output {
            main: BufWriter::with_capacity(64 * 1024, main),
            format,
            human,
            monitor_id: Uuid::new_v4(),
            seq: 0,
            attribution,
        })
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

    /// Writes one event; `seq` advances only when the line was accepted.
    pub fn write(&mut self, d: &Draft) -> Result<(), OutputError> {
        let seq = self.seq + 1;
        let ev = self.build(d, seq);
        match self.format {
            Format::Json => {
                // The same bytes as `FileEvent::to_json`, without an intermediate String.
                serde_json::to_writer(&mut self.main, &ev).map_err(io::Error::from)?;
                self.main.write_all(b"\n")?;
            }
            Format::Human => {
                let mut line = human_line(&ev);
                line.push('\n');
                self.main.write_all(line.as_bytes())?;
            }
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
        self.main.flush()?;
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
    match (&ev.from, &ev.to) {
        (Some(f), Some(t)) => s.push_str(&format!("{f} -> {t}")),
        _ => s.push_str(&ev.path),
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
