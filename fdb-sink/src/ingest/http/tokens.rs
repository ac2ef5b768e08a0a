//! The bearer tokens of `--ingest-token-file`, re-read while the sink runs
//! so that a token can be rotated without a restart and without a refused
//! batch (Vector drops a batch answered 401 for good).
//!
//! The file holds one token per line; blank lines and the whitespace around
//! each token are ignored, and any of the tokens is accepted. A request whose
//! token matches none of the tokens read so far looks at the file's identity
//! and times (one `stat`): when the file changed since it was read, the
//! request reads it again, or waits for the read another request is making,
//! and is answered with the new tokens. So a token added to the file is
//! accepted by the very next request that presents it, and a wrong token is
//! refused at once while the file is unchanged. The file is also read again
//! when a request comes at least [`RECHECK_EVERY`] after the last read: so a
//! removed token stops being accepted, and a change that left the file's
//! size and times alike (two writes within one tick of the file system's
//! clock) is taken all the same. A path through symbolic links is followed at each look, so
//! a Kubernetes Secret volume, which swaps its `..data` link to a new
//! directory, is seen as soon as the link changes.
//! A file that becomes unreadable or holds no token keeps the tokens read
//! before (logged as an error): a mistake while editing it neither opens
//! ingest to everyone nor refuses every client.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A request coming this long after the last read of the file makes the
/// sink read it again: a token added or removed takes effect for the
/// requests that come this long after the change.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Why the token file cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading --ingest-token-file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--ingest-token-file {path} is empty")]
    Empty { path: String },
}

/// The accepted ingest tokens and the file they come from.
pub struct IngestTokens {
    path: PathBuf,
    /// BLAKE3 hashes of the tokens: compared in constant time, and of one
    /// length whatever the tokens' lengths.
    current: RwLock<Arc<Vec<blake3::Hash>>>,
    /// How the file looked just before its last read (`None`: it could not
    /// be looked at): a request compares it with how the file looks now.
    read_stamp: Mutex<Option<Stamp>>,
    reload: tokio::sync::Mutex<Reloads>,
    recheck_every: Duration,
}

/// What tells one version of the file from another without reading it: the
/// file the path leads to (through links) and its size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// How the file at `path` looks now; `None` when it cannot be looked at.
    async fn now(path: &Path) -> Option<Stamp> {
        tokio::fs::metadata(path).await.ok().map(|m| Stamp::of(&m))
    }
}

/// When the file was read, for the rate limits, and whether the last read
/// failed (logged once per failure, not at every read).
struct Reloads {
    /// When the last read started.
    last_read: Instant,
    failing: bool,
}

impl fmt::Debug for IngestTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestTokens")
            .field("path", &self.path)
            .field("tokens", &self.hashes().len())
            .finish_non_exhaustive()
    }
}

impl IngestTokens {
    /// Reads the file; it must exist and hold at least one token.
    pub fn load(path: &Path) -> Result<IngestTokens, TokenFileError> {
        let name = || path.display().to_string();
        // Looked at before the read: a change made during it differs from
        // this stamp, so the first request that misses reads the file again.
        let stamp = std::fs::metadata(path).ok().map(|m| Stamp::of(&m));
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: name(),
            source,
        })?;
        let hashes = parse(&text);
        if hashes.is_empty() {
            return Err(TokenFileError::Empty { path: name() });
        }
        Ok(IngestTokens {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(hashes)),
            read_stamp: Mutex::new(stamp),
            reload: tokio::sync::Mutex::new(Reloads {
                last_read: Instant::now(),
                failing: false,
            }),
            recheck_every: RECHECK_EVERY,
        })
    }

    /// Sets the period of [`RECHECK_EVERY`].
    pub fn with_recheck_every(mut self, recheck_every: Duration) -> Self {
        self.recheck_every = recheck_every;
        self
    }

    /// How many tokens are accepted now.
    pub fn len(&self) -> usize {
        self.hashes().len()
    }

    /// Never true: a file without a token is refused at start and ignored
    /// later.
    pub fn is_empty(&self) -> bool {
        self.hashes().is_empty()
    }

    /// Whether `presented` (the token of the request, if it has one) is one
    /// of the file's tokens. One that matches none of the tokens read before
    /// makes the request look at the file: when it changed since its last
    /// read, the request reads it again (or waits for the read another
    /// request is making) and is answered with its new tokens. A token added
    /// to the file is thus accepted by the next request that presents it.
    pub async fn accepts(&self, presented: Option<&str>) -> bool {
        self.read_if_older(self.recheck_every).await;
        let Some(presented) = presented else {
            return false;
        };
        let got = blake3::hash(presented.as_bytes());
        if self.matches(&got) {
            return true;
        }
        // An unknown token: perhaps one just added to the file.
        self.read_if_changed().await && self.matches(&got)
    }

    /// Reads the file if it looks other than before its last read, waiting
    /// for a read under way rather than making a second one; whether the
    /// file had changed.
    async fn read_if_changed(&self) -> bool {
        let now = Stamp::now(&self.path).await;
        if now == self.stamp() {
            return false;
        }
        let mut reloads = self.reload.lock().await;
        // A read made while this request waited may have taken this change.
        if now != self.stamp() {
            self.read(&mut reloads).await;
        }
        true
    }

    /// Reads the file if its last read started `age` or more ago and no read
    /// is under way.
    async fn read_if_older(&self, age: Duration) {
        let Ok(mut reloads) = self.reload.try_lock() else {
            return;
        };
        if reloads.last_read.elapsed() >= age {
            self.read(&mut reloads).await;
        }
    }

    fn stamp(&self) -> Option<Stamp> {
        match self.read_stamp.lock() {
            Ok(s) => *s,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_stamp(&self, stamp: Option<Stamp>) {
        match self.read_stamp.lock() {
            Ok(mut s) => *s = stamp,
            Err(poisoned) => *poisoned.into_inner() = stamp,
        }
    }

    fn hashes(&self) -> Arc<Vec<blake3::Hash>> {
        match self.current.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Constant-time comparison with every token (no early exit).
    fn matches(&self, got: &blake3::Hash) -> bool {
        self.hashes().iter().fold(false, |acc, h| acc | (h == got))
    }

    /// Reads the file and takes its tokens, unless it cannot be read or
    /// holds none: then the tokens read before stay, and the error is logged.
    async fn read(&self, reloads: &mut Reloads) {
        reloads.last_read = Instant::now();
        // Looked at before the read: a change made during it differs from
        // this stamp, so the next miss reads the file again. Kept only once
        // the read's outcome is taken: a request dropped during the read
        // leaves the stamp of the read before, and the next miss reads again.
        let stamp = Stamp::now(&self.path).await;
        let outcome = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => {
                let hashes = parse(&text);
                if hashes.is_empty() {
                    Err("the file holds no token".to_owned())
                } else {
                    Ok(hashes)
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(hashes) => {
                let was_failing = std::mem::replace(&mut reloads.failing, false);
                let changed = *self.hashes() != hashes;
                if changed {
                    let n = hashes.len();
                    match self.current.write() {
                        Ok(mut c) => *c = Arc::new(hashes),
                        Err(poisoned) => *poisoned.into_inner() = Arc::new(hashes),
                    }
                    tracing::info!(
                        file = %self.path.display(),
                        tokens = n,
                        "ingest token file changed; accepting its tokens now"
                    );
                } else if was_failing {
                    tracing::info!(
                        file = %self.path.display(),
                        "ingest token file readable again; its tokens are unchanged"
                    );
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut reloads.failing, true) {
                    tracing::error!(
                        file = %self.path.display(),
                        error = %e,
                        tokens = self.len(),
                        "ingest token file unusable; still accepting the tokens read before"
                    );
                }
            }
        }
        self.set_stamp(stamp);
    }
}

/// The tokens of the file's lines, blank lines and surrounding whitespace
/// ignored, as hashes.
fn parse(text: &str) -> Vec<blake3::Hash> {
    // An editor may save the file with a byte order mark, which `trim`
    // keeps: it is no part of the first token.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| blake3::hash(t.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("token");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[tokio::test]
    async fn every_line_is_a_token_and_blank_lines_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "\n  first \r\n\n\tsecond\n\n");
        let t = IngestTokens::load(&p).expect("load");
        assert_eq!(t.len(), 2);
        assert!(t.accepts(Some("first")).await);
        assert!(t.accepts(Some("second")).await);
        assert!(!t.accepts(Some("first second")).await);
        assert!(!t.accepts(Some("")).await);
        assert!(!t.accepts(None).await);
    }

    #[tokio::test]
    async fn a_byte_order_mark_before_the_first_token_is_no_part_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "\u{feff}first\nsecond\n");
        let t = IngestTokens::load(&p).expect("load");
        assert_eq!(t.len(), 2);
        assert!(t.accepts(Some("first")).await);
        assert!(t.accepts(Some("second")).await);
        assert!(!t.accepts(Some("\u{feff}first")).await);
    }

    #[test]
    fn a_file_without_a_token_or_missing_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), " \n\n\t\n");
        let e = IngestTokens::load(&p).expect_err("empty");
        assert!(e.to_string().ends_with("is empty"), "{e}");
        let e = IngestTokens::load(&dir.path().join("nope")).expect_err("missing");
        assert!(e.to_string().contains("reading --ingest-token-file"), "{e}");
    }

    #[tokio::test]
    async fn a_token_added_to_the_file_is_accepted_by_the_next_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "old\n");
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_recheck_every(Duration::from_secs(3600));
        assert!(!t.accepts(Some("new")).await, "not in the file yet");
        file(dir.path(), "old\nnew\n");
        assert!(t.accepts(Some("new")).await, "added in place");
        assert!(t.accepts(Some("old")).await);
        // A Kubernetes Secret volume: the path leads through a link that is
        // swapped to a new file.
        let linked = dir.path().join("linked");
        std::fs::write(dir.path().join("v1"), "first\n").expect("write");
        std::os::unix::fs::symlink("v1", &linked).expect("symlink");
        let t = IngestTokens::load(&linked)
            .expect("load")
            .with_recheck_every(Duration::from_secs(3600));
        std::fs::write(dir.path().join("v2"), "second\n").expect("write");
        std::os::unix::fs::symlink("v2", dir.path().join("tmp-link")).expect("symlink");
        std::fs::rename(dir.path().join("tmp-link"), &linked).expect("swap");
        assert!(t.accepts(Some("second")).await, "the swapped link's file");
        assert!(!t.accepts(Some("first")).await, "gone with the old file");
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_without_waiting_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "old\n");
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_recheck_every(Duration::from_secs(3600));
        // Another request's read, under way while these requests come.
        let reading = t.reload.lock().await;
        let answers = tokio::time::timeout(Duration::from_secs(5), async {
            (
                t.accepts(Some("old")).await,
                t.accepts(Some("wrong")).await,
                t.accepts(None).await,
            )
        })
        .await
        .expect("answered without waiting for the read");
        assert_eq!(answers, (true, false, false));
        drop(reading);
    }

    #[tokio::test]
    async fn a_new_token_waits_for_the_read_under_way_rather_than_being_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "old\n");
        let t = Arc::new(
            IngestTokens::load(&p)
                .expect("load")
                .with_recheck_every(Duration::from_secs(3600)),
        );
        let reading = t.reload.lock().await;
        file(dir.path(), "old\nnew\n");
        let mut asked = tokio::spawn({
            let t = t.clone();
            async move { t.accepts(Some("new")).await }
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut asked)
                .await
                .is_err(),
            "answered while the file was being read"
        );
        drop(reading);
        assert!(asked.await.expect("task"), "accepted once the read is done");
    }

    #[tokio::test]
    async fn an_unusable_file_keeps_the_tokens_read_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "kept\n");
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_recheck_every(Duration::ZERO);
        file(dir.path(), "\n");
        assert!(t.accepts(Some("kept")).await);
        assert!(!t.accepts(Some("")).await);
        std::fs::remove_file(&p).expect("remove");
        assert!(t.accepts(Some("kept")).await);
        assert!(!t.accepts(Some("other")).await);
        file(dir.path(), "other\n");
        assert!(t.accepts(Some("other")).await);
        assert!(!t.accepts(Some("kept")).await, "removed from the file");
    }
}
