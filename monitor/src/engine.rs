//! The event loop: raw kernel events (or poll scans) in, `file-event/1` lines
//! out. Watches are placed as soon as a directory is seen; everything a
//! consumer is told is recorded in the [`Index`], and every emitted event is
//! checked against it and the disk, which makes replays of the same change
//! (a raw event and a scan finding the same file) harmless.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use file_event::{EventType, Kind};

use crate::checksum::{checksum_file_opened, ChecksumError};
use crate::coalesce::{replaced_paths, Coalescer, Logical, RelPath};
use crate::config::{ChecksumAlgo, Config};
use crate::ignore::IgnoreSet;
use crate::index::{abs_path, scan, Change, Entry, Index, NoHook, PathSet, ScanHook};
use crate::journal::Journal;
use crate::metrics::{Metrics, DROP_KERNEL_OVERFLOW, DROP_UNREADABLE_DIR};
use crate::mounts::{self, Mounts};
use crate::output::{Draft, Output, OutputError};
use crate::ratelimit::{Item, RateLimiter};
use crate::signals::ShutdownRequest;
use crate::watcher::{Raw, WatchError, Watcher};

/// A state save is followed by at least this many times its own duration
/// before the next one (at most 1/20 of the time goes to saving).
const STATE_SAVE_SPACING: u32 = 20;
/// How long a rename's first half waits for its second half when nothing
/// else arrives (the kernel queues both halves back to back).
const RENAME_PAIR_WAIT: Duration = Duration::from_millis(50);
/// How long the kernel events queued behind an overflow notice are read and
/// dropped before the rescan, at most (see [`Engine::discard_queued`]).
const OVERFLOW_DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// How long a file found by a scan may see its own close-after-write arrive.
const SCANNED_GRACE: Duration = Duration::from_secs(2);
/// A wake-up that found at least this many events means a burst is on.
const BUSY_BATCH: usize = 32;
/// How long to let events gather during a burst before reading them (one
/// wake-up then handles many).
const BURST_GATHER: Duration = Duration::from_micros(500);
/// Raw events handled before queued events are written out.
const BATCH: usize = 4096;
/// Bytes of lines held back from the stream (with a state journal) beyond
/// which they are written without waiting for the end of the batch.
const HELD_LIMIT: usize = 1 << 20;
/// On SIGTERM, how long events the kernel still holds are read before exiting.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Debounced events may be written this much later than their deadline,
/// and while kernel events stream in they are read at most this often (at
/// most 2 % of the debounce window, none with `--debounce=0`), so that one
/// wake-up handles many events.
const MAX_TIMER_SLACK: Duration = Duration::from_millis(2);

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM / SIGINT / SIGHUP: everything pending was written.
    Signal,
    /// The reader of the stream went away.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("the watched root {0:?} was deleted or moved away")]
    RootGone(std::path::PathBuf),
}

pub struct Engine {
    cfg: Config,
    index: Index,
    co: Coalescer,
    rl: RateLimiter,
    out: Output,
    metrics: Metrics,
    watcher: Option<Watcher>,
    polled: PathSet,
    /// Directories that could not be read (or watched): looked at again
    /// every poll interval, and watched and reported once readable.
    unreadable: PathSet,
    pending_from: Option<(RelPath, usize, Instant)>,
    /// The rename handled last, if nothing came after it. An exchange of
    /// two names (`RENAME_EXCHANGE`) arrives as `a → b` then at once `b → a`.
    last_move: Option<LastMove>,
    self_opens: HashMap<RelPath, u32>,
    stop: Arc<ShutdownRequest>,
    /// Kernel events read but not yet handled (reused buffer).
    raws: Vec<Raw>,
    /// The end of a read held back for the next one, from a rename's old
    /// name whose new name was not queued yet (see
    /// [`crate::watcher::split_unpaired_tail`]), and since when that old
    /// name waits.
    carry: Vec<Raw>,
    carry_since: Option<Instant>,
    /// Since when each old name held back without its new name waits, by
    /// cookie (each waits [`RENAME_PAIR_WAIT`] from when it was first held).
    carry_waits: HashMap<usize, Instant>,
    /// Paths that a kernel event of the batch being handled removes or
    /// replaces, with the position of the last such event in the batch;
    /// `batch_pos` is the position of the event being handled.
    batch_later: HashMap<RelPath, usize>,
    batch_pos: usize,
    /// What `lstat` found at the paths looked at while handling the batch
    /// (with the link count; `None`: nothing there). Every event of a batch
    /// happened before it was read, so one look per path serves its
    /// create and close (the kind, the inode written). Not the ctime learnt
    /// at an attribute change or a new hard link: a line written since the
    /// look took a newer one, which an older one must not replace.
    batch_stats: HashMap<RelPath, Option<(Entry, u64)>>,
    timer_slack: Duration,
    ready: Arc<AtomicBool>,
    state_dirty: bool,
    /// No state save before this (see [`STATE_SAVE_SPACING`]).
    next_state_save: Instant,
    /// The last state save failed (logged once until one succeeds).
    state_failing: bool,
    /// The journal beside the state file (with `--state-file`).
    journal: Option<Journal>,
    /// Appending to the journal failed (logged once until it works again).
    journal_failing: bool,
    /// The paths of the lines written since the last flush, for the
    /// journal's taint line (with a journal only).
    taint: Vec<(RelPath, Kind)>,
    next_poll: Instant,
    /// File systems mounted below the root (`None`: no mount table to
    /// read), compared every poll interval.
    mounts: Option<Mounts>,
    next_mount_check: Instant,
    reported_coalesced: u64,
    unflushed: bool,
    /// Files just reported by a directory scan, with when, and the size and
    /// checksum reported: a close-after-write that follows with the same
    /// metadata, or with only new times (`touch` sets them after its open),
    /// is the end of the write the scan already saw.
    scanned: HashMap<RelPath, Scanned>,
}

/// A file a directory scan reported: when, and the content its create carried.
struct Scanned {
    at: Instant,
    size: Option<u64>,
    checksum: Option<String>,
}

/// A rename just handled, kept to recognise the second half of an exchange.
struct LastMove {
    from: RelPath,
    to: RelPath,
    /// The inode of what was moved.
    ino: Option<u64>,
    /// Whether `to` held another entry of the index before the move.
    replaced: bool,
}

/// Places watches while a scan walks the tree.
struct WatchHook<'a> {
    watcher: &'a mut Option<Watcher>,
    polled: &'a mut PathSet,
    unreadable: &'a mut PathSet,
    metrics: &'a Metrics,
    /// Re-place watches even where one is recorded (after lost events).
    force: bool,
}

impl ScanHook for WatchHook<'_> {
    fn enter_dir(&mut self, rel: &[u8]) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        if w.is_watched(rel) && !self.force {
            return true;
        }
        match w.watch(rel) {
            Ok(()) => {
                self.metrics.watches.set(w.len() as i64);
                true
            }
            Err(WatchError::Limit) => {
                self.metrics.watch_limit_reached.inc();
                if self.polled.insert(rel.to_vec()) {
                    tracing::warn!(
                        subtree = %crate::shown(rel),
                        watches = w.len(),
                        "inotify watch budget exhausted (fs.inotify.max_user_watches is per UID and shared by every container of that UID on the node); polling this subtree instead"
                    );
                }
                self.metrics.polled_subtrees.set(self.polled.len() as i64);
                false
            }
            Err(WatchError::Unreadable(e)) => {
                self.unreadable(rel, &e);
                false
            }
            Err(WatchError::Other(e)) => {
                // The error names the directory too: shown escaped as well.
                tracing::debug!(dir = %crate::shown(rel), error = %crate::shown(e.to_string().as_bytes()), "cannot watch directory");
                false
            }
        }
    }

    fn unreadable(&mut self, rel: &[u8], err: &std::io::Error) {
        if err.kind() != std::io::ErrorKind::NotFound && self.unreadable.insert(rel.to_vec()) {
            self.metrics.dropped(DROP_UNREADABLE_DIR);
            tracing::warn!(dir = %crate::shown(rel), error = %err, "cannot read directory; its contents are reported once it becomes readable (checked every --poll-interval)");
        }
    }
}

impl Engine {
    pub fn new(
        cfg: Config,
        out: Output,
        metrics: Metrics,
        stop: Arc<ShutdownRequest>,
        watcher: Option<Watcher>,
        ready: Arc<AtomicBool>,
    ) -> Engine {
        let now = Instant::now();
        let timer_slack = (cfg.debounce / 50).min(MAX_TIMER_SLACK);
        Engine {
            co: Coalescer::new(cfg.debounce),
            rl: RateLimiter::new(cfg.max_events_per_sec, now),
            next_state_save: now,
            state_failing: false,
            journal: None,
            journal_failing: false,
            taint: Vec::new(),
            next_poll: now + cfg.poll_interval,
            mounts: None,
            next_mount_check: now + cfg.poll_interval,
            cfg,
            index: Index::new(),
            out,
            metrics,
            watcher,
            polled: PathSet::default(),
            unreadable: PathSet::default(),
            pending_from: None,
            last_move: None,
            self_opens: HashMap::new(),
            stop,
            raws: Vec::new(),
            carry: Vec::new(),
            carry_since: None,
            carry_waits: HashMap::new(),
            batch_later: HashMap::new(),
            batch_pos: 0,
            batch_stats: HashMap::new(),
            timer_slack,
            ready,
            state_dirty: false,
            reported_coalesced: 0,
            unflushed: false,
            scanned: HashMap::new(),
        }
    }

    fn watch_and_scan(&mut self, base: &[u8], force: bool) -> Index {
        let watching =
            !self.cfg.poll && self.watcher.is_some() && self.polled.covering(base).is_none();
        let mut hook = WatchHook {
            watcher: &mut self.watcher,
            polled: &mut self.polled,
            unreadable: &mut self.unreadable,
            metrics: &self.metrics,
            force,
        };
        scan(&self.cfg.root, base, &self.cfg.ignore, &mut hook, watching)
    }

    /// Initial watch and index; reports changes since the state file, if any.
    pub fn start(&mut self) -> Result<(), EngineError> {
        let t = Instant::now();
        // Read before the scan: a mount made during it is seen at the
        // first check.
        self.mounts = mounts::below(&self.cfg.root);
        self.next_mount_check = Instant::now() + self.cfg.poll_interval;
        // Without a watcher (`--poll`) this places no watch, but still
        // reports unreadable directories.
        let snapshot = self.watch_and_scan(b"", false);
        let mut restored = false;
        if let Some(sf) = self.cfg.state_file.clone() {
            let loaded = Index::load_state(&sf, &self.cfg.root);
            if let Err(e) = &loaded {
                self.metrics.state_load_failures.inc();
                match crate::journal::keep_aside(&sf) {
                    Ok(aside) => {
                        tracing::error!(error = %e, kept = %aside.display(), "unusable state file, kept aside; changes made while stopped are not reported")
                    }
                    Err(ae) => {
                        tracing::error!(error = %e, rename_error = %ae, "unusable state file (it could not be kept aside and is overwritten); changes made while stopped are not reported")
                    }
                }
            }
            let mut journal = Journal::open(&sf);
            match loaded {
                Ok(Some(mut old)) => {
                    let r =
                        journal.replay(&mut old.index, old.generation.as_deref(), old.remounted);
                    let unsure = old.index.forget_tainted(&self.cfg.root, &r.tainted);
                    if unsure > 0 {
                        tracing::warn!(paths = unsure, "the monitor stopped while writing a batch to the stream: its paths are reported as they are now (\"rescan\": true), whatever the stream said");
                    }
                    tracing::info!(entries = old.index.len(), journal_changes = r.applied, file = %sf.display(), "restored index; reporting changes made while stopped");
                    self.index = old.index.with_links();
                    // An inode born since the save is no entry of it.
                    let fresh = snapshot
                        .clone()
                        .against_index_known_at(&self.cfg.root, old.known_at);
                    self.co.reconcile(Vec::new(), fresh, true, Instant::now());
                    restored = true;
                }
                Ok(None) => {
                    tracing::info!(file = %sf.display(), "state file does not exist yet (first start): files present now are indexed without events; the state file is written now and after each change");
                }
                Err(_) => {}
            }
            self.journal = Some(journal);
        }
        if !restored {
            self.index = snapshot.with_links();
        }
        if self.cfg.state_file.is_some() {
            self.out.hold();
            self.index.record_changes();
            // Written at once: after a crash, a restart reports what
            // changed since now, not nothing; after a restart, the journal
            // is folded into the state file.
            self.state_dirty = true;
            self.save_state();
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(
            root = %self.cfg.root.display(),
            entries = self.index.len(),
            watches = self.watches(),
            polled_subtrees = self.polled.len(),
            mode = match &self.watcher {
                Some(w) if !self.cfg.poll => w.name(),
                _ => "poll",
            },
            elapsed_ms = t.elapsed().as_millis() as u64,
            ignore = ?self.cfg.ignore.patterns(),
            monitor_id = %self.out.monitor_id(),
            "watching"
        );
        Ok(())
    }

    /// Runs until a signal or a closed stream.
    pub fn run(&mut self) -> Result<Exit, EngineError> {
        let mut shutdown = false;
        let mut busy = false;
        // While events stream in, the kernel queue is read again no sooner
        // than this (wake-ups, not events, cost most under a steady load).
        let mut hold_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(1);
            for t in [
                self.co.next_deadline().map(|t| t + self.timer_slack),
                self.rl.next_release(),
                self.pending_from.as_ref().map(|p| p.2 + RENAME_PAIR_WAIT),
                self.carry_since.map(|t| t + RENAME_PAIR_WAIT),
                self.state_dirty.then_some(self.next_state_save),
                self.polling().then_some(self.next_poll),
                self.mounts.is_some().then_some(self.next_mount_check),
            ]
            .into_iter()
            .flatten()
            {
                wake = wake.min(t);
            }
            let (events, stop) = self.wait(now, wake, hold_until);
            shutdown |= stop;
            busy = if events && !shutdown {
                if busy && self.timer_slack.is_zero() {
                    // During a burst, let events accumulate briefly so one
                    // wake-up handles many (far fewer system calls per event;
                    // with a debounce window, reads are spaced by `hold_until`).
                    std::thread::sleep(BURST_GATHER);
                }
                let mut n = 0;
                loop {
                    let (read, more) = match self.read_kernel() {
                        Ok(r) => r,
                        Err(e) => return self.stream_error(e),
                    };
                    n += read;
                    if more != Some(true) || n >= BATCH {
                        break;
                    }
                }
                hold_until = (n > 0 && !self.timer_slack.is_zero())
                    .then(|| Instant::now() + self.timer_slack);
                n >= BUSY_BATCH
            } else {
                false
            };
            let now = Instant::now();
            if self
                .carry_since
                .is_some_and(|t| shutdown || now.saturating_duration_since(t) >= RENAME_PAIR_WAIT)
            {
                if let Err(e) = self.flush_carry(shutdown) {
                    return self.stream_error(e);
                }
            }
            if let Some((from, _, t)) = &self.pending_from {
                if shutdown || now.saturating_duration_since(*t) >= RENAME_PAIR_WAIT {
                    let from = from.clone();
                    self.pending_from = None;
                    self.moved_out(from, now);
                }
            }
            self.co.sweep(now);
            if !self.scanned.is_empty() {
                self.scanned
                    .retain(|_, s| now.saturating_duration_since(s.at) < SCANNED_GRACE);
            }
            if self.polling() && now >= self.next_poll {
                self.poll_tick(now);
                self.next_poll = Instant::now() + self.cfg.poll_interval;
            }
            if self.mounts.is_some() && now >= self.next_mount_check {
                self.check_mounts(now);
                self.next_mount_check = Instant::now() + self.cfg.poll_interval;
            }
            if shutdown {
                // Everything the kernel queued before the signal is written
                // before exiting (bounded, should a writer never stop).
                let limit = Instant::now() + DRAIN_LIMIT;
                while Instant::now() < limit {
                    match self.read_kernel() {
                        Ok((_, Some(_))) => {}
                        Ok((_, None)) => break,
                        Err(e) => return self.stream_error(e),
                    }
                }
                if let Some((from, _, _)) = self.pending_from.take() {
                    self.moved_out(from, now);
                }
                return match self.finish(Instant::now()) {
                    Ok(()) => Ok(Exit::Signal),
                    // The reader left before the last lines: as at any other time.
                    Err(e) => self.stream_error(e),
                };
            }
            if let Err(e) = self.emit_ready(now) {
                return self.stream_error(e);
            }
            // Saved soon after each change: a crash re-reports (or, without
            // a state file yet, misses) at most what changed since then.
            if self.state_dirty && Instant::now() >= self.next_state_save {
                self.save_state();
            }
        }
    }

    /// Sleeps until kernel events are queued, a stop is requested or `wake`
    /// came. Until `hold`, kernel events are left queued (then reported as
    /// possibly there). Returns (events queued, stop requested).
    fn wait(&mut self, now: Instant, wake: Instant, hold: Option<Instant>) -> (bool, bool) {
        use nix::poll::{poll, PollFd, PollFlags};
        let held = hold.filter(|h| *h > now && *h <= wake);
        let mut fds = vec![PollFd::new(self.stop.fd(), PollFlags::POLLIN)];
        if let (Some(w), None) = (&self.watcher, held) {
            fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
        }
        let until = held.unwrap_or(wake);
        // Whole milliseconds, rounded up: never wake before a deadline.
        let ms = until
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        let timeout = u16::try_from(ms).unwrap_or(u16::MAX);
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => (fds.get(1).is_some_and(ready), ready(&fds[0])),
            // Timeout (or a signal, handled elsewhere): held events may be there.
            _ => (held.is_some() && self.watcher.is_some(), false),
        }
    }

    /// Reads what the kernel queued once and handles it; events that are due
    /// are written while the batch is handled, so their size and checksum
    /// are taken as close to the kernel event as possible. Returns (events
    /// handled, `None` if nothing was queued else whether more may be waiting).
    fn read_kernel(&mut self) -> Result<(usize, Option<bool>), EngineError> {
        let Some(w) = self.watcher.as_mut() else {
            return Ok((0, None));
        };
        let mut raws = std::mem::take(&mut self.raws);
        // What the last read held back comes first.
        raws.append(&mut self.carry);
        let carried = raws.len();
        let more = match w.read(&mut raws) {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %e, "reading kernel events");
                None
            }
        };
        let read = raws.len() - carried;
        crate::watcher::pair_renames(&mut raws, self.pending_from.as_ref().map(|p| p.1));
        // A rename's new name is queued just after its old one: the events
        // from the old name on wait for the next read (at most
        // RENAME_PAIR_WAIT), so that the two pair up even when other
        // processes' events are queued in between.
        self.carry = crate::watcher::split_unpaired_tail(&mut raws);
        // What the held-back events remove or replace happens after this
        // batch too.
        let later = removed_or_replaced(&raws, &self.carry);
        self.handle_batch(raws, later)?;
        // Waited for from now on (handling the batch may have taken long),
        // or since first held if already held before this read.
        self.note_carry_waits(Instant::now());
        Ok((read, more))
    }

    /// Handles what the last read held back, now that its rename's new name
    /// did not come in time: the old name was moved out of the root. What
    /// follows it is handled up to the next old name whose new name is not
    /// read yet, which waits in turn (its new name may be the next event
    /// queued); with `all`, everything is handled (at exit).
    fn flush_carry(&mut self, all: bool) -> Result<(), EngineError> {
        self.carry_since = None;
        if self.carry.is_empty() {
            self.carry_waits.clear();
            return Ok(());
        }
        let mut raws = std::mem::take(&mut self.carry);
        if !all {
            let now = Instant::now();
            let waits = &self.carry_waits;
            let mut rest = raws.split_off(1);
            self.carry = crate::watcher::split_unpaired_tail_if(&mut rest, |cookie| {
                waits
                    .get(&cookie)
                    .is_some_and(|t| now.saturating_duration_since(*t) < RENAME_PAIR_WAIT)
            });
            raws.append(&mut rest);
        }
        let later = removed_or_replaced(&raws, &self.carry);
        self.handle_batch(raws, later)?;
        if let Some((from, _, _)) = self.pending_from.take() {
            // Its partner was already waited for.
            self.moved_out(from, Instant::now());
        }
        self.note_carry_waits(Instant::now());
        Ok(())
    }

    /// Records since when the old names held back wait (`now` for those
    /// held for the first time), forgets the others, and sets
    /// `carry_since` to the wait of the first.
    fn note_carry_waits(&mut self, now: Instant) {
        if self.carry.is_empty() {
            self.carry_waits.clear();
            self.carry_since = None;
            return;
        }
        let mut kept = HashMap::new();
        for r in &self.carry {
            if let Raw::RenameFrom { cookie, .. } = r {
                let since = self.carry_waits.get(cookie).copied().unwrap_or(now);
                kept.insert(*cookie, since);
            }
        }
        self.carry_since = match self.carry.first() {
            Some(Raw::RenameFrom { cookie, .. }) => kept.get(cookie).copied(),
            _ => None,
        }
        .or(Some(now));
        self.carry_waits = kept;
    }

    /// Handles one batch of kernel events, in order; `later`: what its
    /// events and those queued after them remove or replace (see
    /// [`removed_or_replaced`]).
    fn handle_batch(
        &mut self,
        mut raws: Vec<Raw>,
        later: HashMap<RelPath, usize>,
    ) -> Result<(), EngineError> {
        // One clock reading for the whole batch (read in one go).
        let received = Instant::now();
        self.batch_later = later;
        for (i, raw) in raws.drain(..).enumerate() {
            self.batch_pos = i;
            self.co.received = Some(received);
            let overflow = matches!(raw, Raw::Overflow);
            let r = self.handle_raw(raw, received);
            self.co.received = None;
            if let Err(e) = r {
                self.end_batch();
                if let EngineError::RootGone(_) = e {
                    // Write what is pending before giving up.
                    let _ = self.finish(Instant::now());
                }
                return Err(e);
            }
            if let Err(e) = self.pop_due(received) {
                self.end_batch();
                return Err(e);
            }
            if overflow {
                // The rest of the batch was queued behind the overflow:
                // the rescan already holds what it describes.
                break;
            }
        }
        self.end_batch();
        if self.raws.capacity() < raws.capacity() {
            self.raws = raws;
        }
        Ok(())
    }

    /// Forgets what was known only for the batch just handled.
    fn end_batch(&mut self) {
        self.batch_later.clear();
        self.batch_stats.clear();
    }

    /// Writes everything pending (debounce window, rate limit) and saves the state.
    fn finish(&mut self, now: Instant) -> Result<(), EngineError> {
        self.flush_carry(true)?;
        if let Some((from, _, _)) = self.pending_from.take() {
            self.moved_out(from, now);
        }
        // Everything, in the order it is written, so that what is still to
        // come (drained, no longer queued) is known to replace what an
        // earlier line is about.
        let mut all = Vec::new();
        for it in self.co.drain_all(now) {
            all.extend(self.rl.admit(it, now));
        }
        all.extend(self.rl.drain_all(now));
        self.emit_items(all)?;
        self.checkpoint()?;
        self.save_state();
        Ok(())
    }

    /// Writes the lines held since the last flush to the stream, between
    /// the journal's taint line naming their paths and the changes they
    /// report: a kill at any moment leaves a journal that either holds
    /// what the stream said, or names the paths it may have said something
    /// about, which the restart then reports as they are (see
    /// [`Index::forget_tainted`]).
    fn checkpoint(&mut self) -> Result<(), EngineError> {
        let paths = std::mem::take(&mut self.taint);
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.taint(&paths) {
                self.metrics.state_save_failures.inc();
                if !std::mem::replace(&mut self.journal_failing, true) {
                    tracing::error!(file = %j.path().display(), error = %e, "cannot write the state journal; until it works again (at the latest after the next state save), a restart after a kill may miss changes undone while the monitor was down");
                }
            }
        }
        self.out.flush()?;
        self.journal_append();
        Ok(())
    }

    /// Appends the index's changes to the journal: called only once the
    /// lines reporting them were written to the stream (flushed), so that
    /// the journal never says more than the stream did. A kill after the
    /// flush and before this append leaves the batch's taint line without
    /// its end: the restart reports those paths as they are on disk.
    fn journal_append(&mut self) {
        let changes = self.index.take_changes();
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        match j.append(changes) {
            Ok(()) => {
                if std::mem::take(&mut self.journal_failing) {
                    tracing::info!(file = %j.path().display(), "state journal written again");
                }
            }
            Err(e) => {
                self.metrics.state_save_failures.inc();
                if !std::mem::replace(&mut self.journal_failing, true) {
                    tracing::error!(file = %j.path().display(), error = %e, "cannot write the state journal; until it works again (at the latest after the next state save), a restart after a kill may miss changes undone while the monitor was down");
                }
            }
        }
    }

    fn polling(&self) -> bool {
        self.cfg.poll || !self.polled.is_empty() || !self.unreadable.is_empty()
    }

    fn stream_error(&mut self, e: EngineError) -> Result<Exit, EngineError> {
        match e {
            EngineError::Output(OutputError::Closed) => {
                // The line that failed, and what was buffered with it, never
                // reached a reader: the index now counts them as told, so it
                // is not saved. The state file written last (after a complete
                // flush) stays, and the next start reports them again.
                Ok(Exit::Closed)
            }
            e => Err(e),
        }
    }

    /// Writes (without flushing) every queued event whose time has come.
    fn pop_due(&mut self, now: Instant) -> Result<bool, EngineError> {
        while let Some(item) = self.co.pop_ready(now) {
            let admitted = self.rl.admit(item, now);
            if self.emit_items(admitted)? > 0 {
                self.unflushed = true;
            }
        }
        Ok(self.unflushed)
    }

    fn emit_ready(&mut self, now: Instant) -> Result<(), EngineError> {
        self.unflushed |= self.pop_due(now)?;
        let released = self.rl.release(now);
        if self.emit_items(released)? > 0 {
            self.unflushed = true;
        }
        if self.unflushed {
            self.checkpoint()?;
            self.unflushed = false;
        }
        let merged = self.co.coalesced + self.rl.coalesced;
        if merged > self.reported_coalesced {
            self.metrics
                .coalesced
                .inc_by(merged - self.reported_coalesced);
            self.reported_coalesced = merged;
        }
        self.metrics
            .queue_depth
            .set((self.co.len() + self.rl.held_len()) as i64);
        Ok(())
    }

    fn save_state(&mut self) {
        let Some(sf) = &self.cfg.state_file else {
            self.state_dirty = false;
            return;
        };
        let t = Instant::now();
        let generation = uuid::Uuid::now_v7().to_string();
        let r = self
            .index
            .save_generation(sf, &self.cfg.root, Some(&generation));
        let took = t.elapsed();
        self.next_state_save = Instant::now()
            + self
                .cfg
                .state_interval
                .max(took.saturating_mul(STATE_SAVE_SPACING));
        match r {
            Ok(()) => {
                self.state_dirty = false;
                // The state file holds every change so far.
                drop(self.index.take_changes());
                if let Some(j) = self.journal.as_mut() {
                    if let Err(e) = j.restart(&generation) {
                        self.metrics.state_save_failures.inc();
                        tracing::warn!(file = %j.path().display(), error = %e, "could not start the state journal again (until the next save, a restart after a crash reports again what changed since this save)");
                    }
                }
                tracing::debug!(
                    entries = self.index.len(),
                    elapsed_ms = took.as_secs_f64() * 1000.0,
                    "state saved"
                );
                if std::mem::take(&mut self.state_failing) {
                    tracing::info!(file = %sf.display(), "state file written again");
                }
            }
            Err(e) => {
                self.metrics.state_save_failures.inc();
                if !std::mem::replace(&mut self.state_failing, true) {
                    tracing::error!(error = %e, "could not persist the index (retried after each change; a restart meanwhile re-reports or misses changes since the last good save)");
                } else {
                    tracing::debug!(error = %e, "could not persist the index");
                }
            }
        }
    }

    /// For paths from kernel events: they name an entry of a watched
    /// directory, and ignored directories are never watched, so only the
    /// path itself needs matching (one glob match instead of one per ancestor).
    fn ignored(&self, p: &[u8]) -> bool {
        self.cfg.ignore.matches_self(p)
    }

    fn handle_raw(&mut self, raw: Raw, now: Instant) -> Result<(), EngineError> {
        tracing::trace!(?raw, "kernel event");
        // Events that never complete or break a rename pair.
        match &raw {
            Raw::SelfMoved { path } => {
                if path.is_empty() {
                    return Err(EngineError::RootGone(self.cfg.root.clone()));
                }
                return Ok(());
            }
            Raw::Open { path } => {
                if let Some(n) = self.self_opens.get_mut(path) {
                    *n -= 1;
                    if *n == 0 {
                        self.self_opens.remove(path);
                    }
                    return Ok(());
                }
                if self.cfg.access && !path.is_empty() && !self.ignored(path) {
                    self.co.access(path.clone(), now);
                }
                return Ok(());
            }
            Raw::Attrib { path } => {
                // A fresh look, not the batch's: a line written since the
                // batch's look took a newer ctime into the index, which an
                // older one must not replace.
                if !path.is_empty() && self.learns_ctime() && !self.ignored(path) {
                    if let Some((seen, links)) = self.lstat_links(path) {
                        self.learn_ctime(path, seen, links);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        if !matches!(raw, Raw::RenameFrom { .. } | Raw::RenameTo { .. }) {
            self.last_move = None;
        }
        if let Some((from, cookie, _)) = self.pending_from.take() {
            match &raw {
                Raw::RenameTo {
                    path,
                    cookie: c,
                    dir,
                } if *c == cookie => {
                    let dir = *dir;
                    let to = path.clone();
                    if let Some(last) = self.last_move.take() {
                        if from == last.to && to == last.from && self.is_exchange(&last) {
                            self.exchanged(last.from, last.to, now);
                            return Ok(());
                        }
                    }
                    // What is moved, to recognise an exchange by: its
                    // inode as reported, else what holds the new name now.
                    let ino = self
                        .index
                        .get(&from)
                        .map(|e| e.ino)
                        .filter(|i| *i != 0)
                        .or_else(|| self.lstat(&to).map(|e| e.ino));
                    // Whether the new name was known to hold another entry.
                    let replaced = self
                        .index
                        .get(&to)
                        .is_some_and(|e| ino.is_none_or(|i| e.ino != i));
                    self.moved(from.clone(), to.clone(), dir, now);
                    self.last_move = Some(LastMove {
                        from,
                        to,
                        ino,
                        replaced,
                    });
                    return Ok(());
                }
                _ => self.moved_out(from, now),
            }
        }
        match raw {
            Raw::Overflow => {
                self.metrics.rescans.inc();
                self.metrics.dropped(DROP_KERNEL_OVERFLOW);
                tracing::warn!("event queue overflowed (the kernel's, fs.inotify.max_queued_events; or, with --backend=notify, its own while the stream was blocked); rescanning the tree");
                self.discard_queued();
                let snapshot = self.watch_and_scan(b"", true);
                // Directories that vanished lost their watches with them.
                let stale: Vec<RelPath> = self
                    .watcher
                    .iter()
                    .flat_map(|w| w.paths())
                    .filter(|p| {
                        !p.is_empty() && snapshot.get(p).is_none_or(|e| e.kind != Kind::Dir)
                    })
                    .cloned()
                    .collect();
                for p in stale {
                    self.drop_watches(&p);
                }
                self.co.reconcile(Vec::new(), snapshot, true, now);
            }
            Raw::Create { path, dir } => {
                if path.is_empty() || self.ignored(&path) {
                    return Ok(());
                }
                if !dir {
                    // Size and checksum are read when the event is written.
                    // What is not a regular file (a symlink, a FIFO, a
                    // socket) keeps the kind seen now, should it be gone
                    // by then. A new hard link moved the ctime of the
                    // file's other names, with no event of its own.
                    let seen = self.batch_lstat_links(&path);
                    if seen.is_some_and(|(e, l)| l > 1 && e.kind == Kind::File) {
                        // A fresh look for the ctime, as for an attribute
                        // change (hard links are rare).
                        let fresh = self.lstat_links(&path);
                        if let Some((e, links)) =
                            fresh.filter(|(e, l)| *l > 1 && e.kind == Kind::File)
                        {
                            self.learn_ctime(&path, e, links);
                        }
                    }
                    let seen = seen
                        .map(|(e, _)| e)
                        .filter(|e| matches!(e.kind, Kind::Symlink | Kind::Other));
                    self.co.create(path, false, seen, true, now);
                    return Ok(());
                }
                match std::fs::symlink_metadata(abs_path(&self.cfg.root, &path)) {
                    Ok(m) if m.is_dir() => {
                        let e = Entry::from_metadata(&m);
                        self.co.create(path.clone(), true, Some(e), false, now);
                        let snap = self.watch_and_scan(&path, false);
                        self.co.reconcile(path, snap, false, now);
                    }
                    Ok(_) => {
                        // The kernel created a directory here; what the path
                        // holds now came later (the directory was moved away
                        // or removed, and its own event follows in the
                        // batch): as when nothing is there, the create is of
                        // a directory, and the later entry has its own events.
                        self.co.create(path, true, None, false, now);
                    }
                    Err(e) => {
                        self.co.create(path.clone(), true, None, false, now);
                        if crate::watcher::is_unreadable(&e) {
                            // Inside a directory the monitor cannot search:
                            // recorded as unreadable by the attempt to watch it.
                            let snap = self.watch_and_scan(&path, false);
                            self.co.reconcile(path, snap, false, now);
                        }
                    }
                }
            }
            Raw::Modify { path } => {
                if !path.is_empty() && !self.ignored(&path) {
                    self.co.modify(path, now);
                }
            }
            Raw::CloseWrite { path } => {
                if !path.is_empty() && !self.ignored(&path) {
                    // The inode written: its content, and only its, is
                    // reported (the path may hold another file by then).
                    let written = if self.batch_replaced_later(&path) {
                        None
                    } else {
                        self.batch_lstat_links(&path)
                            .map(|(e, _)| e)
                            .filter(|e| e.kind == Kind::File)
                            .map(|e| e.ino)
                    };
                    self.co.close_write(path, None, written, now);
                }
            }
            Raw::Remove { path, dir } => {
                if path.is_empty() {
                    return Err(EngineError::RootGone(self.cfg.root.clone()));
                }
                if !self.ignored(&path) {
                    if dir {
                        // A file holds no watch.
                        self.drop_watches(&path);
                    }
                    self.co.delete(path, dir, now);
                }
            }
            Raw::RenameFrom { path, cookie } => {
                self.pending_from = Some((path, cookie, now));
            }
            Raw::RenameTo { path, dir, .. } => self.moved_in(path, dir, now),
            Raw::SelfMoved { .. } | Raw::Open { .. } | Raw::Attrib { .. } => {}
        }
        Ok(())
    }

    /// A change of the status of the inode now at `path` (`seen`, with
    /// `links` names), which no line reports: every indexed name of that
    /// inode that still holds it, of the same kind, size and mtime, takes
    /// its new ctime, so that no later scan reports it as an `update`.
    /// A name whose size or mtime changed is left to its write's events.
    /// Nothing is learnt while any event is still to be written: a write
    /// that kept the size and put the mtime back would otherwise lose the
    /// ctime that finds it again should the monitor be killed before its
    /// line is out.
    fn learn_ctime(&mut self, path: &[u8], seen: Entry, links: u64) {
        if !self.learns_ctime() {
            return;
        }
        let mut names = vec![path.to_vec()];
        if links > 1 && seen.kind == Kind::File {
            names.extend(
                self.index
                    .names_of(seen.dev, seen.ino)
                    .into_iter()
                    .filter(|n| n != path),
            );
        }
        for name in names {
            let Some(held) = self.index.get(&name).copied() else {
                continue;
            };
            if held.kind == seen.kind
                && held.ino == seen.ino
                && held.dev == seen.dev
                && held.size == seen.size
                && held.mtime_ns == seen.mtime_ns
                && held.ctime_ns != seen.ctime_ns
            {
                self.index.insert(
                    name,
                    Entry {
                        ctime_ns: seen.ctime_ns,
                        ..held
                    },
                );
                self.state_dirty = self.cfg.state_file.is_some();
            }
        }
    }

    /// Whether [`Engine::learn_ctime`] may learn now: no event is still to
    /// be written.
    fn learns_ctime(&self) -> bool {
        self.co.is_empty() && self.rl.held_len() == 0
    }

    /// Drops the kernel events queued behind an overflow notice, before
    /// the rescan that follows it: they describe changes made before the
    /// rescan, which sees their outcome, and the kernel may have lost some
    /// of them without a second notice (it queues none while one is
    /// unread). Handled after the rescan, they would replay a history with
    /// holes over it: moves of names already gone, files that no longer
    /// exist. Bounded by [`OVERFLOW_DRAIN_LIMIT`] under a write storm; what
    /// is queued after the drain is checked against the rescan as usual.
    fn discard_queued(&mut self) {
        self.carry.clear();
        self.carry_since = None;
        self.carry_waits.clear();
        // Own opens counted so far had their events among those dropped.
        self.self_opens.clear();
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let limit = Instant::now() + OVERFLOW_DRAIN_LIMIT;
        let mut scratch = Vec::new();
        let mut dropped = 0usize;
        while Instant::now() < limit {
            scratch.clear();
            match w.read(&mut scratch) {
                Ok(Some(_)) => dropped += scratch.len(),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading kernel events");
                    break;
                }
            }
        }
        tracing::debug!(
            dropped,
            "kernel events queued behind the overflow dropped; the rescan covers them"
        );
    }

    /// Watches held.
    fn watches(&self) -> usize {
        self.watcher.as_ref().map_or(0, Watcher::len)
    }

    /// Removes the watches at or below `p` (usually the watcher already
    /// dropped them on the delete or rename event).
    fn drop_watches(&mut self, p: &[u8]) {
        if let Some(w) = self.watcher.as_mut() {
            w.unwatch_subtree(p);
        }
        self.metrics.watches.set(self.watches() as i64);
        if self.polled.remove_subtree(p) > 0 {
            self.metrics.polled_subtrees.set(self.polled.len() as i64);
        }
        self.unreadable.remove_subtree(p);
    }

    fn moved_out(&mut self, from: RelPath, now: Instant) {
        if from.is_empty() || self.ignored(&from) {
            return;
        }
        self.drop_watches(&from);
        self.co.delete(from, false, now);
    }

    /// `dir`: whether a directory arrived, when the kernel says.
    fn moved_in(&mut self, to: RelPath, dir: Option<bool>, now: Instant) {
        if to.is_empty() || self.ignored(&to) {
            return;
        }
        match std::fs::symlink_metadata(abs_path(&self.cfg.root, &to)) {
            Ok(m) => {
                let e = Entry::from_metadata(&m);
                self.co
                    .create(to.clone(), e.kind == Kind::Dir, Some(e), false, now);
                if e.kind == Kind::Dir {
                    let snap = self.watch_and_scan(&to, false);
                    self.co.reconcile(to, snap, false, now);
                }
            }
            Err(e) => {
                let dir = dir == Some(true);
                self.co.create(to.clone(), dir, None, false, now);
                if dir && crate::watcher::is_unreadable(&e) {
                    // Inside a directory the monitor cannot search:
                    // recorded as unreadable by the attempt to watch it.
                    let snap = self.watch_and_scan(&to, false);
                    self.co.reconcile(to, snap, false, now);
                }
            }
        }
    }

    /// `dir`: whether a directory was moved, when the kernel says.
    fn moved(&mut self, from: RelPath, to: RelPath, dir: Option<bool>, now: Instant) {
        match (self.ignored(&from), self.ignored(&to)) {
            (true, true) => return,
            (true, false) => return self.moved_in(to, dir, now),
            (false, true) => return self.moved_out(from, now),
            (false, false) => {}
        }
        // The watcher dropped the watches of a moved directory; re-place them at
        // the new name and scan it, since events in between were not seen.
        if let Some(w) = self.watcher.as_mut() {
            w.unwatch_subtree(&from);
            w.unwatch_subtree(&to);
        }
        self.polled.move_subtree(&from, &to);
        self.unreadable.move_subtree(&from, &to);
        // A file moved to a name that holds a directory again by now (an
        // exchange right after): the kernel queued how that directory got
        // there, whose handling reports and scans it. Without the kernel's
        // word (notify), what the old name held, if this batch also holds
        // the name's next change.
        let file = dir.map_or_else(
            || {
                self.index.get(&from).is_some_and(|e| e.kind != Kind::Dir)
                    && self.batch_replaced_later(&to)
            },
            |d| !d,
        );
        let dest = std::fs::symlink_metadata(abs_path(&self.cfg.root, &to))
            .ok()
            .filter(|m| !(file && m.is_dir()));
        if let Some(m) = &dest {
            // A name created and renamed at once was never looked at: what
            // arrived at `to` is what was created.
            self.co.created_as(&from, Entry::from_metadata(m));
        }
        self.co.moved(from, to.clone(), now);
        if dest.is_some_and(|m| m.is_dir()) {
            let snap = self.watch_and_scan(&to, false);
            self.co.reconcile(to, snap, false, now);
        }
        self.metrics.watches.set(self.watches() as i64);
    }

    /// Whether `b → a` right after `a → b` is the second half of an
    /// exchange. What was moved to `b` must still be there (after a plain
    /// `mv a b; mv b a`, `b` is gone or is another file), and `a` must hold
    /// something else, or, when `a` is already gone again (an exchange
    /// followed at once by the removal of the old copy), `b` must have held
    /// another known entry before. The same entry renamed back and forth
    /// faster than the monitor reads (`mv lib aside; mv aside lib` in a
    /// loop) is at one of the names only, and `aside` was never known.
    fn is_exchange(&self, last: &LastMove) -> bool {
        let Some(ino) = last.ino else {
            return false;
        };
        if self.lstat(&last.to).is_none_or(|e| e.ino != ino) {
            return false;
        }
        match self.lstat(&last.from) {
            Some(e) => e.ino != ino,
            None => last.replaced,
        }
    }

    /// `a` and `b` swapped places. `move a → b` is already queued; `a` now
    /// holds what `b` held, reported as its `create` (and, for a directory,
    /// a `create` for everything below it), so that replaying the stream
    /// gives both names. Both names are watched again: each half of the
    /// exchange dropped the watches below its source.
    fn exchanged(&mut self, a: RelPath, b: RelPath, now: Instant) {
        tracing::debug!(a = %crate::shown(&a), b = %crate::shown(&b), "names exchanged");
        if self.ignored(&a) {
            return;
        }
        if let Some(w) = self.watcher.as_mut() {
            w.unwatch_subtree(&a);
        }
        match self.index.get(&b).copied() {
            // Already removed (the old copy of an atomic replace, deleted at
            // once): it held what `b` held, which the index still records
            // (the move to `b` is not written yet). Its delete follows.
            Some(old) if self.lstat(&a).is_none() => {
                self.co
                    .create(a, old.kind == Kind::Dir, Some(old), false, now);
            }
            _ => self.moved_in(a, None, now),
        }
        if !self.ignored(&b) && self.lstat(&b).is_some_and(|e| e.kind == Kind::Dir) {
            let snap = self.watch_and_scan(&b, false);
            self.co.reconcile(b, snap, false, now);
        }
        self.metrics.watches.set(self.watches() as i64);
    }

    fn poll_tick(&mut self, now: Instant) {
        if self.cfg.poll {
            // Warns once per directory that turned unreadable.
            let snap = self.watch_and_scan(b"", false);
            let mut unreadable = PathSet::default();
            for d in snap.unread() {
                unreadable.insert(d.clone());
            }
            self.unreadable = unreadable;
            self.co.reconcile(Vec::new(), snap, false, now);
            return;
        }
        self.retry_unreadable(now);
        let roots: Vec<RelPath> = self.polled.iter().cloned().collect();
        for r in roots {
            match std::fs::symlink_metadata(abs_path(&self.cfg.root, &r)) {
                Ok(m) if m.is_dir() => {
                    let snap = scan(&self.cfg.root, &r, &self.cfg.ignore, &mut NoHook, false);
                    self.co.reconcile(r, snap, false, now);
                }
                _ => {
                    // Gone: its parent's watch reports the delete.
                    self.polled.remove_subtree(&r);
                    self.metrics.polled_subtrees.set(self.polled.len() as i64);
                }
            }
        }
    }

    /// Compares the mount table with the last one. A directory below the
    /// root that a file system was mounted on (or unmounted from) now shows
    /// other contents, and the watches placed on what it showed before see
    /// nothing of them: it is watched again and rescanned, and the
    /// differences are reported with `rescan: true`.
    fn check_mounts(&mut self, now: Instant) {
        let (Some(old), Some(new)) = (&self.mounts, mounts::below(&self.cfg.root)) else {
            return;
        };
        let (mounted, unmounted) = mounts::changes(old, &new);
        self.mounts = Some(new);
        if mounted.is_empty() && unmounted.is_empty() {
            return;
        }
        let mut dirs: Vec<RelPath> = Vec::new();
        for (p, was_mounted) in mounted
            .into_iter()
            .map(|p| (p, true))
            .chain(unmounted.into_iter().map(|p| (p, false)))
        {
            if self.cfg.ignore.is_ignored(&p) {
                continue;
            }
            self.metrics.mount_changes.inc();
            let shown = crate::shown(&p);
            let is_dir = self.lstat(&p).is_some_and(|e| e.kind == Kind::Dir);
            match (was_mounted, is_dir) {
                (true, true) => {
                    tracing::warn!(path = %shown, "a file system was mounted below the root after start; watching it and reporting what it holds (rescan: true)")
                }
                (false, true) => {
                    tracing::warn!(path = %shown, "a file system below the root was unmounted; watching the directory underneath again and reporting what it holds (rescan: true)")
                }
                (true, false) => {
                    tracing::warn!(path = %shown, "a file was mounted over a file below the root after start; changes made through that mount are not seen")
                }
                (false, false) => tracing::info!(path = %shown, "a mount below the root is gone"),
            }
            if is_dir {
                dirs.push(p);
            }
        }
        if self.cfg.poll {
            // Every scan of the tree already reads what the mounts hold.
            return;
        }
        dirs.sort();
        dirs.dedup();
        // A change below another one is covered by the rescan of the upper one.
        let mut kept: Vec<RelPath> = Vec::new();
        for d in dirs {
            if !kept.iter().any(|k| crate::index::is_within(&d, k)) {
                kept.push(d);
            }
        }
        for d in kept {
            // The watches below `d` are on directories the mount hides (or,
            // after an unmount, are gone): placed again on what `d` shows now.
            if let Some(w) = self.watcher.as_mut() {
                w.unwatch_subtree(&d);
            }
            let snap = self.watch_and_scan(&d, false);
            self.co.reconcile(d, snap, true, now);
        }
        self.metrics.watches.set(self.watches() as i64);
    }

    /// Looks again at directories that could not be read: one that became
    /// readable is watched and scanned, and what it holds is reported.
    fn retry_unreadable(&mut self, now: Instant) {
        let dirs: Vec<RelPath> = self.unreadable.iter().cloned().collect();
        for r in dirs {
            if !self.unreadable.contains(&r) {
                continue; // dropped with an ancestor retried before it
            }
            match std::fs::symlink_metadata(abs_path(&self.cfg.root, &r)) {
                Ok(m) if m.is_dir() && !self.cfg.ignore.is_ignored(&r) => {
                    let snap = self.watch_and_scan(&r, false);
                    let mut still: Vec<RelPath> = snap.unread().cloned().collect();
                    // Read, but its watch was refused (opened up between the
                    // two): looked at again until it is watched.
                    if let Some(w) = &self.watcher {
                        still.extend(
                            self.unreadable
                                .iter()
                                .filter(|p| {
                                    crate::index::is_within(p, &r)
                                        && (**p == r
                                            || snap.get(p).is_some_and(|e| e.kind == Kind::Dir))
                                        && self.polled.covering(p).is_none()
                                        && !w.is_watched(p)
                                })
                                .cloned()
                                .collect::<Vec<_>>(),
                        );
                    }
                    self.unreadable.remove_subtree(&r);
                    for u in still {
                        self.unreadable.insert(u);
                    }
                    if self.unreadable.contains(&r) {
                        // Still unreadable (e.g. a root-owned lost+found):
                        // nothing new was seen. A reconcile would release
                        // held events and end the merging of writes at
                        // every tick, for as long as it stays so.
                        continue;
                    }
                    tracing::info!(dir = %crate::shown(&r), "directory readable again; watching it");
                    // Its changes happened while its events could not be seen.
                    self.co.reconcile(r, snap, true, now);
                }
                // Still inside a directory the monitor cannot search.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                // Gone or replaced: its parent's watch reports that.
                _ => {
                    self.unreadable.remove_subtree(&r);
                }
            }
        }
    }

    /// Whether a kernel event after the one being handled in this batch
    /// removes or replaces `p` (or a directory above it).
    fn batch_replaced_later(&self, p: &[u8]) -> bool {
        if self.batch_later.is_empty() {
            return false;
        }
        let later = |q: &[u8]| self.batch_later.get(q).is_some_and(|i| *i > self.batch_pos);
        later(p) || crate::index::ancestors(p).any(later)
    }

    /// Whether the file a `create` or `update` is about is no longer at its
    /// path: an event already known, but not yet written, removes or
    /// replaces it (`later`: the events written after this one, at `pos`,
    /// in the same call; see [`replaced_positions`]).
    fn superseded(&self, ev: &Logical, pos: usize, later: &HashMap<&[u8], usize>) -> bool {
        let p = match ev {
            Logical::Create { path, .. } | Logical::Update { path, .. } => path,
            Logical::Move { to, .. } => to,
            _ => return false,
        };
        let after = |q: &[u8]| later.get(q).is_some_and(|i| *i > pos);
        self.co.replaced_later(p)
            || self.batch_replaced_later(p)
            || after(p)
            || crate::index::ancestors(p).any(after)
            || after(b"")
    }

    /// Writes `items` in order. Returns how many events were handed to
    /// [`Engine::emit`].
    fn emit_items(&mut self, items: Vec<Item>) -> Result<usize, EngineError> {
        let n = items.len();
        // Writing an event changes nothing these depend on: all are
        // judged first, against paths borrowed from the events.
        let superseded: Vec<bool> = {
            let later = replaced_positions(&items);
            items
                .iter()
                .enumerate()
                .map(|(pos, (ev, _))| self.superseded(ev, pos, &later))
                .collect()
        };
        for ((ev, received), superseded) in items.into_iter().zip(superseded) {
            self.emit(ev, received, superseded)?;
        }
        Ok(n)
    }

    /// Resolves one logical event against the index and the disk and writes
    /// the resulting lines. `superseded`: the file it is about was removed
    /// or replaced after it (see [`Engine::superseded`]).
    fn emit(
        &mut self,
        ev: Logical,
        received: Instant,
        superseded: bool,
    ) -> Result<(), EngineError> {
        tracing::trace!(?ev, superseded, "due");
        let drafts = self.apply(ev, superseded);
        if drafts.is_empty() {
            return Ok(());
        }
        self.state_dirty = self.cfg.state_file.is_some();
        let n = drafts.len();
        for d in drafts {
            if self.journal.is_some() {
                if let Some(from) = &d.from {
                    self.taint.push((from.clone(), d.kind));
                }
                self.taint.push((d.path.clone(), d.kind));
            }
            self.out.write(&d)?;
            self.metrics.published(d.event_type);
            self.metrics
                .latency
                .observe(received.elapsed().as_secs_f64());
        }
        self.rl.charge(n);
        if self.out.held_len() >= HELD_LIMIT {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The other known names of a file written through `path` (hard links):
    /// each gets an `update` with the same size and checksum, since it
    /// holds the same content.
    fn other_links(&mut self, path: &[u8], e: &Entry, out: &mut Vec<Draft>) {
        let mut names = self.index.names_of(e.dev, e.ino);
        names.retain(|k| k.as_slice() != path);
        let Some(first) = out.first() else {
            return;
        };
        let (size, checksum) = (first.size, first.checksum.clone());
        for name in names {
            // Still the same file (an index entry may be older than a
            // replacement whose events are not handled yet); an inode
            // number names a file only on one file system.
            let Some(now) = self
                .lstat(&name)
                .filter(|x| x.ino == e.ino && x.dev == e.dev)
            else {
                continue;
            };
            self.index.insert(name.clone(), now);
            out.push(Draft {
                event_type: EventType::Update,
                kind: Kind::File,
                path: name,
                from: None,
                size,
                checksum: checksum.clone(),
                rescan: false,
            });
        }
    }

    /// `lstat` and the number of hard links.
    fn lstat_links(&self, p: &[u8]) -> Option<(Entry, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(abs_path(&self.cfg.root, p))
            .ok()
            .map(|m| (Entry::from_metadata(&m), m.nlink()))
    }

    /// [`Engine::lstat_links`] for a kernel event of the batch being
    /// handled: one look per path and batch (see `batch_stats`).
    fn batch_lstat_links(&mut self, p: &[u8]) -> Option<(Entry, u64)> {
        if let Some(seen) = self.batch_stats.get(p) {
            return *seen;
        }
        let seen = self.lstat_links(p);
        self.batch_stats.insert(p.to_vec(), seen);
        seen
    }

    fn lstat(&self, p: &[u8]) -> Option<Entry> {
        std::fs::symlink_metadata(abs_path(&self.cfg.root, p))
            .ok()
            .map(|m| Entry::from_metadata(&m))
    }

    /// Size and checksum for a file's event (checksums only for regular files).
    fn content(&mut self, p: &[u8], e: &Entry) -> (Option<u64>, Option<String>) {
        match e.kind {
            Kind::Dir => (None, None),
            Kind::File if self.cfg.checksum != ChecksumAlgo::None => {
                // Only the inode just looked at is read: a file renamed
                // over the path meanwhile is not this event's content.
                let (opened, res) = checksum_file_opened(
                    &abs_path(&self.cfg.root, p),
                    self.cfg.checksum,
                    self.cfg.checksum_max_bytes,
                    (e.ino != 0).then_some(e.ino),
                );
                if opened && self.cfg.access {
                    // Our own open arrives later as a kernel event; it is not an access.
                    *self.self_opens.entry(p.to_vec()).or_insert(0) += 1;
                }
                match res {
                    Ok(Some(sum)) => {
                        self.metrics.checksum_bytes.inc_by(sum.size);
                        (Some(sum.size), Some(sum.value))
                    }
                    Ok(None) => (Some(e.size), None),
                    Err(err) => {
                        tracing::debug!(path = %crate::shown(p), error = %err, "no checksum");
                        if moved_away(&err) {
                            // The scan that finds it again reports its content.
                            self.index.mark_unread(p);
                        }
                        (Some(e.size), None)
                    }
                }
            }
            _ => (Some(e.size), None),
        }
    }

    fn draft(&mut self, t: EventType, p: &[u8], e: &Entry, known: bool, rescan: bool) -> Draft {
        let writes = matches!(t, EventType::Create | EventType::Update);
        if writes && !known && self.cfg.checksum != ChecksumAlgo::None {
            self.index.mark_unread(p);
        }
        let (size, checksum) = if known && writes {
            self.content(p, e)
        } else if known && e.kind != Kind::Dir {
            (Some(e.size), None)
        } else {
            (None, None)
        };
        Draft {
            event_type: t,
            kind: e.kind,
            path: p.to_vec(),
            from: None,
            size,
            checksum,
            rescan,
        }
    }

    /// A `move` line. When the destination is there (`present`), it carries
    /// the size and checksum of what it holds now: a file renamed into place
    /// (an atomic save) says what was saved, which its `create` under the
    /// temporary name usually came too late to read.
    fn move_draft(
        &mut self,
        from: RelPath,
        to: RelPath,
        e: Entry,
        present: bool,
        rescan: bool,
    ) -> Draft {
        let (size, checksum) = if present {
            self.content(&to, &e)
        } else {
            // What the index knew of it (nothing when its inode never was).
            ((e.kind != Kind::Dir && e.ino != 0).then_some(e.size), None)
        };
        Draft {
            event_type: EventType::Move,
            kind: e.kind,
            path: to,
            from: Some(from),
            size,
            checksum,
            rescan,
        }
    }

    /// An entry arrived at `path`, which the index already holds (`old`):
    /// a name moved in over an existing one (from outside the root, an
    /// ignored or polled directory), or a create event for an entry a scan
    /// already reported. `arrived`: what the event found at the path.
    ///
    /// The same entry (device and inode, kind) is nothing new. Another
    /// one replaced the old: reported like a scan reports it, an `update`
    /// with the new size and checksum, or, when the kind changed, a
    /// `delete` of the old entry and a `create` of the new one. A
    /// directory replacing a directory says nothing itself: the scan of
    /// its new contents reports what differs below it.
    fn arrived_at_known(
        &mut self,
        path: RelPath,
        old: Entry,
        arrived: Option<Entry>,
        superseded: bool,
    ) -> Vec<Draft> {
        let Some(new) = arrived else {
            return Vec::new();
        };
        if old.ino != 0 && new.same_file(&old) && new.kind == old.kind {
            return Vec::new();
        }
        // Its content is read only while the path still holds it.
        let fresh = self
            .lstat(&path)
            .filter(|f| !superseded && f.same_file(&new) && f.kind == new.kind);
        let present = fresh.is_some();
        let e = fresh.unwrap_or(new);
        let mut out = Vec::new();
        if old.kind != e.kind {
            self.index.remove_subtree(&path);
            out.push(Draft {
                event_type: EventType::Delete,
                kind: old.kind,
                path: path.clone(),
                from: None,
                size: None,
                checksum: None,
                rescan: false,
            });
            self.index.insert(path.clone(), e);
            out.push(self.draft(EventType::Create, &path, &e, present, false));
            return out;
        }
        self.index.insert(path.clone(), e);
        if e.kind != Kind::Dir {
            out.push(self.draft(EventType::Update, &path, &e, present, false));
        }
        out
    }

    fn apply(&mut self, ev: Logical, superseded: bool) -> Vec<Draft> {
        match ev {
            Logical::Create {
                path,
                dir_hint,
                stat,
                written,
            } => {
                if let Some(old) = self.index.get(&path).copied() {
                    if written.is_some() {
                        // Already reported (a new directory's scan found
                        // the file while its writer was still writing):
                        // the kernel's create comes after, and the close
                        // merged into it ends a write the scan may not
                        // have seen. It is judged like any later close.
                        return self.apply(
                            Logical::Update {
                                path,
                                stat,
                                written,
                            },
                            superseded,
                        );
                    }
                    // What the event saw arrive (a name moved in); else
                    // what the path holds now, unless an event already
                    // known replaces it again (its own lines follow).
                    let arrived =
                        stat.or_else(|| (!superseded).then(|| self.lstat(&path)).flatten());
                    return self.arrived_at_known(path, old, arrived, superseded);
                }
                // What the path holds now matters only while no event
                // already known replaces it.
                let fresh = if superseded { None } else { self.lstat(&path) };
                let hinted = if dir_hint { Kind::Dir } else { Kind::File };
                if superseded || replaced(fresh, written) {
                    // The path holds another file now (or none): what was
                    // created is reported without a content of its own.
                    let kind = if written.is_some() {
                        Kind::File
                    } else {
                        stat.map_or(hinted, |s| s.kind)
                    };
                    let e = stat.unwrap_or(Entry::unknown(kind));
                    self.index.insert(path.clone(), e);
                    return vec![self.draft(EventType::Create, &path, &e, false, false)];
                }
                let known = fresh.is_some() || stat.is_some();
                let e = fresh.or(stat).unwrap_or(Entry::unknown(hinted));
                self.index.insert(path.clone(), e);
                // Content is read only while the file is still there.
                let d = self.draft(EventType::Create, &path, &e, fresh.is_some(), false);
                if fresh.is_none() && known && e.kind != Kind::Dir {
                    return vec![Draft {
                        size: Some(e.size),
                        ..d
                    }];
                }
                vec![d]
            }
            Logical::Update {
                path,
                stat,
                written,
            } => {
                let (fresh, links) = match self.lstat_links(&path) {
                    Some((e, n)) => (Some(e), n),
                    None => (None, 0),
                };
                let gone = superseded || replaced(fresh, written);
                match self.index.get(&path).copied() {
                    None if gone => {
                        // Written, then removed or replaced before it was
                        // reported: it existed, its content is unknown.
                        let e = Entry::unknown(Kind::File);
                        self.index.insert(path.clone(), e);
                        vec![self.draft(EventType::Create, &path, &e, false, false)]
                    }
                    None => match fresh {
                        Some(e) => {
                            self.index.insert(path.clone(), e);
                            vec![self.draft(EventType::Create, &path, &e, true, false)]
                        }
                        None => Vec::new(),
                    },
                    Some(old) if gone => {
                        let scanned = self.scanned.remove(&path);
                        if old.kind == Kind::Dir {
                            return Vec::new();
                        }
                        // Reported moments ago by a new directory's scan,
                        // and still the same inode and size: a later event
                        // taken for a replacement is the kernel's own
                        // create of that same file, and this close is the
                        // end of the write the scan already saw.
                        let same = |s: &Scanned| {
                            s.at.elapsed() < SCANNED_GRACE
                                && !replaced(fresh, written)
                                && fresh.is_some_and(|f| f.ino == old.ino && Some(f.size) == s.size)
                        };
                        if scanned.as_ref().is_some_and(same) {
                            return Vec::new();
                        }
                        // The inode written is no longer at this path: the
                        // update says that it was written, not what the path
                        // holds now (the events that replaced it follow).
                        let e = Entry {
                            kind: Kind::File,
                            ..old
                        };
                        vec![self.draft(EventType::Update, &path, &e, false, false)]
                    }
                    Some(old) => {
                        let scanned = self
                            .scanned
                            .remove(&path)
                            .filter(|s| s.at.elapsed() < SCANNED_GRACE);
                        if scanned.is_some() && fresh == Some(old) {
                            // Unchanged since the scan reported it: this close
                            // is the one the scan already saw.
                            return Vec::new();
                        }
                        let e = fresh.or(stat).unwrap_or(old);
                        if e.kind == Kind::Dir {
                            self.index.insert(path, e);
                            return Vec::new();
                        }
                        self.index.insert(path.clone(), e);
                        if fresh.is_some() {
                            let d = self.draft(EventType::Update, &path, &e, true, false);
                            if let Some(s) = &scanned {
                                // Only the times moved since the scan: the
                                // same file, and the update would say what
                                // the create said (size, and the checksum
                                // when checksums are on).
                                if e.ino == old.ino && d.size == s.size && d.checksum == s.checksum
                                {
                                    return Vec::new();
                                }
                            }
                            let mut out = vec![d];
                            if links > 1 && e.kind == Kind::File {
                                self.other_links(&path, &e, &mut out);
                            }
                            out
                        } else {
                            let mut d = self.draft(EventType::Update, &path, &e, false, false);
                            d.size = stat.map(|s| s.size);
                            vec![d]
                        }
                    }
                }
            }
            Logical::Delete { path, .. } => {
                let Some(e) = self.index.remove_known_subtree(&path) else {
                    return Vec::new();
                };
                vec![Draft {
                    event_type: EventType::Delete,
                    kind: e.kind,
                    path,
                    from: None,
                    size: None,
                    checksum: None,
                    rescan: false,
                }]
            }
            Logical::Move { from, to } => {
                let Some(old) = self.index.get(&from).copied() else {
                    if let Some(prev) = self.index.get(&to).copied() {
                        // A name never reported renamed over a known one.
                        let arrived = self.lstat(&to);
                        return self.arrived_at_known(to, prev, arrived, superseded);
                    }
                    return self.apply(
                        Logical::Create {
                            path: to,
                            dir_hint: false,
                            stat: None,
                            written: None,
                        },
                        false,
                    );
                };
                self.index.move_subtree(&from, &to);
                // What was moved, unless something else was put at `to` since.
                let fresh = self
                    .lstat(&to)
                    .filter(|f| f.kind == old.kind && !superseded)
                    .filter(|f| old.ino == 0 || f.same_file(&old));
                let e = fresh.unwrap_or(old);
                self.index.insert(to.clone(), e);
                vec![self.move_draft(from, to, e, fresh.is_some(), false)]
            }
            Logical::Reconcile {
                base,
                snapshot,
                rescan,
            } => {
                if !base.is_empty() && !self.index.contains(&base) {
                    // The directory is gone or was never reported; nothing to do below it.
                    if self.lstat(&base).is_none() {
                        return Vec::new();
                    }
                }
                // In a watched subtree the kernel's events reported the
                // writes: a change of ctime alone is not one there.
                let unseen = rescan || self.cfg.poll || self.polled.covering(&base).is_some();
                let changes = if unseen {
                    self.index.reconcile(&base, &snapshot)
                } else {
                    self.index.reconcile_watched(&base, &snapshot)
                };
                let mut out = Vec::with_capacity(changes.len());
                for c in changes {
                    let d = match c {
                        Change::Create(p, e) => {
                            let d = self.draft(EventType::Create, &p, &e, true, rescan);
                            if e.kind == Kind::File {
                                let s = Scanned {
                                    at: Instant::now(),
                                    size: d.size,
                                    checksum: d.checksum.clone(),
                                };
                                self.scanned.insert(p, s);
                            }
                            d
                        }
                        Change::Update(p, e) => self.draft(EventType::Update, &p, &e, true, rescan),
                        Change::Delete(p, e) => Draft {
                            event_type: EventType::Delete,
                            kind: e.kind,
                            path: p,
                            from: None,
                            size: None,
                            checksum: None,
                            rescan,
                        },
                        Change::Move { from, to, entry } => {
                            self.move_draft(from, to, entry, true, rescan)
                        }
                    };
                    out.push(d);
                }
                out
            }
            Logical::Cancelled => Vec::new(),
            Logical::Access { path } => match self.index.get(&path).copied() {
                Some(e) if e.kind == Kind::File => vec![Draft {
                    event_type: EventType::Access,
                    kind: e.kind,
                    path,
                    from: None,
                    size: None,
                    checksum: None,
                    rescan: false,
                }],
                _ => Vec::new(),
            },
        }
    }

    pub fn ignore(&self) -> &IgnoreSet {
        &self.cfg.ignore
    }
}

/// Whether a checksum failed because the file was no longer at its path
/// (moved, deleted or replaced), not because it cannot be read there.
fn moved_away(err: &ChecksumError) -> bool {
    match err {
        ChecksumError::Replaced => true,
        ChecksumError::Io(e) => {
            e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
        }
        _ => false,
    }
}

/// Whether the path holds another inode than the one written (`fresh`: what
/// it holds now).
fn replaced(fresh: Option<Entry>, written: Option<u64>) -> bool {
    matches!((fresh, written), (Some(f), Some(w)) if f.ino != w)
}

/// The paths that a kernel event of `batch`, or of `after` (queued after
/// the batch and handled later), removes or replaces, each with the
/// position of the last such event, counted from the batch's first event
/// through `after`.
///
/// The old name of an exchange's second half (`b` in `a → b`, `b → a`)
/// is not counted: the exchange leaves at `b` what its first half moved
/// there, and that move reports its content. Read as two renames instead
/// (`mv a b; mv b a`), `b` is then gone, and whatever appears there later
/// comes with events of its own (a create or a rename to it), which count.
fn removed_or_replaced(batch: &[Raw], after: &[Raw]) -> HashMap<RelPath, usize> {
    let at = |i: usize| match i.checked_sub(batch.len()) {
        None => batch.get(i),
        Some(j) => after.get(j),
    };
    let mut out = HashMap::new();
    for (i, raw) in batch.iter().chain(after).enumerate() {
        match raw {
            Raw::RenameFrom { .. } if exchange_second_half(at, i) => {}
            Raw::Remove { path, .. }
            | Raw::RenameFrom { path, .. }
            | Raw::RenameTo { path, .. }
            | Raw::Create { path, .. } => {
                out.insert(path.clone(), i);
            }
            _ => {}
        }
    }
    out
}

/// Whether the event at `i` is the old name of `b → a` right after
/// `a → b` (`at`: the events by position): `b` renamed away at once, to
/// `a`, or to a name not read yet (its new name is held back for the
/// next read, and the exchange is recognised when it comes).
fn exchange_second_half<'a>(at: impl Fn(usize) -> Option<&'a Raw>, i: usize) -> bool {
    let (Some(first_from), Some(first_to), Some(second_from)) = (
        i.checked_sub(2).and_then(&at),
        i.checked_sub(1).and_then(&at),
        at(i),
    ) else {
        return false;
    };
    let (
        Raw::RenameFrom {
            path: a,
            cookie: c1,
        },
        Raw::RenameTo {
            path: b,
            cookie: d1,
            ..
        },
        Raw::RenameFrom {
            path: b2,
            cookie: c2,
        },
    ) = (first_from, first_to, second_from)
    else {
        return false;
    };
    if c1 != d1 || c1 == c2 || a == b || b != b2 {
        return false;
    }
    match at(i + 1) {
        None => true,
        Some(Raw::RenameTo {
            path: a2,
            cookie: d2,
            ..
        }) => d2 == c2 && a2 == a,
        Some(_) => false,
    }
}

/// For each path an event of `items` removes or replaces (see
/// [`replaced_paths`]), the position of the last such event: one pass, so
/// that checking every event against all that follow it stays linear.
fn replaced_positions(items: &[Item]) -> HashMap<&[u8], usize> {
    let mut out = HashMap::new();
    if items.len() < 2 {
        return out; // nothing follows the only event
    }
    for (i, (ev, _)) in items.iter().enumerate() {
        for p in replaced_paths(ev).into_iter().flatten() {
            out.insert(p, i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ev: Logical) -> Item {
        (ev, Instant::now())
    }

    #[test]
    fn what_held_back_events_remove_or_replace_comes_after_the_batch() {
        let p = |s: &str| s.as_bytes().to_vec();
        let batch = vec![
            Raw::CloseWrite { path: p("p") },
            Raw::Remove {
                path: p("gone"),
                dir: false,
            },
        ];
        let held = vec![
            Raw::RenameFrom {
                path: p("a"),
                cookie: 1,
            },
            Raw::RenameFrom {
                path: p("p"),
                cookie: 2,
            },
            Raw::RenameTo {
                path: p("q"),
                cookie: 2,
                dir: None,
            },
        ];
        let m = removed_or_replaced(&batch, &held);
        assert_eq!(m.get(b"gone".as_slice()), Some(&1));
        // After the close of `p` (position 0): its content is not read
        // from whatever holds the name by then.
        assert_eq!(m.get(b"p".as_slice()), Some(&3));
        assert_eq!(m.get(b"q".as_slice()), Some(&4));
        assert_eq!(m.get(b"a".as_slice()), Some(&2));
        assert!(!removed_or_replaced(&batch, &[]).contains_key(b"p".as_slice()));
    }

    #[test]
    fn the_second_half_of_an_exchange_does_not_replace_its_old_name() {
        let p = |s: &str| s.as_bytes().to_vec();
        let from = |s: &str, cookie| Raw::RenameFrom { path: p(s), cookie };
        let to = |s: &str, cookie| Raw::RenameTo {
            path: p(s),
            cookie,
            dir: Some(false),
        };
        // `a ⇄ b`: `b` holds what the first half moved there.
        let m = removed_or_replaced(&[from("a", 1), to("b", 1), from("b", 2), to("a", 2)], &[]);
        assert_eq!(m.get(b"b".as_slice()), Some(&1));
        assert_eq!(m.get(b"a".as_slice()), Some(&3));
        // The second half's new name not read yet (held back).
        let m = removed_or_replaced(&[from("a", 1), to("b", 1)], &[from("b", 2)]);
        assert_eq!(m.get(b"b".as_slice()), Some(&1));
        // `b` renamed on elsewhere: it leaves `b`.
        let m = removed_or_replaced(&[from("a", 1), to("b", 1), from("b", 2), to("c", 2)], &[]);
        assert_eq!(m.get(b"b".as_slice()), Some(&2));
        // Something new at `b` afterwards replaces what was moved there.
        let m = removed_or_replaced(
            &[
                from("a", 1),
                to("b", 1),
                from("b", 2),
                to("a", 2),
                Raw::Create {
                    path: p("b"),
                    dir: false,
                },
            ],
            &[],
        );
        assert_eq!(m.get(b"b".as_slice()), Some(&4));
    }

    #[test]
    fn replaced_positions_keeps_the_last_event_replacing_each_path() {
        let items = vec![
            at(Logical::Update {
                path: b"d/f".to_vec(),
                stat: None,
                written: None,
            }),
            at(Logical::Delete {
                path: b"d/f".to_vec(),
                dir_hint: false,
            }),
            at(Logical::Move {
                from: b"d".to_vec(),
                to: b"e".to_vec(),
            }),
            at(Logical::Create {
                path: b"d/f".to_vec(),
                dir_hint: false,
                stat: None,
                written: None,
            }),
        ];
        let m = replaced_positions(&items);
        assert_eq!(m.get(b"d/f".as_slice()), Some(&3));
        assert_eq!(m.get(b"d".as_slice()), Some(&2));
        assert_eq!(m.get(b"e".as_slice()), Some(&2));
        assert_eq!(m.len(), 3, "an update replaces nothing");
        assert!(replaced_positions(&items[..1]).is_empty());
    }
}
