//! The bearer tokens of `--ingest-token-file`, re-read while the sink runs
//! so that a token can be rotated without a restart and without a refused
//! batch (Vector drops a batch answered 401 for good).
//!
//! The file holds one token per line; blank lines and the whitespace around
//! each token are ignored, and any of the tokens is accepted. The file is
//! read again when a request comes at least [`RECHECK_EVERY`] after the last
//! read, and when a request presents a token that matches none and the last
//! read is at least [`MISS_RELOAD_EVERY`] old, so a token added to the file
//! is accepted from that long after the change. No request waits for a read
//! that another one made or is making: a wrong token is refused at once. A
//! path through symbolic links is followed at each read, so a Kubernetes Secret volume, which swaps its
//! `..data` link to a new directory, is seen as soon as the link changes.
//! A file that becomes unreadable or holds no token keeps the tokens read
//! before (logged as an error): a mistake while editing it neither opens
//! ingest to everyone nor refuses every client.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A request coming this long after the last read of the file makes the
/// sink read it again: a token added or removed takes effect for the
/// requests that come this long after the change.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// A request whose token matches none makes the sink read the file again
/// when it last read it this long ago or more (otherwise it is refused at
/// once): a client with a wrong token costs at most one read of the file per
/// period, and a token added to the file is accepted from this long after
/// the change.
pub const MISS_RELOAD_EVERY: Duration = Duration::from_secs(1);

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
    reload: tokio::sync::Mutex<Reloads>,
    recheck_every: Duration,
    miss_reload_every: Duration,
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
            reload: tokio::sync::Mutex::new(Reloads {
                last_read: Instant::now(),
                failing: false,
            }),
            recheck_every: RECHECK_EVERY,
            miss_reload_every: MISS_RELOAD_EVERY,
        })
    }

    /// Sets the periods of [`RECHECK_EVERY`] and [`MISS_RELOAD_EVERY`].
    pub fn with_periods(mut self, recheck_every: Duration, miss_reload_every: Duration) -> Self {
        self.recheck_every = recheck_every;
        self.miss_reload_every = miss_reload_every;
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
    /// makes the file be read again if the last read is at least
    /// [`MISS_RELOAD_EVERY`] old: a token added to the file is accepted from
    /// that long after the change. A request never waits for a read that
    /// another request is making; it uses the tokens read before.
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
        self.read_if_older(self.miss_reload_every).await && self.matches(&got)
    }

    /// Reads the file if its last read started `age` or more ago and no read
    /// is under way; whether it read it.
    async fn read_if_older(&self, age: Duration) -> bool {
        let Ok(mut reloads) = self.reload.try_lock() else {
            return false;
        };
        if reloads.last_read.elapsed() < age {
            return false;
        }
        self.read(&mut reloads).await;
        true
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
    async fn an_unknown_token_reads_the_file_again_at_most_once_a_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "old\n");
        let period = Duration::from_millis(300);
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_periods(Duration::from_secs(3600), period);
        file(dir.path(), "old\nnew\n");
        tokio::time::sleep(period).await;
        assert!(t.accepts(Some("new")).await, "read a period after the last");
        file(dir.path(), "old\nnew\nnewer\n");
        let changed = Instant::now();
        assert!(
            !t.accepts(Some("newer")).await,
            "read less than a period ago"
        );
        assert!(!t.accepts(Some("wrong")).await);
        assert!(
            changed.elapsed() < period / 2,
            "refused without waiting for the period: {:?}",
            changed.elapsed()
        );
        tokio::time::sleep(period.saturating_sub(changed.elapsed())).await;
        assert!(
            t.accepts(Some("newer")).await,
            "accepted a period after the change"
        );
    }

    #[tokio::test]
    async fn a_request_does_not_wait_for_a_read_under_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "old\n");
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_periods(Duration::ZERO, Duration::ZERO);
        file(dir.path(), "old\nnew\n");
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
        assert_eq!(answers, (true, false, false), "the tokens read before");
        drop(reading);
        assert!(t.accepts(Some("new")).await, "read once none is under way");
    }

    #[tokio::test]
    async fn an_unusable_file_keeps_the_tokens_read_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file(dir.path(), "kept\n");
        let t = IngestTokens::load(&p)
            .expect("load")
            .with_periods(Duration::ZERO, Duration::ZERO);
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
