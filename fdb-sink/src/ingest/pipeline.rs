//! Validation and durable writes, shared by the HTTP endpoint, `serve
//! --stdin` and `import`. Blocking: async callers use `spawn_blocking`.
//!
//! Validation runs on the caller's thread, so concurrent batches validate in
//! parallel. Writes either go straight to the store (FoundationDB: many
//! concurrent transactions) or, with [`Ingestor::with_group_commit`],
//! through one writer thread that commits every batch waiting at that moment
//! in a single transaction: for the embedded store, which has one writer and
//! an fsync per commit, this turns N concurrent batches into one fsync.
//! Each batch is still answered only after the commit that holds it.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::framing;
use super::grouping::{RequestHash, Validator};
use super::health::StoreHealth;
use super::lines::Line;
use crate::audit::{self, WriteOptions, WriteSummary};
use crate::keys::Keys;
use crate::late::{self, LateMarks};
use crate::metrics::{outcome, Metrics};
use crate::record::{reason, Item};
use crate::store::{Store, StoreError, StoreExt};

/// Turns lines into committed audit records and dead letters.
pub struct Ingestor {
    store: Arc<dyn Store>,
    keys: Keys,
    opts: WriteOptions,
    metrics: Metrics,
    group: Option<Mutex<SyncSender<Job>>>,
    /// Batches being validated or committed now: with group commit, the
    /// only batch in progress is cut into chunks of [`LONE_CHUNK_LINES`].
    active: AtomicUsize,
    /// Follows the outcome of every commit.
    health: Arc<StoreHealth>,
}

/// One batch waiting for the group-commit writer.
struct Job {
    items: Vec<Item>,
    /// Gets the items back (so that they are freed by the caller, not by the
    /// one writer thread) with the outcome.
    reply: SyncSender<(Vec<Item>, Result<WriteSummary, StoreError>)>,
    /// Set by the writer when a chunk of the job's batch failed: the batch
    /// is answered with that error, so its later chunks are not written.
    batch_failed: Arc<AtomicBool>,
    /// The ingestor's [`WriteOptions::late_after_ns`].
    late_after_ns: Option<i64>,
}

fn job_bytes(j: &Job, store: &dyn Store) -> usize {
    j.items.iter().map(|i| audit::item_cost(i, store)).sum()
}

/// The group-commit writer: takes every waiting batch (up to `max_bytes`),
/// commits them in one transaction, and answers each.
fn group_writer(store: Arc<dyn Store>, keys: Keys, rx: Receiver<Job>, max_bytes: usize) {
    let take = |j: Job| {
        if j.batch_failed.load(Ordering::Relaxed) {
            let _ = j.reply.send((j.items, Err(earlier_chunk_failed())));
            None
        } else {
            Some(j)
        }
    };
    while let Ok(first) = rx.recv() {
        let Some(first) = take(first) else { continue };
        let mut bytes = job_bytes(&first, store.as_ref());
        let mut jobs = vec![first];
        while bytes < max_bytes {
            match rx.try_recv() {
                Ok(j) => {
                    if let Some(j) = take(j) {
                        bytes += job_bytes(&j, store.as_ref());
                        jobs.push(j);
                    }
                }
                Err(_) => break,
            }
        }
        let late_after_ns = jobs[0].late_after_ns;
        let r = store.transact(|txn| {
            // One threshold and one ADD per marker for the whole group.
            let mut late = LateMarks::new(late_after_ns, now_ns());
            let summaries = jobs
                .iter()
                .map(|j| audit::write_chunk(txn, &keys, &j.items, &mut late))
                .collect::<Result<Vec<_>, _>>()?;
            late.write(txn, &keys)?;
            Ok(summaries)
        });
        match r {
            Ok(summaries) => {
                // Chunks of one batch in the same commit: one transaction.
                let again: Vec<bool> = (0..jobs.len())
                    .map(|i| {
                        let batch = &jobs[i].batch_failed;
                        jobs[..i]
                            .iter()
                            .any(|o| Arc::ptr_eq(&o.batch_failed, batch))
                    })
                    .collect();
                for ((j, mut s), again) in jobs.into_iter().zip(summaries).zip(again) {
                    if again {
                        s.transactions = 0;
                    }
                    let _ = j.reply.send((j.items, Ok(s)));
                }
            }
            Err(e) => {
                // Marked before any answer: a later chunk of the same batch,
                // queued already, is then not written.
                for j in &jobs {
                    j.batch_failed.store(true, Ordering::Relaxed);
                }
                // The first batch gets the error itself, the others a copy.
                let mut jobs = jobs.into_iter();
                let first = jobs.next();
                for j in jobs {
                    let _ = j.reply.send((j.items, Err(e.copy_for())));
                }
                if let Some(j) = first {
                    let _ = j.reply.send((j.items, Err(e)));
                }
            }
        }
    }
}

const EARLIER_CHUNK_FAILED: &str = "an earlier part of the batch failed to commit";

fn earlier_chunk_failed() -> StoreError {
    StoreError::Internal(EARLIER_CHUNK_FAILED.into())
}

/// The error of a chunk that was not written because one before it failed.
fn is_earlier_chunk_failed(e: &StoreError) -> bool {
    matches!(e, StoreError::Internal(m) if m == EARLIER_CHUNK_FAILED)
}

/// The attempts of one stream batch, committed again until it succeeds
/// ([`Ingestor::ingest_stream_attempt`]): what they wrote, or may have
/// written, so that a retry counts each record once.
#[derive(Debug, Default)]
pub struct Attempts {
    /// `audit_logs` keys of records counted as written by an earlier
    /// attempt, not yet found again.
    earlier: HashSet<Vec<u8>>,
    /// Those counted written by this attempt.
    now: HashSet<Vec<u8>>,
    /// `audit_logs` keys of records of chunks whose commit failed: stored
    /// or not, nobody knows (a failure after the commit, or of a later
    /// transaction of a chunk split into several).
    unknown: HashSet<Vec<u8>>,
    /// Dead-lettered lines counted by earlier attempts, not yet found again.
    letters_earlier: u64,
    /// Those counted by this attempt.
    letters_now: u64,
    /// Dead-lettered lines of failed chunks, by reason (indexed like
    /// [`reason::ALL`]).
    letters_unknown: [u64; reason::ALL.len()],
    /// What the chunks of failed attempts committed.
    committed: BatchSummary,
    /// Lines of the batch counted in `fdb_sink_events_received_total`.
    lines_counted: u64,
}

impl Attempts {
    /// Of `lines` taken after the first `taken` lines of the batch, how
    /// many no earlier attempt counted received.
    fn received(&mut self, taken: u64, lines: u64) -> u64 {
        let end = taken + lines;
        let new = end.saturating_sub(self.lines_counted.max(taken));
        self.lines_counted = self.lines_counted.max(end);
        new
    }

    /// A chunk committed: what it found stored that an earlier attempt
    /// wrote, or may have written, is not a duplicate; a record only an
    /// unknown commit may have stored is counted written now.
    fn chunk_committed(&mut self, items: &[Item], s: &mut WriteSummary) {
        for item in items {
            let Item::Record(r) = item else { continue };
            let key = &r.encoded.audit;
            if r.stored_new.get() {
                self.now.insert(key.clone());
            } else if self.earlier.remove(key) {
                s.duplicates = s.duplicates.saturating_sub(1);
                self.now.insert(key.clone());
            } else if self.unknown.remove(key) {
                s.duplicates = s.duplicates.saturating_sub(1);
                s.written += 1;
                self.now.insert(key.clone());
            }
        }
        let own = s.dead_letter_duplicates.min(self.letters_earlier);
        s.dead_letter_duplicates -= own;
        self.letters_earlier -= own;
        for (i, unknown) in self.letters_unknown.iter_mut().enumerate() {
            let n = s.dead_letter_duplicates.min(*unknown);
            *unknown -= n;
            s.dead_letter_duplicates -= n;
            s.dead_lettered += n;
            s.dead_lettered_by_reason[i] += n;
        }
        self.letters_now += own + s.dead_lettered;
    }

    /// What the failed attempts committed (`received` aside): the batch's
    /// summary if it is given up.
    pub fn committed_so_far(&self) -> BatchSummary {
        self.committed
    }

    /// A chunk's commit failed.
    fn failed(&mut self, items: &[Item]) {
        for item in items {
            match item {
                // Only what a run of this attempt stored may have been
                // committed: a record it found stored before (or never
                // reached) was not.
                Item::Record(r) if r.stored_new.ever() => {
                    let key = &r.encoded.audit;
                    if !self.now.contains(key) && !self.earlier.contains(key) {
                        self.unknown.insert(key.clone());
                    }
                }
                Item::Record(_) => {}
                Item::DeadLetter(d) => {
                    if let Some(i) = reason::index(&d.reason) {
                        self.letters_unknown[i] += d.line_count();
                    }
                }
            }
        }
    }

    /// An attempt failed after committing `total` in some of its chunks.
    fn attempt_failed(&mut self, total: &BatchSummary) {
        let mut committed = *total;
        committed.received = 0;
        self.committed.add(&committed);
        self.earlier.extend(self.now.drain());
        self.letters_earlier += std::mem::take(&mut self.letters_now);
    }

    /// The batch is committed: its summary covers every attempt.
    fn batch_done(&mut self, total: &mut BatchSummary) {
        let received = total.received;
        total.add(&self.committed);
        total.received = received;
        *self = Attempts::default();
    }
}

/// Counts a batch in [`Ingestor::active`] while it lives.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Active(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A chunk handed to [`Ingestor::submit`]: written, or waiting for the
/// group-commit writer's answer.
enum Submitted {
    /// To be written by the caller when its turn comes (no group commit, or
    /// a chunk above the transaction target): after every chunk of the
    /// batch before it is committed, and not at all if one of them failed.
    Direct(Vec<Item>),
    Queued(Receiver<(Vec<Item>, Result<WriteSummary, StoreError>)>),
}

impl Submitted {
    /// The items back, with the outcome of their commit; `failed` when an
    /// earlier chunk of the batch failed.
    fn wait(
        self,
        ingestor: &Ingestor,
        failed: bool,
    ) -> (Vec<Item>, Result<WriteSummary, StoreError>) {
        match self {
            Submitted::Direct(items) if failed => (items, Err(earlier_chunk_failed())),
            Submitted::Direct(items) => {
                let r = audit::write_items(
                    ingestor.store.as_ref(),
                    &ingestor.keys,
                    &items,
                    ingestor.opts,
                );
                (items, r)
            }
            Submitted::Queued(answer) => answer
                .recv()
                .unwrap_or_else(|_| (Vec::new(), Err(writer_stopped()))),
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Internal("group-commit writer stopped".into())
}

/// What one batch did; the body of a 200 answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchSummary {
    /// Lines in the batch.
    pub received: u64,
    /// New audit records stored.
    pub written: u64,
    /// Records, and dead-lettered lines, that were already stored
    /// (redelivery): not stored or counted again.
    pub duplicates: u64,
    /// Lines newly stored in dead-letter with a reason.
    pub dead_lettered: u64,
    /// Of `duplicates`, the invalid lines whose dead letter was already
    /// stored (the same request, or import batch, delivered again).
    pub dead_letter_duplicates: u64,
    /// Transactions the batch was committed in.
    pub transactions: u64,
}

impl BatchSummary {
    pub fn add(&mut self, o: &BatchSummary) {
        self.received += o.received;
        self.written += o.written;
        self.duplicates += o.duplicates;
        self.dead_lettered += o.dead_lettered;
        self.dead_letter_duplicates += o.dead_letter_duplicates;
        self.transactions += o.transactions;
    }
}

/// A hash of a request's (or stream batch's) lines, each given as its
/// length and bytes (or a hash of them, for a line not held whole).
fn hash_lines<'a>(lines: impl Iterator<Item = (u64, &'a [u8])>) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("fdb-sink request lines");
    for (len, bytes) in lines {
        h.update(&len.to_le_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize()
}

fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// The late records of one batch: how many, and their UTC days and
/// tenants, for the log.
#[derive(Default)]
struct Late {
    count: u64,
    days: BTreeSet<i64>,
    tenants: BTreeSet<String>,
}

/// Days and tenants named in one warning at most (the totals are logged too).
const LATE_LISTED: usize = 32;

impl Late {
    /// Notes the records of `items` that their commit stored anew (not
    /// redeliveries of stored ones) and that were received (at `now_ns`)
    /// more than `after_ns` past the end of their UTC day
    /// ([`late::late_before_ns`], the rule of the markers).
    fn note(&mut self, items: &[Item], now_ns: i64, after_ns: i64) {
        let before = late::late_before_ns(now_ns, after_ns);
        for item in items {
            let Item::Record(r) = item else { continue };
            if !r.stored_new.get() || r.ts_ns >= before {
                continue;
            }
            self.count += 1;
            self.days.insert(late::day_of(r.ts_ns));
            if !self.tenants.contains(&r.tenant) {
                self.tenants.insert(r.tenant.clone());
            }
        }
    }

    fn report(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.events_late.inc_by(self.count);
        let days: Vec<String> = self
            .days
            .iter()
            .take(LATE_LISTED)
            .map(|d| late::day_string(*d))
            .collect();
        let tenants: Vec<&str> = self
            .tenants
            .iter()
            .take(LATE_LISTED)
            .map(String::as_str)
            .collect();
        let cut = self.days.len() > LATE_LISTED || self.tenants.len() > LATE_LISTED;
        tracing::warn!(
            records = self.count,
            days = %days.join(","),
            days_total = self.days.len(),
            tenants = %tenants.join(","),
            tenants_total = self.tenants.len(),
            lists_cut = cut,
            "records received after their day's end: the daily export of those days may not hold them; they are marked (`fdb-sink late`) and the next daily export re-exports them (docs/operations.md, AuditRecordsArrivedLate)"
        );
    }
}

impl Ingestor {
    pub fn new(store: Arc<dyn Store>, keys: Keys, opts: WriteOptions, metrics: Metrics) -> Self {
        let health = Arc::new(StoreHealth::new(metrics.store_up.clone()));
        Ingestor {
            store,
            keys,
            opts,
            metrics,
            group: None,
            active: AtomicUsize::new(0),
            health,
        }
    }

    /// Counts (`fdb_sink_events_late_total`), logs and marks the records
    /// stored more than `after` past the end of their UTC day: the daily
    /// export of that day, which selects records by their own time, may
    /// have run without them. The marker `("late", day, tenant)` is added to
    /// in the transaction that stores them ([`crate::late`]), and the next
    /// daily export re-exports them.
    pub fn with_late_after(mut self, after: Duration) -> Self {
        self.opts.late_after_ns = Some(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX));
        self
    }

    /// Commits concurrent batches together (see the module docs), at most
    /// about `max_group_bytes` per transaction. Meant for the embedded store.
    /// A batch larger than the transaction target is not grouped: it is
    /// split into transactions of about that size.
    pub fn with_group_commit(mut self, max_group_bytes: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(64);
        let store = self.store.clone();
        let keys = self.keys.clone();
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || group_writer(store, keys, rx, max_group_bytes))
            .map(|_| ())
            .unwrap_or_else(
                |e| tracing::warn!(error = %e, "no group-commit thread; committing directly"),
            );
        self.group = Some(Mutex::new(tx));
        self
    }

    /// Hands `items` to the group-commit writer, or keeps them to be
    /// written by the caller (no group commit, or a chunk above the
    /// transaction target).
    fn submit(&self, items: Vec<Item>, batch_failed: &Arc<AtomicBool>) -> Submitted {
        let sender = self
            .group
            .as_ref()
            .and_then(|g| g.lock().ok().map(|s| s.clone()));
        // A batch above the transaction target is split into several
        // transactions instead (what FoundationDB needs anyway).
        let big = items
            .iter()
            .map(|i| audit::item_cost(i, self.store.as_ref()))
            .sum::<usize>()
            > self.opts.target_txn_bytes;
        let Some(sender) = sender.filter(|_| !big) else {
            return Submitted::Direct(items);
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job {
            items,
            reply,
            batch_failed: batch_failed.clone(),
            late_after_ns: self.opts.late_after_ns,
        };
        match sender.send(job) {
            Ok(()) => Submitted::Queued(answer),
            Err(mpsc::SendError(job)) => Submitted::Direct(job.items),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store's known state, which every commit updates.
    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// Validates and commits `lines`, one request. Returns once every line
    /// is durably stored (as a record or a dead letter). On a store error
    /// nothing is acknowledged; part of the batch may be stored, which is
    /// harmless since a retry stores each event once.
    ///
    /// Lines are validated and committed in chunks of at most
    /// [`CHUNK_LINES`] (or [`CHUNK_BYTES`]), so that a body of many lines
    /// costs memory for at most [`CHUNK_BYTES`] of lines' validated records
    /// or dead letters, not for all its lines; a batch alone in progress
    /// with group commit, in chunks of [`LONE_CHUNK_LINES`], validated while
    /// the one before commits (`Ingestor::commit_chunks`).
    pub fn ingest(&self, lines: &[&[u8]]) -> Result<BatchSummary, StoreError> {
        let request = || hash_lines(lines.iter().map(|l| (l.len() as u64, *l)));
        self.ingest_lines(
            lines.iter().copied(),
            &request,
            |l| l.len(),
            |v, l, out| {
                v.push(l, out);
            },
            true,
            None,
        )
    }

    /// [`Ingestor::ingest`] for a request body (NDJSON or a JSON array,
    /// [`super::framing::iter`]): its lines are found as they are taken, and
    /// the body identifies the request (a redelivery sends the same bytes).
    pub fn ingest_body(&self, body: &[u8]) -> Result<BatchSummary, StoreError> {
        let request = || blake3::hash(body);
        self.ingest_lines(
            framing::iter(body),
            &request,
            |l| l.len(),
            |v, l, out| {
                v.push(l, out);
            },
            true,
            None,
        )
    }

    /// [`Ingestor::ingest`] for lines read from a stream (`import`, `serve
    /// --stdin`), one batch: a line over the line limit becomes a
    /// `line_too_long` dead letter. Chunks end at [`CHUNK_LINES`] or
    /// [`CHUNK_BYTES`] of lines held, as for a request, also when the batch
    /// is alone: a stream's reader is the only batch in progress, and its
    /// batches of up to [`super::grouping::STREAM_BATCH_LINES`] lines are
    /// committed in few transactions.
    pub fn ingest_stream(&self, lines: &[Line]) -> Result<BatchSummary, StoreError> {
        self.stream_batch(lines, None)
    }

    /// [`Ingestor::ingest_stream`] for a stream's batch that is committed
    /// again after a failure, with `attempts` kept from one attempt to the
    /// next: what an earlier attempt committed, or may have committed (a
    /// failure after the commit, or of one of several transactions), and
    /// its retry then finds stored is its own write, not a duplicate
    /// delivery. The summary returned on success covers the batch across
    /// all its attempts, and each line is counted received once.
    pub fn ingest_stream_attempt(
        &self,
        lines: &[Line],
        attempts: &mut Attempts,
    ) -> Result<BatchSummary, StoreError> {
        self.stream_batch(lines, Some(attempts))
    }

    fn stream_batch(
        &self,
        lines: &[Line],
        attempts: Option<&mut Attempts>,
    ) -> Result<BatchSummary, StoreError> {
        let request = || {
            hash_lines(lines.iter().map(|l| match l {
                Line::Whole(b) => (b.len() as u64, b.as_slice()),
                Line::TooLong(long) => (long.len, long.hash.as_bytes().as_slice()),
            }))
        };
        self.ingest_lines(
            lines.iter(),
            &request,
            |l| l.held_bytes(),
            |v, l, out| match l {
                Line::Whole(b) => v.push(b, out),
                Line::TooLong(long) => {
                    let d = long.dead_letter(v.received_ns());
                    v.push_letter(d, out);
                }
            },
            false,
            attempts,
        )
    }

    /// Validates `lines` (one request, identified by `request`) and commits
    /// them in chunks of at most [`CHUNK_LINES`] lines or [`CHUNK_BYTES`]
    /// (by `size`); `push` validates one line.
    fn ingest_lines<T>(
        &self,
        lines: impl Iterator<Item = T>,
        request: RequestHash<'_>,
        size: impl Fn(&T) -> usize,
        mut push: impl FnMut(&mut Validator<'_>, T, &mut Vec<Item>),
        pipelined: bool,
        attempts: Option<&mut Attempts>,
    ) -> Result<BatchSummary, StoreError> {
        let _active = Active::enter(&self.active);
        let mut validator = Validator::new(&self.keys, now_ns(), request);
        let mut lines = lines.peekable();
        let mut done = false;
        let mut lone_lines = LONE_CHUNK_LINES;
        let next_chunk = |lone: bool| {
            if done {
                return None;
            }
            let mut items = Vec::new();
            let mut n = 0u64;
            let mut bytes = 0usize;
            let (max_lines, max_bytes) = if lone {
                let lines = lone_lines;
                lone_lines = (lone_lines * 2).min(CHUNK_LINES);
                (lines, CHUNK_BYTES / CHUNKS_IN_FLIGHT)
            } else {
                (CHUNK_LINES, CHUNK_BYTES)
            };
            while n < max_lines as u64 && bytes < max_bytes {
                let Some(l) = lines.next() else { break };
                bytes += size(&l);
                push(&mut validator, l, &mut items);
                n += 1;
            }
            if lines.peek().is_none() {
                validator.finish(&mut items);
                done = true;
            }
            (n > 0 || !items.is_empty()).then_some((n, items))
        };
        self.commit_chunks(next_chunk, pipelined, attempts)
    }

    /// Commits the chunks of one batch, and counts the batch once. Each
    /// chunk comes with the number of lines it holds (a group of invalid
    /// lines is one item for many lines).
    ///
    /// `next_chunk(lone)` validates the next chunk: when `lone`, of
    /// [`LONE_CHUNK_LINES`] lines, twice as many for each lone chunk after
    /// it up to [`CHUNK_LINES`] (so that a large batch makes few more
    /// commits than unpipelined), and at most half of [`CHUNK_BYTES`]; else
    /// of [`CHUNK_LINES`]. A batch is lone when it is the only one in progress
    /// with group commit: its chunk is handed to the writer, otherwise idle,
    /// and the next one validated while it commits, at most
    /// [`CHUNKS_IN_FLIGHT`] waiting for their commit at a time. Otherwise
    /// (or while a chunk taken before it was lone waits) a chunk is taken
    /// only once the one before is committed, so that a batch never holds
    /// more than [`CHUNK_BYTES`] of lines. The batch succeeds
    /// once every chunk is committed; on an error, the chunks already handed
    /// over are still waited for (and counted), and no further chunk is
    /// taken.
    ///
    /// With `attempts` (a stream's batch committed again), what its
    /// earlier attempts wrote is not counted again (see
    /// [`Ingestor::ingest_stream_attempt`]).
    fn commit_chunks(
        &self,
        mut next_chunk: impl FnMut(bool) -> Option<(u64, Vec<Item>)>,
        pipelined: bool,
        mut attempts: Option<&mut Attempts>,
    ) -> Result<BatchSummary, StoreError> {
        let started = Instant::now();
        let mut total = BatchSummary::default();
        let mut late = Late::default();
        let mut failed: Option<StoreError> = None;
        let mut in_flight = VecDeque::new();
        let batch_failed = Arc::new(AtomicBool::new(false));
        let mut taken_all = false;
        loop {
            let lone =
                pipelined && self.group.is_some() && self.active.load(Ordering::Relaxed) == 1;
            let take = !taken_all
                && failed.is_none()
                && (in_flight.is_empty()
                    || (lone
                        && in_flight.len() < CHUNKS_IN_FLIGHT
                        && in_flight.iter().all(|(was_lone, _)| *was_lone)));
            let next = if take { next_chunk(lone) } else { None };
            taken_all |= take && next.is_none();
            if let Some((lines, items)) = next {
                let first_time = match attempts.as_deref_mut() {
                    Some(a) => a.received(total.received, lines),
                    None => lines,
                };
                self.metrics.events_received.inc_by(first_time);
                total.received += lines;
                in_flight.push_back((lone, self.submit(items, &batch_failed)));
                continue;
            }
            let Some((_, submitted)) = in_flight.pop_front() else {
                break;
            };
            let (items, result) = submitted.wait(self, failed.is_some());
            match result {
                Ok(mut s) => {
                    // A batch of many chunks shows the store taking writes
                    // while it lasts (the readiness probe is then not due).
                    self.health.write_succeeded();
                    if let Some(a) = attempts.as_deref_mut() {
                        a.chunk_committed(&items, &mut s);
                    }
                    if let Some(after) = self.opts.late_after_ns {
                        late.note(&items, now_ns(), after);
                    }
                    self.record_written(&items, &s);
                    total.written += s.written;
                    total.duplicates += s.duplicates + s.dead_letter_duplicates;
                    total.dead_letter_duplicates += s.dead_letter_duplicates;
                    total.dead_lettered += s.dead_lettered;
                    total.transactions += s.transactions;
                }
                Err(e) => {
                    if let Some(a) = attempts.as_deref_mut() {
                        if !is_earlier_chunk_failed(&e) {
                            a.failed(&items);
                        }
                    }
                    if failed.is_none() {
                        failed = Some(e);
                    }
                }
            }
        }
        if let Some(e) = failed {
            self.metrics.store_errors.inc();
            self.metrics.batch(outcome::STORE_ERROR);
            // The store is down, not just this transaction: one that ran
            // too long, conflicted or was too large says nothing of the
            // next batch.
            if e.store_down() {
                self.health.write_failed();
            } else if e.unavailable() {
                // Its own failure, maybe a sign: the store is probed now.
                self.health.suspect();
            }
            if let Some(a) = attempts {
                a.attempt_failed(&total);
            }
            return Err(e);
        }
        self.metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        late.report(&self.metrics);
        self.metrics.batch(outcome::COMMITTED);
        self.health.write_succeeded();
        if let Some(a) = attempts {
            a.batch_done(&mut total);
        }
        Ok(total)
    }

    fn record_written(&self, items: &[Item], s: &WriteSummary) {
        self.metrics.events_written.inc_by(s.written);
        self.metrics.events_duplicate.inc_by(s.duplicates);
        self.metrics
            .dead_letter_duplicate
            .inc_by(s.dead_letter_duplicates);
        for (reason, n) in reason::ALL.iter().zip(s.dead_lettered_by_reason) {
            if n > 0 {
                self.metrics.dead_lettered_by(reason, n);
            }
        }
        for item in items {
            if let Item::DeadLetter(d) = item {
                tracing::debug!(
                    reason = %d.reason,
                    lines = d.line_count(),
                    detail = ?d.detail,
                    "dead letter"
                );
            }
        }
    }
}

/// Lines of one batch validated and committed together at most (see
/// [`Ingestor::ingest`]): a Vector batch of 10 MB of ordinary events is
/// about three chunks.
pub const CHUNK_LINES: usize = 8192;

/// Lines of the first chunk of a batch that is the only one in progress,
/// with group commit (each next chunk twice as many, up to
/// [`CHUNK_LINES`]): the writer, idle otherwise, commits one chunk while
/// the next is validated. With other batches in progress
/// the writer is kept busy by them, and chunks of [`CHUNK_LINES`] cost
/// fewer commits.
pub const LONE_CHUNK_LINES: usize = 256;

/// Chunks of one batch waiting for their commit at a time (see
/// [`Ingestor::commit_chunks`]).
const CHUNKS_IN_FLIGHT: usize = 2;

/// Bytes of lines validated and committed together at most (a chunk ends at
/// [`CHUNK_LINES`] or here, whichever comes first): the validated records
/// of a chunk (about the size of its lines) are what a batch holds besides
/// its body, so that `--max-inflight-batches` bounds them at about this
/// much each, whatever the lines' size.
pub const CHUNK_BYTES: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::event_line;
    use crate::store::embedded::EmbeddedStore;

    /// An exclusive embedded store (dead letters looked up one at a time)
    /// and a shared one (looked up with the chunk, as on FoundationDB), and
    /// the directories that hold them.
    fn both_write_paths() -> ([tempfile::TempDir; 2], [Arc<dyn Store>; 2]) {
        use crate::store::conformance::Shared;
        let dirs = [0, 1].map(|_| tempfile::tempdir().expect("tempdir"));
        let stores: [Arc<dyn Store>; 2] = [
            Arc::new(EmbeddedStore::open(dirs[0].path()).expect("open")),
            Arc::new(Shared(EmbeddedStore::open(dirs[1].path()).expect("open"))),
        ];
        (dirs, stores)
    }

    /// Dead letters of a redelivered batch are found stored (looked up one
    /// at a time on the exclusive embedded store, with the chunk on a shared
    /// store) and counted as duplicates; repeated lines each keep a row.
    #[test]
    fn redelivered_dead_letters_are_duplicates_on_both_write_paths() {
        let (_dirs, stores) = both_write_paths();
        let monitor = uuid::Uuid::new_v4().to_string();
        let mut owned: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "{{\"timestamp\":\"2026-11-26T18:00:00Z\",\"n\":{}}}",
                    i % 2500
                )
            })
            .collect();
        owned.push(event_line(&monitor, 1, "s-dl", "f"));
        let lines: Vec<&[u8]> = owned.iter().map(|l| l.as_bytes()).collect();
        for store in stores {
            let ingestor = ingestor(&store);
            let first = ingestor.ingest(&lines).expect("first");
            assert_eq!(
                (first.written, first.dead_lettered, first.duplicates),
                (1, 3000, 0)
            );
            let again = ingestor.ingest(&lines).expect("again");
            assert_eq!(
                (again.written, again.dead_lettered, again.duplicates),
                (0, 0, 3001)
            );
            let keys = Keys::default();
            let rows = store
                .read(|t| audit::dead_letters(t, &keys, 0))
                .expect("read");
            assert_eq!(
                rows.iter().map(|r| r.letter.line_count()).sum::<u64>(),
                3000
            );
        }
    }

    /// Dead letters keyed by their receipt, delivered again hours later,
    /// are found under the hour of the first delivery on both write paths
    /// (looked up one at a time, or with the chunk), up to a day later.
    #[test]
    fn dead_letters_keyed_by_receipt_are_found_again_within_a_day_on_both_write_paths() {
        use crate::ingest::grouping::Validator;
        const HOUR: i64 = crate::record::RECEIPT_BUCKET_NS;
        let (_dirs, stores) = both_write_paths();
        let keys = Keys::default();
        // Not JSON, no timestamp, the same line twice, then groups.
        let owned: Vec<String> = ["garbage".to_owned(), "{}".to_owned(), "{}".to_owned()]
            .into_iter()
            .chain((0..50).map(|i| format!("[{i}]")))
            .collect();
        let lines: Vec<&[u8]> = owned.iter().map(|l| l.as_bytes()).collect();
        let items = |received_ns: i64| {
            let request = || blake3::hash(b"request");
            let mut v = Validator::with_singles(&keys, received_ns, &request, 10);
            let mut out = Vec::new();
            for l in &lines {
                v.push(l, &mut out);
            }
            v.finish(&mut out);
            out
        };
        // 2026-11-27T10:59:59.9Z, then the same lines at later times.
        let first = 1_795_777_199_900_000_000;
        for store in stores {
            let write = |at: i64| {
                audit::write_items(store.as_ref(), &keys, &items(at), WriteOptions::default())
                    .expect("write")
            };
            let w = write(first);
            assert_eq!((w.dead_lettered, w.dead_letter_duplicates), (53, 0));
            for later in [
                first + 1,
                first + 200_000_000,
                first + 5 * HOUR,
                first + 24 * HOUR,
            ] {
                let w = write(later);
                assert_eq!(
                    (w.dead_lettered, w.dead_letter_duplicates),
                    (0, 53),
                    "{later}"
                );
            }
            let rows = store
                .read(|t| audit::dead_letters(t, &keys, 0))
                .expect("read");
            assert_eq!(rows.iter().map(|r| r.letter.line_count()).sum::<u64>(), 53);
            assert!(rows
                .iter()
                .all(|r| r.letter.keyed_by_receipt
                    && r.ts_ns == crate::record::receipt_key_ts(first)));
            // Past the lookback, a line is stored once more.
            let w = write(first + 26 * HOUR);
            assert_eq!(w.dead_lettered, 53);
        }
    }

    #[test]
    fn group_commit_stores_concurrent_and_repeated_batches_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let ingestor = ingestor(&store).with_group_commit(8_000_000);
        let monitor = uuid::Uuid::new_v4().to_string();
        let batches: Vec<Vec<String>> = (0..8u64)
            .map(|b| {
                (1..=100)
                    .map(|i| event_line(&monitor, b * 100 + i, "s-g", "f"))
                    .collect()
            })
            .collect();
        // Every batch is sent by two threads at once: 16 concurrent ingests.
        let written: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = batches
                .iter()
                .chain(batches.iter())
                .map(|b| {
                    let ing = &ingestor;
                    s.spawn(move || {
                        let lines: Vec<&[u8]> = b.iter().map(|l| l.as_bytes()).collect();
                        ing.ingest(&lines).expect("ingest")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .map(|s| {
                    assert_eq!(s.written + s.duplicates, 100);
                    s.written
                })
                .sum()
        });
        assert_eq!(
            written, 800,
            "each event written by exactly one of its two senders"
        );
        assert_eq!(
            records_and_monitor(&store, &monitor),
            (800, Some((800, 800)))
        );
    }

    /// An ingestor on `store` with the default keys and options.
    fn ingestor(store: &Arc<dyn Store>) -> Ingestor {
        Ingestor::new(
            store.clone(),
            Keys::default(),
            WriteOptions::default(),
            Metrics::unregistered(),
        )
    }

    /// Audit records stored, and `monitor`'s (received, max_seq).
    fn records_and_monitor(store: &Arc<dyn Store>, monitor: &str) -> (u64, Option<(i64, u64)>) {
        let keys = Keys::default();
        let (n, mon) = store
            .read(|t| {
                Ok((
                    audit::count_in(t, &keys.audit_logs_all())?,
                    audit::monitor(t, &keys, monitor)?,
                ))
            })
            .expect("read");
        (n as u64, mon.map(|m| (m.received, m.max_seq)))
    }

    /// A batch alone in a group-commit ingestor is committed in chunks of
    /// [`LONE_CHUNK_LINES`] lines, doubling (each validated while the one
    /// before commits), every record once; without group commit it is one
    /// chunk.
    #[test]
    fn a_lone_batch_is_committed_in_pipelined_chunks_only_with_group_commit() {
        let monitor = uuid::Uuid::new_v4().to_string();
        let lines: Vec<String> = (1..=1000)
            .map(|i| event_line(&monitor, i, "s-lone", "f"))
            .collect();
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        // Lone chunks of 256, then 512 lines, then the rest.
        assert_eq!(LONE_CHUNK_LINES, 256);
        for (group, transactions) in [(true, 3u64), (false, 1)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
            let mut ingestor = ingestor(&store);
            if group {
                ingestor = ingestor.with_group_commit(8_000_000);
            }
            let s = ingestor.ingest(&lines).expect("ingest");
            assert_eq!(
                (s.received, s.written),
                (1000, 1000),
                "group commit {group}"
            );
            // Two chunks may wait for the writer together and share its
            // commit: at least half as many commits as chunks.
            assert!(
                (transactions.div_ceil(2)..=transactions).contains(&s.transactions),
                "group commit {group}: {} transactions",
                s.transactions
            );
            let again = ingestor.ingest(&lines).expect("ingest again");
            assert_eq!((again.written, again.duplicates), (0, 1000));
            assert_eq!(
                records_and_monitor(&store, &monitor),
                (1000, Some((1000, 1000)))
            );
        }
    }

    /// The embedded store, whose commit number `at` (from 0) fails with
    /// `error`: before committing, after `delay` (the batch's later chunks
    /// are queued or validated meanwhile), or, when `lost`, after it was
    /// made (as FoundationDB's `commit_unknown_result` can end); with
    /// `rerun` as well, the transaction runs again (finding its own records
    /// stored, as FoundationDB's retry does) before it fails.
    struct FaultyCommit {
        store: EmbeddedStore,
        commits: AtomicUsize,
        at: usize,
        lost: bool,
        rerun: bool,
        delay: Duration,
        error: fn() -> StoreError,
    }

    impl FaultyCommit {
        fn new(dir: &std::path::Path, at: usize, error: fn() -> StoreError) -> Self {
            FaultyCommit {
                store: EmbeddedStore::open(dir).expect("open"),
                commits: AtomicUsize::new(0),
                at,
                lost: false,
                rerun: false,
                delay: Duration::ZERO,
                error,
            }
        }
    }

    impl Store for FaultyCommit {
        fn run_write(
            &self,
            f: &mut dyn FnMut(&mut dyn crate::store::Txn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            let n = self.commits.fetch_add(1, Ordering::SeqCst);
            if n == self.at && !self.lost {
                std::thread::sleep(self.delay);
                return Err((self.error)());
            }
            self.store.run_write(&mut *f)?;
            if n == self.at {
                if self.rerun {
                    self.store.run_write(&mut |t| f(t))?;
                }
                return Err((self.error)());
            }
            Ok(())
        }
        fn run_read(
            &self,
            f: &mut dyn FnMut(&mut dyn crate::store::ReadTxn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.store.run_read(f)
        }
        fn check(&self) -> Result<(), StoreError> {
            self.store.check()
        }
        fn describe(&self) -> String {
            self.store.describe()
        }
        fn metrics(&self) -> &crate::store::StoreMetrics {
            self.store.metrics()
        }
        fn reads_add_to_txn_size(&self) -> bool {
            self.store.reads_add_to_txn_size()
        }
    }

    /// A stream batch whose commit was made but reported failed, committed
    /// again with its attempts: its own records count as written once,
    /// while a line delivered before (and one repeated in the batch) stays a
    /// duplicate, in the summary and in the metrics; each line is counted
    /// received once; the readiness state follows each commit.
    #[test]
    fn a_retried_stream_batch_counts_its_own_writes_once_and_real_duplicates_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(FaultyCommit {
            lost: true,
            ..FaultyCommit::new(dir.path(), 0, || {
                StoreError::unavailable_msg("the commit's answer was lost")
            })
        });
        let ing = ingestor(&store);
        let monitor = uuid::Uuid::new_v4().to_string();
        let before = event_line(&monitor, 1, "s-own", "f");
        let mut lines = vec![Line::Whole(before.clone().into_bytes())];
        for i in 2..=10 {
            lines.push(Line::Whole(
                event_line(&monitor, i, "s-own", "f").into_bytes(),
            ));
        }
        lines.push(Line::Whole(b"garbage".to_vec()));
        // The first commit: the line delivered earlier, answered "failed".
        assert!(ing.ingest(&[before.as_bytes()]).is_err());
        assert!(ing.health().is_down());
        let mut attempts = Attempts::default();
        let s = ing
            .ingest_stream_attempt(&lines, &mut attempts)
            .expect("stored");
        assert!(ing.health().is_ready());
        assert_eq!(
            (s.received, s.written, s.duplicates, s.dead_lettered),
            (11, 9, 1, 1)
        );

        // Now the batch itself: its first attempt made the commit, the
        // answer was lost; the retry finds it all stored.
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(FaultyCommit {
            lost: true,
            ..FaultyCommit::new(dir.path(), 0, || {
                StoreError::unavailable_msg("the commit's answer was lost")
            })
        });
        let ing = ingestor(&store);
        let monitor = uuid::Uuid::new_v4().to_string();
        let twice = event_line(&monitor, 1, "s-own", "f");
        let mut lines = vec![
            Line::Whole(twice.clone().into_bytes()),
            Line::Whole(twice.into_bytes()),
        ];
        for i in 2..=10 {
            lines.push(Line::Whole(
                event_line(&monitor, i, "s-own", "f").into_bytes(),
            ));
        }
        lines.push(Line::Whole(b"garbage".to_vec()));
        let mut attempts = Attempts::default();
        assert!(ing.ingest_stream_attempt(&lines, &mut attempts).is_err());
        let s = ing
            .ingest_stream_attempt(&lines, &mut attempts)
            .expect("again");
        assert_eq!(
            (s.received, s.written, s.duplicates, s.dead_lettered),
            (12, 10, 1, 1),
            "{s:?}"
        );
        let m = ing.metrics();
        assert_eq!(
            (
                m.events_received.get(),
                m.events_written.get(),
                m.events_duplicate.get()
            ),
            (12, 10, 1)
        );
        assert_eq!(records_and_monitor(&store, &monitor).0, 10);
    }

    /// A lone batch whose first chunk fails to commit stores nothing of
    /// its later chunks, whether they wait for the writer or (above the
    /// transaction target) are written by the request itself.
    #[test]
    fn a_batch_whose_first_chunk_fails_stores_none_of_its_later_chunks() {
        let long = "p".repeat(2000);
        for long_after_first_chunk in [false, true] {
            let monitor = uuid::Uuid::new_v4().to_string();
            let lines: Vec<String> = (1..=1000)
                .map(|i| {
                    let big = long_after_first_chunk && i > LONE_CHUNK_LINES as u64;
                    event_line(&monitor, i, "s-fail", if big { &long } else { "f" })
                })
                .collect();
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let dir = tempfile::tempdir().expect("tempdir");
            let store: Arc<dyn Store> = Arc::new(FaultyCommit {
                delay: Duration::from_millis(300),
                ..FaultyCommit::new(dir.path(), 0, || {
                    StoreError::unavailable_msg("the first commit fails")
                })
            });
            let ingestor = ingestor(&store).with_group_commit(8_000_000);
            let err = ingestor.ingest(&lines).expect_err("the first chunk fails");
            assert!(err.to_string().contains("the first commit fails"), "{err}");
            let keys = Keys::default();
            let stored = store
                .read(|t| audit::count_in(t, &keys.audit_logs_all()))
                .expect("read");
            assert_eq!(
                stored, 0,
                "long lines after the first chunk: {long_after_first_chunk}"
            );
        }
    }

    /// Through the group-commit writer, concurrent batches committed in one
    /// transaction add their late records to one marker per day and tenant
    /// (whichever of late-after and group commit is set first); without
    /// late-after nothing is marked.
    #[test]
    fn group_commit_marks_late_records_per_day_and_tenant() {
        let (_dirs, stores) = both_write_paths();
        let hour = Duration::from_secs(3600);
        for (n, store) in stores.iter().enumerate() {
            let base = || ingestor(store);
            let ingestor = Arc::new(if n == 0 {
                base().with_late_after(hour).with_group_commit(1 << 20)
            } else {
                base().with_group_commit(1 << 20).with_late_after(hour)
            });
            let batches: Vec<Vec<String>> = (0..8u64)
                .map(|b| {
                    let monitor = uuid::Uuid::new_v4().to_string();
                    (0..50u64)
                        .map(|i| {
                            let mut v: serde_json::Value = serde_json::from_str(&event_line(
                                &monitor,
                                i + 1,
                                "s-late",
                                &format!("f{b}-{i}"),
                            ))
                            .expect("event");
                            v["tenant_id"] = if b % 2 == 0 { "acme" } else { "globex" }.into();
                            v.to_string()
                        })
                        .collect()
                })
                .collect();
            std::thread::scope(|scope| {
                for lines in &batches {
                    let ingestor = ingestor.clone();
                    scope.spawn(move || {
                        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
                        let s = ingestor.ingest(&refs).expect("ingest");
                        assert_eq!(s.written, 50);
                    });
                }
            });
            // Again: duplicates, nothing added.
            let refs: Vec<&[u8]> = batches[0].iter().map(|l| l.as_bytes()).collect();
            assert_eq!(ingestor.ingest(&refs).expect("again").duplicates, 50);
            let keys = Keys::default();
            let got = store.read(|t| late::markers(t, &keys)).expect("markers");
            let got: Vec<(String, String, i64)> = got
                .into_iter()
                .map(|m| (m.day, m.tenant, m.count))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("2026-11-26".into(), "acme".into(), 200),
                    ("2026-11-26".into(), "globex".into(), 200)
                ],
                "store {n}"
            );
        }
        // Without late-after (import): none.
        let (_dirs, stores) = both_write_paths();
        let monitor = uuid::Uuid::new_v4().to_string();
        let line = event_line(&monitor, 1, "s", "f");
        let plain = ingestor(&stores[0]).with_group_commit(1 << 20);
        assert_eq!(plain.ingest(&[line.as_bytes()]).expect("ingest").written, 1);
        let keys = Keys::default();
        assert!(stores[0]
            .read(|t| late::markers(t, &keys))
            .expect("markers")
            .is_empty());
    }

    /// A transaction committed, run again (finding its records stored),
    /// then failed: its records count as written on the retry.
    #[test]
    fn records_a_failed_transaction_committed_count_as_written_on_the_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(FaultyCommit {
            lost: true,
            rerun: true,
            ..FaultyCommit::new(dir.path(), 0, || {
                StoreError::unavailable_msg("commit_unknown_result, then timed out")
            })
        });
        let ing = ingestor(&store);
        let monitor = uuid::Uuid::new_v4().to_string();
        let lines: Vec<Line> = (1..=10)
            .map(|i| Line::Whole(event_line(&monitor, i, "s-own", "f").into_bytes()))
            .collect();
        let mut attempts = Attempts::default();
        assert!(ing.ingest_stream_attempt(&lines, &mut attempts).is_err());
        let s = ing
            .ingest_stream_attempt(&lines, &mut attempts)
            .expect("retry");
        assert_eq!((s.written, s.duplicates), (10, 0), "{s:?}");
    }

    #[test]
    fn a_record_stored_before_a_failed_attempt_stays_a_duplicate_on_the_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(FaultyCommit::new(dir.path(), 1, || {
            StoreError::unavailable_msg("refused")
        }));
        let ing = ingestor(&store);
        let monitor = uuid::Uuid::new_v4().to_string();
        let before = event_line(&monitor, 1, "s-own", "f");
        // Delivered and committed once (commit 0).
        ing.ingest(&[before.as_bytes()]).expect("first delivery");
        let mut lines = vec![Line::Whole(before.clone().into_bytes())];
        for i in 2..=10 {
            lines.push(Line::Whole(
                event_line(&monitor, i, "s-own", "f").into_bytes(),
            ));
        }
        let mut attempts = Attempts::default();
        // Commit 1 fails without committing anything.
        assert!(ing.ingest_stream_attempt(&lines, &mut attempts).is_err());
        let s = ing
            .ingest_stream_attempt(&lines, &mut attempts)
            .expect("retry");
        assert_eq!((s.written, s.duplicates), (9, 1), "{s:?}");
    }

    #[test]
    fn only_a_store_that_is_down_makes_the_sink_not_ready() {
        for (error, down) in [
            (
                (|| StoreError::unavailable_msg("disk full")) as fn() -> StoreError,
                true,
            ),
            (|| StoreError::TxnLimit("transaction too old".into()), false),
            (
                || StoreError::RetriesExhausted {
                    attempts: 5,
                    last: Box::new(StoreError::TxnLimit("too old".into())),
                },
                false,
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store: Arc<dyn Store> = Arc::new(FaultyCommit::new(dir.path(), 1, error));
            let ing = ingestor(&store);
            let monitor = uuid::Uuid::new_v4().to_string();
            let line = |i| event_line(&monitor, i, "s", "f");
            ing.ingest(&[line(1).as_bytes()]).expect("first");
            assert!(ing.health().is_ready());
            let e = ing.ingest(&[line(2).as_bytes()]).expect_err("second");
            assert_eq!(ing.health().is_down(), down, "{e}");
            ing.ingest(&[line(3).as_bytes()]).expect("third");
            assert!(ing.health().is_ready(), "{e}");
        }
    }
}
