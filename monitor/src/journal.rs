//! The files beside `--state-file`: the journal of the changes written
//! since the last save (`<state-file>.journal`), the lock that lets one
//! monitor use a state file (`<state-file>.lock`), and the place where an
//! unusable state file is kept (`<state-file>.unusable-<unix seconds>`).
//!
//! The journal's first line names the save it continues
//! (`{"journal":1,"generation":"..."}`, the generation recorded in the state
//! file); each further line is one change of the index (see
//! [`Index::apply_journal_line`]). Changes are appended after the lines that
//! report them were written to the stream, so the state file plus its
//! journal never claim more than the stream said. A save writes a new
//! generation into the state file, then starts the journal again: a journal
//! that names another generation (a crash between the two) is ignored, since
//! the state file already holds what it says.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::{done_line, taint_line, Index, JournalLine};

/// The journal's size at most (with the changes kept for a later attempt
/// while appending fails): it holds the changes since the last save, so it
/// reaches this only while saves keep failing. Beyond it, the journal stops
/// until the next save.
const JOURNAL_LIMIT: u64 = 64 << 20;

/// `<state-file><suffix>`.
pub fn beside(state: &Path, suffix: &str) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The journal of `state`.
pub fn journal_path(state: &Path) -> PathBuf {
    beside(state, ".journal")
}

/// The lock file of `state`.
pub fn lock_path(state: &Path) -> PathBuf {
    beside(state, ".lock")
}

/// Suffix of an unusable state file kept aside (followed by unix seconds).
pub const UNUSABLE_SUFFIX: &str = ".unusable-";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    journal: u32,
    generation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("--state-file {state:?} is in use by another file-monitor (it holds {lock:?}); one monitor per state file")]
    Held { state: PathBuf, lock: PathBuf },
    #[error("--state-file {state:?}: cannot lock {lock:?}: {source}")]
    Io {
        state: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// `state` in its directory resolved through symlinks (as given when the
/// directory cannot be resolved). The file name itself is not followed:
/// saves replace whatever is at that name.
fn resolved(state: &Path) -> PathBuf {
    match (state.parent(), state.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir).map_or_else(|_| state.to_path_buf(), |d| d.join(name))
        }
        _ => state.to_path_buf(),
    }
}

/// Takes the exclusive lock of `state` (`flock` on `<state>.lock`, in the
/// state file's directory resolved through symlinks, so that two paths to
/// one state file share one lock; released when the process ends, however
/// it ends). Held while the value lives.
pub fn lock(state: &Path) -> Result<nix::fcntl::Flock<File>, LockError> {
    use nix::fcntl::{Flock, FlockArg};
    let lock = lock_path(&resolved(state));
    let io = |source| LockError::Io {
        state: state.to_path_buf(),
        lock: lock.clone(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held {
            state: state.to_path_buf(),
            lock,
        }),
        Err((_, e)) => Err(io(e.into())),
    }
}

/// Renames an unusable state file (and its journal) aside instead of
/// overwriting them; returns the new name of the state file.
pub fn keep_aside(state: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = beside(state, &format!("{UNUSABLE_SUFFIX}{secs}"));
    let mut n = 1;
    while aside.symlink_metadata().is_ok() {
        aside = beside(state, &format!("{UNUSABLE_SUFFIX}{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(state, &aside)?;
    let journal = journal_path(state);
    if journal.exists() {
        let _ = std::fs::rename(&journal, beside(&aside, ".journal"));
    }
    Ok(aside)
}

/// What [`Journal::replay`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Changes applied.
    pub applied: usize,
    /// Whether the journal continued the state file's save (otherwise it
    /// was absent, empty, or left from an earlier save, and was ignored).
    pub matched: bool,
    /// Bytes after the last complete change, cut off (a line torn by a
    /// crash while it was written).
    pub cut: u64,
    /// The paths of the batch the monitor was writing to the stream when
    /// it stopped, before the journal held what the batch said: the stream
    /// may or may not have said it (see [`Index::forget_tainted`]).
    pub tainted: Vec<(Vec<u8>, file_event::Kind)>,
}

/// The journal of a state file, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
    /// Length of its complete lines.
    len: u64,
    /// Changes not appended yet (appending failed).
    pending: Vec<u8>,
    /// It continues the save now in the state file: appending is allowed.
    active: bool,
    /// Why appending stopped until the next save (a failure), if it did.
    stopped: Option<String>,
    /// A taint line was written and its batch is not done yet.
    open: bool,
}

impl Journal {
    /// Opens (creating) the journal of `state`; it is not appended to until
    /// it matched the loaded state file ([`Journal::replay`]) or was started
    /// again by a save ([`Journal::restart`]).
    pub fn open(state: &Path) -> Journal {
        let path = journal_path(state);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot open the state journal; a restart after a crash reports again what changed since the last save");
                None
            }
        };
        Journal {
            path,
            file,
            len: 0,
            pending: Vec::new(),
            active: false,
            stopped: None,
            open: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies to `index` (loaded from a state file of `generation`) the
    /// changes the journal holds if it continues that save; an incomplete
    /// last line is cut off, and appending then continues after the last
    /// complete one.
    pub fn replay(
        &mut self,
        index: &mut Index,
        generation: Option<&str>,
        dev_unknown: bool,
    ) -> Replayed {
        let mut out = Replayed::default();
        let Some(f) = self.file.as_mut() else {
            return out;
        };
        let mut data = Vec::new();
        if let Err(e) = f.read_to_end(&mut data) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot read the state journal; ignored");
            return out;
        }
        let Some(generation) = generation else {
            return out;
        };
        let mut lines = data.split_inclusive(|b| *b == b'\n');
        let header = lines
            .next()
            .filter(|l| l.ends_with(b"\n"))
            .and_then(|l| serde_json::from_slice::<Header>(l).ok());
        let Some(header) = header else {
            return out;
        };
        if header.journal != 1 || header.generation != generation {
            tracing::debug!(file = %self.path.display(), "state journal left from an earlier save; ignored");
            return out;
        }
        out.matched = true;
        // The header's line is complete (checked above).
        let mut good = data.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in lines {
            // A line without its newline was torn; a line that does not
            // parse ends what can be trusted.
            if !line.ends_with(b"\n") {
                break;
            }
            match index.apply_journal_line(line, dev_unknown) {
                Ok(JournalLine::Change) => out.applied += 1,
                Ok(JournalLine::Taint(paths)) => out.tainted.extend(paths),
                Ok(JournalLine::Done) => out.tainted.clear(),
                Err(_) => break,
            }
            good += line.len();
        }
        out.cut = (data.len() - good) as u64;
        if out.cut > 0 {
            tracing::warn!(file = %self.path.display(), bytes = out.cut, "state journal ends in an incomplete change (written when the monitor was killed); it is ignored");
            if let Err(e) = f.set_len(good as u64) {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot cut the state journal; it is started again at the next save");
                return out;
            }
        }
        self.len = good as u64;
        self.active = true;
        out
    }

    /// Starts the journal again after a save of `generation`: empty but
    /// for its header.
    pub fn restart(&mut self, generation: &str) -> std::io::Result<()> {
        self.active = false;
        self.open = false;
        self.stopped = None;
        self.pending.clear();
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let mut header = serde_json::to_vec(&Header {
            journal: 1,
            generation: generation.to_owned(),
        })
        .map_err(std::io::Error::other)?;
        header.push(b'\n');
        let res = f.set_len(0).and_then(|()| f.write_all(&header));
        match res {
            Ok(()) => {
                self.len = header.len() as u64;
                self.active = true;
                Ok(())
            }
            Err(e) => {
                // Cut back to nothing: a partial header matches no save.
                let _ = f.set_len(0);
                self.stop(format!("starting it again after a save failed ({e})"));
                Err(e)
            }
        }
    }

    /// Appends, before the lines of a batch may reach the stream, the
    /// paths they are about (with the changes still kept from a failed
    /// append). A failure stops the journal until the next save: what the
    /// stream says next could not be told from what it did not say.
    pub fn taint(&mut self, paths: &[(Vec<u8>, file_event::Kind)]) -> std::io::Result<()> {
        if paths.is_empty() {
            return self.check();
        }
        let line = taint_line(paths);
        self.write(line, true)?;
        self.open = self.active;
        Ok(())
    }

    /// Appends `changes` (journal lines), and the line saying that the
    /// batch tainted last is complete, with one write, without syncing
    /// (what the page cache holds outlives a killed process). On failure,
    /// the journal is cut back to its complete lines and the changes are
    /// kept for the next attempt.
    pub fn append(&mut self, mut changes: Vec<u8>) -> std::io::Result<()> {
        if changes.is_empty() && !self.open {
            return self.check();
        }
        changes.extend_from_slice(&done_line());
        self.write(changes, false)?;
        self.open = false;
        Ok(())
    }

    /// `Err` when the journal stopped after a failure.
    fn check(&self) -> std::io::Result<()> {
        match &self.stopped {
            Some(why) => Err(std::io::Error::other(format!(
                "the journal is stopped until the next save ({why})"
            ))),
            None => Ok(()),
        }
    }

    fn stop(&mut self, why: String) {
        self.active = false;
        self.open = false;
        self.pending = Vec::new();
        self.stopped = Some(why);
    }

    /// Writes what is pending and `data`; `must`: a failure stops the
    /// journal (otherwise `data` stays pending for the next write).
    fn write(&mut self, data: Vec<u8>, must: bool) -> std::io::Result<()> {
        self.check()?;
        if !self.active {
            return Ok(());
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            self.pending = data;
        } else {
            self.pending.extend_from_slice(&data);
        }
        if self.len + self.pending.len() as u64 > JOURNAL_LIMIT {
            self.stop(format!(
                "it reached its limit of {} MiB: the state file was not saved since",
                JOURNAL_LIMIT >> 20
            ));
            return self.check();
        }
        match f.write_all(&self.pending) {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                // What is on disk stays a consistent prefix; nothing is
                // appended after a gap.
                if let Err(cut) = f.set_len(self.len) {
                    self.stop(format!("writing failed ({e}), then cutting it ({cut})"));
                } else if must {
                    self.stop(format!("writing failed ({e})"));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use file_event::Kind;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().expect("tempdir");
        let state = d.path().join("state.json");
        (d, state)
    }

    #[test]
    fn a_batch_tainted_without_its_end_is_replayed_as_tainted() {
        let (_d, state) = setup();
        let mut j = Journal::open(&state);
        j.restart("g1").expect("restart");
        j.taint(&[(b"a".to_vec(), Kind::File)]).expect("taint");
        j.append(Vec::new()).expect("done");
        j.taint(&[(b"b".to_vec(), Kind::File), (b"c".to_vec(), Kind::Dir)])
            .expect("taint");
        let mut idx = Index::new();
        let r = Journal::open(&state).replay(&mut idx, Some("g1"), false);
        assert!(r.matched);
        assert_eq!(
            r.tainted,
            vec![(b"b".to_vec(), Kind::File), (b"c".to_vec(), Kind::Dir)]
        );
        // Once done, nothing is.
        j.append(Vec::new()).expect("done");
        let r = Journal::open(&state).replay(&mut idx, Some("g1"), false);
        assert!(r.tainted.is_empty());
        // Nothing to say writes nothing.
        let len = std::fs::metadata(journal_path(&state))
            .expect("journal")
            .len();
        j.append(Vec::new()).expect("nothing");
        assert_eq!(
            std::fs::metadata(journal_path(&state))
                .expect("journal")
                .len(),
            len
        );
    }

    #[test]
    fn the_journal_stops_at_its_limit_and_says_so_until_the_next_save() {
        let (_d, state) = setup();
        let mut j = Journal::open(&state);
        j.restart("g1").expect("restart");
        let big = vec![b' '; (JOURNAL_LIMIT / 2) as usize];
        j.append(big.clone()).expect("half");
        let e = j.append(big.clone()).expect_err("over the limit");
        assert!(e.to_string().contains("limit"), "{e}");
        let e = j
            .taint(&[(b"a".to_vec(), Kind::File)])
            .expect_err("stopped");
        assert!(e.to_string().contains("stopped"), "{e}");
        assert!(
            std::fs::metadata(journal_path(&state))
                .expect("journal")
                .len()
                <= JOURNAL_LIMIT
        );
        j.restart("g2").expect("restart");
        j.taint(&[(b"a".to_vec(), Kind::File)])
            .expect("taint after a save");
    }
}
