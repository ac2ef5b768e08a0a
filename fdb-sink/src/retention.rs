//! Retention: removes audit records older than a cutoff, with their
//! `by_path` and `by_checksum` entries, and fixes the session summaries.
//!
//! Work is cut into bounded transactions (at most `batch_records` records
//! each). Every transaction leaves the store consistent: the records it
//! removes, their index entries and the summary adjustments commit together.
//! A run that stops half-way (crash, Ctrl-C) is therefore resumed simply by
//! running again, and running twice removes nothing more (idempotent).
//! A transaction reads the index entries of its records in one call (one
//! round trip on FoundationDB); one that still cannot finish in time is
//! tried again with half as many records ([`BatchSize`]). A store that
//! refuses transactions whatever their size (a locked database, throttling,
//! a recovery) stops the run at once ([`RetentionError::StoreUnavailable`]).
//!
//! Before removing anything, a run that would leave more than
//! [`GUARD_PERCENT`] % of the store's sessions without records is refused
//! unless allowed: the cutoff comes from this host's clock, and a clock set
//! far ahead makes every record look old.
//!
//! Per session: `events` and the per-type counters drop by what was removed
//! (a counter that reaches zero is cleared), `first_ns` becomes the time of
//! the oldest remaining record, and a session left without records loses its
//! whole summary. A `by_checksum` entry is removed when its last-seen time is
//! older than the cutoff (no newer record shows that content there). Dead
//! letters keyed and received before the cutoff are removed too, and so are agent rows whose
//! last heartbeat, claims whose expiry, and monitor rows whose latest event
//! is older than the cutoff (every sidecar start numbers its events under a
//! new monitor, so without this the rows, and the delivery gauge's scan of
//! them, would only grow). Those rows are read again in the transaction
//! that removes them: one renewed meanwhile (a heartbeat, a new claim, a new
//! event) stays. The `late` markers of days entirely before the cutoff go
//! too (their records are gone; [`crate::late`]), each only at the count it
//! had before any record was removed: a late record of such a day stored
//! during the run keeps its marker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::audit::{self, after};
use crate::keys::{decode_i64, decode_u64, encode_u64, Keys, SessionField};
use crate::store::{Store, StoreError, StoreExt, Txn};

/// How to run retention.
#[derive(Debug, Clone, Copy)]
pub struct RetentionOptions {
    /// Records with an event time before this (ns since the epoch) go.
    pub cutoff_ns: i64,
    /// Count what would go, change nothing.
    pub dry_run: bool,
    /// Records (or dead letters) per transaction at most; halved whenever
    /// a transaction cannot finish in time, doubled back after
    /// [`GROW_AFTER`] transactions in a row that did.
    pub batch_records: usize,
    /// Run even when more than [`GUARD_PERCENT`] % of the store's sessions
    /// would lose all of their records.
    pub allow_removing_all: bool,
}

/// A run that would empty more than this share (in %) of the store's
/// sessions is refused unless allowed: that is what a clock set far ahead
/// looks like, while a daily run with the usual period empties a small
/// share.
pub const GUARD_PERCENT: u64 = 90;

/// Fewer emptied sessions than this never trip the guard: a small store
/// (a test store, a new deployment) is cleaned without the operator.
pub const GUARD_MIN_SESSIONS: u64 = 10;

/// What a run removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Sessions in the store when the run began.
    pub sessions_total: u64,
    /// Sessions holding records older than the cutoff.
    pub sessions_affected: u64,
    /// Sessions left without any record (summary removed).
    pub sessions_removed: u64,
    /// A dry run only: a real run would be refused (it would empty more than
    /// [`GUARD_PERCENT`] % of the sessions) unless allowed.
    pub would_refuse: bool,
    pub records_removed: u64,
    pub by_path_removed: u64,
    pub by_checksum_removed: u64,
    pub dead_letters_removed: u64,
    /// Agent rows whose last heartbeat is older than the cutoff.
    pub agents_removed: u64,
    /// Claims that expired before the cutoff.
    pub claims_removed: u64,
    /// Monitor rows whose latest event is older than the cutoff.
    pub monitors_removed: u64,
    /// `late` markers of days entirely before the cutoff (their records
    /// are removed: nothing is left to re-export).
    pub late_markers_removed: u64,
    pub transactions: u64,
}

/// True when a dead letter's value says it was received at or after
/// `cutoff_ns`. A value that cannot be read is judged by its key alone.
fn received_after(value: &[u8], cutoff_ns: i64) -> bool {
    #[derive(serde::Deserialize)]
    struct Received<'a> {
        #[serde(borrow)]
        received_at: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Received>(value)
        .ok()
        .and_then(|r| file_event::Timestamp::parse(&r.received_at).ok())
        .is_some_and(|t| t.unix_nanos() >= i128::from(cutoff_ns))
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(StoreError),
    /// The store could not run a transaction for a reason that smaller
    /// transactions do not avoid (a locked database, throttling, a recovery,
    /// an unreachable cluster): the run stopped at once.
    #[error(
        "retention stopped: the store could not run its transaction ({chain}); this is not \
         about the transaction's size, so it was not split. Check the store (FoundationDB: \
         `fdbcli --exec status` shows a locked database, a recovery or throttling), then run \
         retention again: what was removed stays removed and the run resumes where it stopped",
        chain = crate::store::ErrorChain(.0)
    )]
    StoreUnavailable(#[source] StoreError),
    /// The run would empty (nearly) every session: nothing was removed.
    #[error(
        "refusing to remove anything: {emptied} of the store's {total} sessions would lose all \
         of their records (more than {GUARD_PERCENT} %), which is what a clock set far ahead \
         looks like (the cutoff is {cutoff}; check this node's time). If that is intended, run \
         `fdb-sink retention --allow-removing-all`"
    )]
    WouldRemoveAll {
        emptied: u64,
        total: u64,
        cutoff: String,
    },
}

impl From<StoreError> for RetentionError {
    fn from(e: StoreError) -> Self {
        if e.unavailable() && !e.smaller_may_fit() {
            RetentionError::StoreUnavailable(e)
        } else {
            RetentionError::Store(e)
        }
    }
}

/// True when emptying `emptied` of `total` sessions needs the operator's
/// consent (more than [`GUARD_PERCENT`] % of them, and at least
/// [`GUARD_MIN_SESSIONS`]).
pub fn guard_trips(emptied: u64, total: u64) -> bool {
    emptied >= GUARD_MIN_SESSIONS
        && u128::from(emptied) * 100 > u128::from(total) * u128::from(GUARD_PERCENT)
}

/// Session summary keys scanned per read transaction.
const SCAN_PAGE: usize = 10_000;

/// A session holding records older than the cutoff.
struct OldSession {
    id: (String, String, String),
    /// Whether every record is older than the cutoff (from the summary's
    /// `last_ns`; `None` when the summary has none).
    emptied: Option<bool>,
}

/// The sessions of the store: how many, and those whose oldest record is
/// older than the cutoff.
struct SessionScan {
    total: u64,
    old: Vec<OldSession>,
}

/// The summary fields of the session being scanned.
#[derive(Default)]
struct Summary {
    id: Option<(String, String, String)>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
}

fn ns_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SessionScan {
    /// Ends the summary of one session (its keys are contiguous).
    fn push(&mut self, s: Summary, cutoff_ns: i64) {
        let Some(id) = s.id else { return };
        self.total += 1;
        if s.first_ns.is_some_and(|f| ns_i64(f) < cutoff_ns) {
            self.old.push(OldSession {
                id,
                emptied: s.last_ns.map(|l| ns_i64(l) < cutoff_ns),
            });
        }
    }
}

/// Scans every session summary.
fn scan_sessions(
    store: &dyn Store,
    keys: &Keys,
    cutoff_ns: i64,
) -> Result<SessionScan, StoreError> {
    let all = keys.sessions_all();
    let mut begin = all.begin.clone();
    let mut scan = SessionScan {
        total: 0,
        old: Vec::new(),
    };
    let mut cur = Summary::default();
    loop {
        let rows = store.read(|t| t.get_range(&begin, &all.end, SCAN_PAGE, false))?;
        let Some((last, _)) = rows.last() else {
            scan.push(cur, cutoff_ns);
            return Ok(scan);
        };
        begin = after(last);
        for (k, v) in &rows {
            let f = keys
                .decode_session_field(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let id = (f.tenant, f.user, f.session);
            if cur.id.as_ref() != Some(&id) {
                scan.push(std::mem::take(&mut cur), cutoff_ns);
                cur.id = Some(id);
            }
            match f.field {
                SessionField::FirstNs => cur.first_ns = Some(decode_u64(v)),
                SessionField::LastNs => cur.last_ns = Some(decode_u64(v)),
                SessionField::Events | SessionField::TypeCount(_) => {}
            }
        }
    }
}

/// True when no record of the session is at or after the cutoff.
fn session_emptied(
    store: &dyn Store,
    keys: &Keys,
    (t, u, s): (&str, &str, &str),
    cutoff_ns: i64,
) -> Result<bool, StoreError> {
    let newer = keys.audit_logs_session_between(t, u, s, cutoff_ns, i64::MAX);
    let session = keys.audit_logs_session(t, u, s);
    store.read(|txn| {
        txn.get_range(&newer.begin, &session.end, 1, false)
            .map(|v| v.is_empty())
    })
}

/// True when a transaction failed because it did too much for the store's
/// limits, so that the same work may fit in smaller steps
/// ([`StoreError::smaller_may_fit`]: on FoundationDB too old after 5 s,
/// timed out, too large, or retried until it gave up on one of those or on
/// conflicts). A locked database, throttling, a recovery or an unreachable
/// cluster is not: halving would only repeat the failure down to one record.
pub fn batch_too_big(e: &StoreError) -> bool {
    e.smaller_may_fit()
}

/// Transactions in a row that must finish at a reduced size before it is
/// doubled again. Each time a size reached by doubling fails, the number
/// needed doubles (up to [`GROW_AFTER_MAX`]), so that a limit that holds for
/// the whole run costs a failed transaction less and less often.
pub const GROW_AFTER: u32 = 8;
pub const GROW_AFTER_MAX: u32 = 1024;

/// The number of items per transaction: starts at `--batch-records`, is
/// halved (down to 1) whenever a transaction of that size fails with
/// [`batch_too_big`], and doubled again (up to `--batch-records`) after
/// [`GROW_AFTER`] transactions in a row that finished: a slow spell of the
/// cluster (a recovery) does not leave the rest of a long run at a few
/// records per transaction.
#[derive(Debug)]
pub struct BatchSize {
    size: usize,
    max: usize,
    /// Steps that finished in a row at the current size.
    finished: u32,
    /// Steps that must finish in a row before the size doubles.
    grow_after: u32,
    /// The current size was reached by doubling (and has not finished a
    /// step yet).
    grown: bool,
}

impl BatchSize {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        BatchSize {
            size,
            max: size,
            finished: 0,
            grow_after: GROW_AFTER,
            grown: false,
        }
    }

    pub fn get(&self) -> usize {
        self.size
    }

    /// Runs `step` with the current size; on an error that a smaller
    /// transaction may avoid, halves the size and runs it again. An error
    /// at size 1, or of another kind, is returned.
    pub fn run<T>(
        &mut self,
        what: &str,
        mut step: impl FnMut(usize) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        loop {
            match step(self.size) {
                Err(e) if self.size > 1 && batch_too_big(&e) => {
                    let smaller = self.size / 2;
                    tracing::warn!(
                        error = %e,
                        from = self.size,
                        to = smaller,
                        "retention: a transaction of {} {what} did not finish; \
                         trying again with {smaller} per transaction",
                        self.size
                    );
                    self.size = smaller;
                    self.finished = 0;
                    if self.grown {
                        self.grow_after = self.grow_after.saturating_mul(2).min(GROW_AFTER_MAX);
                        self.grown = false;
                    }
                }
                Ok(v) => {
                    self.finished += 1;
                    self.grown = false;
                    if self.size < self.max && self.finished >= self.grow_after {
                        self.size = self.size.saturating_mul(2).min(self.max);
                        self.finished = 0;
                        self.grown = true;
                        tracing::info!(
                            to = self.size,
                            "retention: {what} per transaction raised again"
                        );
                    }
                    return Ok(v);
                }
                Err(e) => {
                    self.finished = 0;
                    return Err(e);
                }
            }
        }
    }
}

#[derive(Default)]
struct BatchOutcome {
    records: u64,
    by_path: u64,
    by_checksum: u64,
    session_removed: bool,
}

/// True when a `by_checksum` entry (its last-seen time) is older than the
/// cutoff: no newer record shows that content at that path.
fn checksum_stale(last_seen: &[u8], cutoff_u: u64) -> bool {
    decode_u64(last_seen) < cutoff_u
}

/// The `by_path` keys that exist and the `by_checksum` keys to clear.
type Found<'k> = (Vec<&'k [u8]>, Vec<&'k [u8]>);

/// The index keys of some records: `by_path` and `by_checksum`, each once.
#[derive(Default)]
struct IndexKeys {
    by_path: Vec<Vec<u8>>,
    by_checksum: Vec<Vec<u8>>,
    seen: HashSet<Vec<u8>>,
}

impl IndexKeys {
    fn of(keys: &Keys, t: &str, recs: &[audit::StoredRecord]) -> Self {
        let mut out = IndexKeys::default();
        for r in recs {
            let ev = &r.record.event;
            let mut paths = vec![ev.path.as_str()];
            if let Some(from) = ev.from.as_deref().filter(|f| *f != ev.path) {
                paths.push(from);
            }
            for p in &paths {
                let k = keys.by_path(t, p, r.key.ts_ns, &r.key.event_id);
                if out.seen.insert(k.clone()) {
                    out.by_path.push(k);
                }
            }
            if let Some(c) = &ev.checksum {
                let k = keys.by_checksum(t, c, paths[0]);
                if out.seen.insert(k.clone()) {
                    out.by_checksum.push(k);
                }
            }
        }
        out
    }

    /// Reads every key at once; returns the `by_path` keys that exist and
    /// the `by_checksum` keys last seen before the cutoff.
    fn read(
        &self,
        txn: &mut dyn crate::store::ReadTxn,
        cutoff_u: u64,
    ) -> Result<Found<'_>, StoreError> {
        let all: Vec<&[u8]> = self
            .by_path
            .iter()
            .chain(&self.by_checksum)
            .map(Vec::as_slice)
            .collect();
        let values = txn.get_many(&all)?;
        let (paths, checksums) = values.split_at(self.by_path.len().min(values.len()));
        let present = self
            .by_path
            .iter()
            .zip(paths)
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.as_slice())
            .collect();
        let stale = self
            .by_checksum
            .iter()
            .zip(checksums)
            .filter(|(_, v)| v.as_deref().is_some_and(|v| checksum_stale(v, cutoff_u)))
            .map(|(k, _)| k.as_slice())
            .collect();
        Ok((present, stale))
    }
}

/// Removes up to `limit` old records of one session, in `txn`.
fn remove_batch(
    txn: &mut dyn Txn,
    keys: &Keys,
    (t, u, s): (&str, &str, &str),
    cutoff_ns: i64,
    limit: usize,
) -> Result<BatchOutcome, StoreError> {
    let mut out = BatchOutcome::default();
    let range = keys.audit_logs_session_between(t, u, s, i64::MIN, cutoff_ns);
    let recs = audit::records_in(txn, keys, &range, limit, false)?;
    if recs.is_empty() {
        return Ok(out);
    }
    let cutoff_u = u64::try_from(cutoff_ns).unwrap_or(0);
    // Every index entry is read in one call (one round trip on
    // FoundationDB), before any is cleared: each key is listed once, so an
    // entry shared by several records is counted and cleared once.
    let index = IndexKeys::of(keys, t, &recs);
    let (paths, checksums) = index.read(txn, cutoff_u)?;
    let mut by_type: HashMap<String, i64> = HashMap::new();
    for r in &recs {
        txn.clear(&r.raw_key)?;
        out.records += 1;
        *by_type
            .entry(r.record.event.event_type.as_str().to_owned())
            .or_default() += 1;
    }
    for k in paths {
        txn.clear(k)?;
        out.by_path += 1;
    }
    for k in checksums {
        txn.clear(k)?;
        out.by_checksum += 1;
    }
    // Fix the summary, seeing this transaction's own deletions.
    let session = keys.audit_logs_session(t, u, s);
    let first_left = txn.get_range(&session.begin, &session.end, 1, false)?;
    match first_left.first() {
        None => {
            let sr = keys.session(t, u, s);
            txn.clear_range(&sr.begin, &sr.end)?;
            out.session_removed = true;
        }
        Some((k, _)) => {
            let first = keys
                .decode_audit_log(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            txn.atomic_add(&keys.session_events(t, u, s), -(out.records as i64))?;
            let types: Vec<(Vec<u8>, i64)> = by_type
                .iter()
                .map(|(ty, n)| (keys.session_type_count(t, u, s, ty), *n))
                .collect();
            let refs: Vec<&[u8]> = types.iter().map(|(k, _)| k.as_slice()).collect();
            let have = txn.get_many(&refs)?;
            for ((k, n), have) in types.iter().zip(have) {
                if have.map_or(0, |v| decode_i64(&v)) <= *n {
                    txn.clear(k)?;
                } else {
                    txn.atomic_add(k, -n)?;
                }
            }
            txn.set(
                &keys.session_first_ns(t, u, s),
                &encode_u64(u64::try_from(first.ts_ns).unwrap_or(0)),
            )?;
        }
    }
    Ok(out)
}

/// What one read of a dry run found.
struct Counted {
    records: u64,
    by_path: u64,
    stale: Vec<Vec<u8>>,
    last: Option<Vec<u8>>,
}

/// Counts what retention would remove from one session (no writes).
/// `checksums` holds the `by_checksum` keys counted so far in this run: an
/// entry shared by several old records is removed once.
#[allow(clippy::too_many_arguments)]
fn count_session(
    store: &dyn Store,
    keys: &Keys,
    (t, u, s): (&str, &str, &str),
    cutoff_ns: i64,
    batch: &mut BatchSize,
    report: &mut RetentionReport,
    checksums: &mut HashSet<Vec<u8>>,
    emptied: bool,
) -> Result<(), StoreError> {
    let range = keys.audit_logs_session_between(t, u, s, i64::MIN, cutoff_ns);
    let cutoff_u = u64::try_from(cutoff_ns).unwrap_or(0);
    let mut begin = range.begin.clone();
    loop {
        let r = crate::keys::KeyRange {
            begin: begin.clone(),
            end: range.end.clone(),
        };
        // The same reads the removal makes: the entries it would clear.
        let counted = batch.run("records", |limit| {
            store.read(|txn| {
                let recs = audit::records_in(txn, keys, &r, limit, false)?;
                let index = IndexKeys::of(keys, t, &recs);
                let (paths, stale) = index.read(txn, cutoff_u)?;
                Ok(Counted {
                    records: recs.len() as u64,
                    by_path: paths.len() as u64,
                    stale: stale.into_iter().map(<[u8]>::to_vec).collect(),
                    last: recs.last().map(|r| r.raw_key.clone()),
                })
            })
        })?;
        let Some(last) = counted.last else { break };
        begin = after(&last);
        report.records_removed += counted.records;
        report.by_path_removed += counted.by_path;
        for k in counted.stale {
            if checksums.insert(k) {
                report.by_checksum_removed += 1;
            }
        }
    }
    if emptied {
        report.sessions_removed += 1;
    }
    Ok(())
}

/// Runs retention once. `progress` is called after every transaction.
///
/// Clears the rows of `range` that `old` accepts (given key and value), a page per
/// transaction (each page read and cleared in one, so that what is counted
/// is what is removed; only counted with `dry_run`), adding each page's
/// count to `report` with `count`.
#[allow(clippy::too_many_arguments)]
fn clear_pages(
    store: &dyn Store,
    batch: &mut BatchSize,
    range: &crate::keys::KeyRange,
    what: &str,
    dry_run: bool,
    old: &dyn Fn(&[u8], &[u8]) -> bool,
    report: &mut RetentionReport,
    count: &mut dyn FnMut(&mut RetentionReport, u64),
    progress: &mut dyn FnMut(&RetentionReport),
) -> Result<(), StoreError> {
    let mut begin = range.begin.clone();
    loop {
        let (n, end) = batch.run(what, |limit| {
            let page = |txn: &mut dyn crate::store::ReadTxn| {
                let rows = txn.get_range(&begin, &range.end, limit, false)?;
                let end = rows.last().map(|(k, _)| after(k));
                let keys: Vec<Vec<u8>> = rows
                    .into_iter()
                    .filter(|(k, v)| old(k, v))
                    .map(|(k, _)| k)
                    .collect();
                Ok((keys, end))
            };
            if dry_run {
                return store
                    .read(|txn| page(txn))
                    .map(|(keys, end)| (keys.len(), end));
            }
            store.transact(|txn| {
                let (keys, end) = page(&mut *txn)?;
                for k in &keys {
                    txn.clear(k)?;
                }
                Ok((keys.len(), end))
            })
        })?;
        let Some(end) = end else { return Ok(()) };
        if !dry_run {
            report.transactions += 1;
        }
        count(report, n as u64);
        begin = end;
        progress(report);
    }
}

/// Before anything is removed, refuses ([`RetentionError::WouldRemoveAll`])
/// a run that would empty more than [`GUARD_PERCENT`] % of the sessions,
/// unless `allow_removing_all`; a dry run reports it in `would_refuse`.
pub fn run(
    store: &dyn Store,
    keys: &Keys,
    opts: RetentionOptions,
    progress: &mut dyn FnMut(&RetentionReport),
) -> Result<RetentionReport, RetentionError> {
    let mut batch = BatchSize::new(opts.batch_records);
    let mut report = RetentionReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // The `late` markers of the days whose records this run removes, as
    // they are before any record is removed: only a marker that still holds
    // this count at the end is cleared. One counted after this read (a late
    // record of such a day stored during the run, possibly after its day's
    // records were removed) keeps its marker, so the record is archived.
    let first_kept = crate::late::day_string(crate::late::day_of(opts.cutoff_ns));
    let marks = keys.late_before(&first_kept);
    let marks_seen: HashMap<Vec<u8>, Vec<u8>> = store
        .read(|t| t.get_range(&marks.begin, &marks.end, 0, false))?
        .into_iter()
        .collect();
    let scan = scan_sessions(store, keys, opts.cutoff_ns)?;
    report.sessions_total = scan.total;
    let mut old = Vec::with_capacity(scan.old.len());
    let mut emptied = 0;
    for o in scan.old {
        let (t, u, s) = &o.id;
        let e = match o.emptied {
            Some(e) => e,
            None => session_emptied(store, keys, (t, u, s), opts.cutoff_ns)?,
        };
        emptied += u64::from(e);
        old.push((o.id, e));
    }
    if guard_trips(emptied, scan.total) && !opts.allow_removing_all {
        if opts.dry_run {
            report.would_refuse = true;
        } else {
            return Err(RetentionError::WouldRemoveAll {
                emptied,
                total: scan.total,
                cutoff: crate::timespec::format_ns(opts.cutoff_ns),
            });
        }
    }
    let mut checksums = HashSet::new();
    for ((t, u, s), emptied) in old {
        report.sessions_affected += 1;
        let id = (t.as_str(), u.as_str(), s.as_str());
        if opts.dry_run {
            count_session(
                store,
                keys,
                id,
                opts.cutoff_ns,
                &mut batch,
                &mut report,
                &mut checksums,
                emptied,
            )?;
            progress(&report);
            continue;
        }
        loop {
            let b = batch.run("records", |limit| {
                store.transact(|txn| remove_batch(txn, keys, id, opts.cutoff_ns, limit))
            })?;
            if b.records == 0 {
                break;
            }
            report.transactions += 1;
            report.records_removed += b.records;
            report.by_path_removed += b.by_path;
            report.by_checksum_removed += b.by_checksum;
            report.sessions_removed += u64::from(b.session_removed);
            progress(&report);
        }
    }
    // Dead letters: each page is read and cleared in one transaction, so
    // that what is counted is what is removed. One keyed by an old timestamp
    // of its own but received after the cutoff stays: the daily export
    // archives dead letters by the day they were received.
    let dl = keys.dead_letter_between(i64::MIN, opts.cutoff_ns);
    let old_letter = |_: &[u8], v: &[u8]| !received_after(v, opts.cutoff_ns);
    clear_pages(
        store,
        &mut batch,
        &dl,
        "dead letters",
        opts.dry_run,
        &old_letter,
        &mut report,
        &mut |r, n| r.dead_letters_removed += n,
        progress,
    )?;
    // Markers of late records of days entirely before the cutoff: their
    // records are gone, there is nothing left to re-export. Each is read
    // again in the transaction that clears it (on FoundationDB a concurrent
    // ADD then conflicts, and the retry sees it) and cleared only at the
    // count read before the records were removed.
    let unchanged = |k: &[u8], v: &[u8]| marks_seen.get(k).is_some_and(|seen| seen == v);
    clear_pages(
        store,
        &mut batch,
        &marks,
        "late markers",
        opts.dry_run,
        &unchanged,
        &mut report,
        &mut |r, n| r.late_markers_removed += n,
        progress,
    )?;
    // Agent rows and claims long past their heartbeat or expiry.
    for (range, what) in [(keys.agents_all(), "agent"), (keys.claims_all(), "claim")] {
        let mut begin = range.begin.clone();
        loop {
            let rows = batch.run("rows", |limit| {
                store.read(|t| t.get_range(&begin, &range.end, limit, false))
            })?;
            let Some((last, _)) = rows.last() else { break };
            begin = after(last);
            let stale: Vec<Vec<u8>> = rows
                .into_iter()
                .filter(|(_, v)| stale_row(what, v, opts.cutoff_ns))
                .map(|(k, _)| k)
                .collect();
            if stale.is_empty() {
                continue;
            }
            let n = if opts.dry_run {
                stale.len() as u64
            } else {
                report.transactions += 1;
                store.transact(|txn| {
                    // Read again in this transaction: a heartbeat or a new
                    // claim since the read above keeps its row (and on
                    // FoundationDB the read makes a concurrent one conflict).
                    let refs: Vec<&[u8]> = stale.iter().map(Vec::as_slice).collect();
                    let now = txn.get_many(&refs)?;
                    let mut removed = 0;
                    for (k, v) in stale.iter().zip(now) {
                        if v.is_some_and(|v| stale_row(what, &v, opts.cutoff_ns)) {
                            txn.clear(k)?;
                            removed += 1;
                        }
                    }
                    Ok(removed)
                })?
            };
            if what == "agent" {
                report.agents_removed += n;
            } else {
                report.claims_removed += n;
            }
            progress(&report);
        }
    }
    // Monitor rows of monitors silent since before the cutoff (rows written
    // before `last_ns` was kept have none and stay).
    let cutoff_u = u64::try_from(opts.cutoff_ns).unwrap_or(0);
    let mut stale = Vec::new();
    audit::each_monitor(store, keys, &mut |m| {
        if m.last_ns > 0 && m.last_ns < cutoff_u {
            stale.push(m.monitor_id);
        }
    })?;
    let mut done = 0;
    while done < stale.len() {
        if opts.dry_run {
            let n = batch.get().min(stale.len() - done);
            report.monitors_removed += n as u64;
            done += n;
            progress(&report);
            continue;
        }
        let (n, removed) = batch.run("monitor rows", |limit| {
            let chunk = &stale[done..stale.len().min(done + limit)];
            store.transact(|txn| {
                // Read again in this transaction: a monitor that has just
                // sent an event keeps its row (and on FoundationDB the read
                // makes a concurrent ingest conflict).
                let last_keys: Vec<Vec<u8>> =
                    chunk.iter().map(|id| keys.monitor_last_ns(id)).collect();
                let refs: Vec<&[u8]> = last_keys.iter().map(Vec::as_slice).collect();
                let last = txn.get_many(&refs)?;
                let mut removed = 0;
                for (id, last) in chunk.iter().zip(last) {
                    if last.is_some_and(|v| decode_u64(&v) < cutoff_u) {
                        let r = keys.monitor(id);
                        txn.clear_range(&r.begin, &r.end)?;
                        removed += 1;
                    }
                }
                Ok((chunk.len(), removed))
            })
        })?;
        done += n;
        report.transactions += 1;
        report.monitors_removed += removed;
        progress(&report);
    }
    Ok(report)
}

/// True when an agent's last heartbeat and the expiry of its latest claim
/// (`until_ns`: a session that made claims and sends no heartbeat keeps its
/// row while they run, or they would lose their holder), or a claim's
/// expiry, are older than the cutoff (unreadable rows are left alone).
fn stale_row(what: &str, value: &[u8], cutoff_ns: i64) -> bool {
    #[derive(serde::Deserialize)]
    struct Times {
        received_ns: Option<i64>,
        until_ns: Option<i64>,
        expires_ns: Option<i64>,
    }
    let Ok(t) = serde_json::from_slice::<Times>(value) else {
        return false;
    };
    let at = if what == "agent" {
        t.received_ns.map(|r| r.max(t.until_ns.unwrap_or(r)))
    } else {
        t.expires_ns
    };
    at.is_some_and(|ns| ns < cutoff_ns)
}

/// The retention loop inside `serve`: once at start, then every `every`;
/// `allow_removing_all` passes the guard against a wrong clock (see
/// [`RetentionOptions::allow_removing_all`]).
pub async fn periodic(
    store: Arc<dyn Store>,
    keys: Keys,
    older_than: Duration,
    every: Duration,
    allow_removing_all: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let s = store.clone();
        let k = keys.clone();
        let r = tokio::task::spawn_blocking(move || {
            let opts = RetentionOptions {
                cutoff_ns: crate::timespec::ns_ago(older_than),
                dry_run: false,
                batch_records: 500,
                allow_removing_all,
            };
            run(s.as_ref(), &k, opts, &mut |_| {})
        })
        .await;
        match r {
            Ok(Ok(rep)) => tracing::info!(
                sessions_affected = rep.sessions_affected,
                sessions_removed = rep.sessions_removed,
                records_removed = rep.records_removed,
                by_path_removed = rep.by_path_removed,
                by_checksum_removed = rep.by_checksum_removed,
                dead_letters_removed = rep.dead_letters_removed,
                agents_removed = rep.agents_removed,
                claims_removed = rep.claims_removed,
                monitors_removed = rep.monitors_removed,
                late_markers_removed = rep.late_markers_removed,
                transactions = rep.transactions,
                "retention run finished"
            ),
            Ok(Err(e @ RetentionError::WouldRemoveAll { .. })) => tracing::error!(
                error = %e,
                "retention run refused; nothing removed (restart serve with \
                 --retention-allow-removing-all once if intended); will check again"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention run failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn line(ts: &str, session: &str, path: &str, checksum: &str) -> Vec<u8> {
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": "0190b5a0-0000-7000-8000-000000000001",
            "seq": 1,
            "timestamp": ts,
            "event_type": "update",
            "kind": "file",
            "path": path,
            "checksum": checksum,
            "tenant_id": "t",
            "user_id": "u",
            "session_id": session,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn removes_old_records_their_indexes_and_fixes_summaries() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let cs = format!("sha256:{:064x}", 1);
        let lines = [
            line("2020-01-01T00:00:00Z", "old", "a", &cs),
            line("2020-01-02T00:00:00Z", "mixed", "b", &cs),
            line("2020-01-03T00:00:00Z", "mixed", "b", &cs),
            line("2026-01-01T00:00:00Z", "mixed", "c", &cs),
        ];
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l, 0))
            .collect();
        audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let cutoff = crate::timespec::parse_time_ns("2025-01-01T00:00:00Z").expect("t");
        let opts = RetentionOptions {
            cutoff_ns: cutoff,
            dry_run: true,
            batch_records: 1,
            allow_removing_all: false,
        };
        let dry = run(&store, &keys, opts, &mut |_| {}).expect("dry");
        assert_eq!((dry.records_removed, dry.sessions_removed), (3, 1));
        let wet = run(
            &store,
            &keys,
            RetentionOptions {
                dry_run: false,
                ..opts
            },
            &mut |_| {},
        )
        .expect("run");
        assert_eq!(
            (
                wet.records_removed,
                wet.sessions_removed,
                wet.by_path_removed,
                wet.by_checksum_removed
            ),
            (3, 1, 3, 2)
        );
        assert_eq!(wet.transactions, 3, "one record per transaction");
        let (sessions, paths) = store
            .read(|t| {
                Ok((
                    audit::sessions_in(t, &keys, &keys.sessions_all())?,
                    audit::checksum_paths(t, &keys, "t", &cs, 0)?,
                ))
            })
            .expect("read");
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!((s.session.as_str(), s.events), ("mixed", 1));
        assert_eq!(s.by_type.get("update"), Some(&1));
        assert_eq!(
            s.first_ns,
            crate::timespec::parse_time_ns("2026-01-01T00:00:00Z").expect("t") as u64
        );
        assert_eq!(
            paths.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        let again = run(
            &store,
            &keys,
            RetentionOptions {
                dry_run: false,
                ..opts
            },
            &mut |_| {},
        )
        .expect("again");
        assert_eq!(again.records_removed, 0, "idempotent");
    }

    /// An embedded store for these tests, with two options for its write
    /// transactions:
    /// - `budget` `(max_trips, max_rows)`, as FoundationDB's 5 s: a
    ///   transaction making more than `max_trips` read calls (each a network
    ///   round trip there) or reading more than `max_rows` keys fails as a
    ///   transaction that kept growing too old does;
    /// - `before_write`: another client commits the rows of the next entry
    ///   (if any) just before each write transaction starts (an API request
    ///   landing between retention's read and its write).
    struct Wrapped {
        inner: EmbeddedStore,
        budget: Option<(usize, usize)>,
        before_write: std::sync::Mutex<std::collections::VecDeque<Option<Rows>>>,
        /// Another client's write, run once just before the first write
        /// transaction that starts while the condition holds.
        hook: std::sync::Mutex<Option<Hook>>,
    }

    /// When (given the store) and what another client writes.
    type Hook = (
        Box<dyn Fn(&EmbeddedStore) -> bool + Send>,
        Box<dyn FnOnce(&EmbeddedStore) + Send>,
    );

    /// Keys and the values another client writes.
    type Rows = Vec<(Vec<u8>, String)>;

    impl Wrapped {
        fn budget(inner: EmbeddedStore, max_trips: usize, max_rows: usize) -> Self {
            Wrapped {
                inner,
                budget: Some((max_trips, max_rows)),
                before_write: Default::default(),
                hook: Default::default(),
            }
        }

        fn interleaved(inner: EmbeddedStore, before_write: Vec<Option<Rows>>) -> Self {
            Wrapped {
                inner,
                budget: None,
                before_write: std::sync::Mutex::new(before_write.into()),
                hook: Default::default(),
            }
        }

        fn hooked(inner: EmbeddedStore, when: Hook) -> Self {
            Wrapped {
                inner,
                budget: None,
                before_write: Default::default(),
                hook: std::sync::Mutex::new(Some(when)),
            }
        }
    }

    struct BudgetTxn<'t> {
        txn: &'t mut dyn Txn,
        trips: usize,
        rows: usize,
        max_trips: usize,
        max_rows: usize,
    }

    impl BudgetTxn<'_> {
        fn spend(&mut self, rows: usize) -> Result<(), StoreError> {
            self.trips += 1;
            self.rows += rows;
            if self.trips > self.max_trips || self.rows > self.max_rows {
                return Err(StoreError::RetriesExhausted {
                    attempts: 20,
                    last: Box::new(StoreError::TxnLimit(format!(
                        "transaction_too_old after {} reads of {} keys",
                        self.trips, self.rows
                    ))),
                });
            }
            Ok(())
        }
    }

    impl crate::store::ReadTxn for BudgetTxn<'_> {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.spend(1)?;
            self.txn.get(key)
        }
        fn get_range(
            &mut self,
            begin: &[u8],
            end: &[u8],
            limit: usize,
            reverse: bool,
        ) -> Result<Vec<crate::store::Kv>, StoreError> {
            let r = self.txn.get_range(begin, end, limit, reverse)?;
            self.spend(r.len())?;
            Ok(r)
        }
        fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
            self.spend(keys.len())?;
            self.txn.exist_many(keys)
        }
        fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.spend(keys.len())?;
            self.txn.get_many(keys)
        }
    }

    impl Txn for BudgetTxn<'_> {
        fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.txn.set(key, value)
        }
        fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.txn.clear(key)
        }
        fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
            self.txn.clear_range(begin, end)
        }
        fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
            self.txn.atomic_add(key, delta)
        }
        fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.txn.atomic_max(key, value)
        }
        fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.txn.atomic_min(key, value)
        }
        fn written_bytes(&self) -> usize {
            self.txn.written_bytes()
        }
    }

    impl Store for Wrapped {
        fn run_write(
            &self,
            f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            let mut hook = self.hook.lock().expect("lock");
            if hook.as_ref().is_some_and(|(when, _)| when(&self.inner)) {
                if let Some((_, write)) = hook.take() {
                    write(&self.inner);
                }
            }
            drop(hook);
            let other = self.before_write.lock().expect("lock").pop_front();
            if let Some(Some(rows)) = other {
                self.inner.transact(|t| {
                    for (k, v) in &rows {
                        t.set(k, v.as_bytes())?;
                    }
                    Ok(())
                })?;
            }
            let Some((max_trips, max_rows)) = self.budget else {
                return self.inner.run_write(f);
            };
            self.inner.run_write(&mut |txn| {
                f(&mut BudgetTxn {
                    txn,
                    trips: 0,
                    rows: 0,
                    max_trips,
                    max_rows,
                })
            })
        }
        fn run_read(
            &self,
            f: &mut dyn FnMut(&mut dyn crate::store::ReadTxn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.run_read(f)
        }
        fn check(&self) -> Result<(), StoreError> {
            self.inner.check()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn metrics(&self) -> &crate::store::StoreMetrics {
            self.inner.metrics()
        }
    }

    /// `n` old records (moves, with content) in one session, and one recent
    /// record in another so that the run empties a minority of sessions.
    fn seed_old(store: &EmbeddedStore, keys: &Keys, n: usize) {
        let mut lines: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let cs = format!("sha256:{:064x}", i % 7);
                let mut v: serde_json::Value = serde_json::from_slice(&line(
                    &format!("2020-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                    "old",
                    &format!("p{}", i % 10),
                    &cs,
                ))
                .expect("json");
                v["event_type"] = "move".into();
                v["from"] = format!("q{}", i % 10).into();
                v["to"] = format!("p{}", i % 10).into();
                v.to_string().into_bytes()
            })
            .collect();
        for s in ["new-1", "new-2"] {
            lines.push(line(
                "2026-01-01T00:00:00Z",
                s,
                "n",
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            ));
        }
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(keys, l, 0))
            .collect();
        let w = audit::write_items(store, keys, &items, Default::default()).expect("write");
        assert_eq!(w.written as usize, n + 2);
    }

    /// A dead letter goes when both its key time and its receipt are before
    /// the cutoff: one with an old timestamp of its own that arrived after
    /// the cutoff waits for the daily export, which selects by receipt.
    #[test]
    fn dead_letters_received_after_the_cutoff_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = Keys::default();
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let ns = |t: &str| crate::timespec::parse_time_ns(t).expect("t");
        let (old, new) = (ns("2020-06-01T00:00:00Z"), ns("2026-06-01T00:00:00Z"));
        let bad = |tag: &str, ts: Option<&str>| {
            let mut v = serde_json::json!({"schema": "file-event/1", "note": tag});
            if let Some(ts) = ts {
                v["timestamp"] = ts.into();
            }
            v.to_string().into_bytes()
        };
        let letters = [
            (bad("old-received-old", Some("2020-05-01T00:00:00Z")), old),
            (bad("old-received-new", Some("2020-05-01T00:00:00Z")), new),
            (bad("no-ts-received-old", None), old),
            (bad("new-received-new", Some("2026-05-01T00:00:00Z")), new),
        ];
        let items: Vec<_> = letters
            .iter()
            .map(|(l, received)| crate::record::validate_line(&keys, l, *received))
            .collect();
        let w = audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        assert_eq!(w.dead_lettered, 4);
        let left = |store: &EmbeddedStore| -> Vec<String> {
            let mut notes: Vec<String> = store
                .read(|t| audit::dead_letters(t, &keys, 0))
                .expect("read")
                .into_iter()
                .map(|d| d.letter.raw)
                .collect();
            notes.sort();
            notes
        };
        let dry = run(&store, &keys, opts_2025(true, 100, false), &mut |_| {}).expect("dry");
        assert_eq!(dry.dead_letters_removed, 2);
        assert_eq!(left(&store).len(), 4);
        let r = run(&store, &keys, opts_2025(false, 1, false), &mut |_| {}).expect("run");
        assert_eq!(r.dead_letters_removed, 2);
        let kept = left(&store);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(
            kept.iter().any(|raw| raw.contains("old-received-new")),
            "{kept:?}"
        );
        assert!(
            kept.iter().any(|raw| raw.contains("new-received-new")),
            "{kept:?}"
        );
        let again = run(&store, &keys, opts_2025(false, 1, false), &mut |_| {}).expect("again");
        assert_eq!(again.dead_letters_removed, 0);
    }

    /// Markers of late records go with the days they name, once the whole
    /// day is before the cutoff; a dry run counts them and keeps them.
    #[test]
    fn late_markers_of_days_entirely_before_the_cutoff_are_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = Keys::default();
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let days = ["2024-12-30", "2024-12-31", "2025-01-01", "2025-01-02"];
        store
            .transact(|t| {
                for (i, day) in days.iter().enumerate() {
                    for tenant in ["acme", "globex"] {
                        t.atomic_add(&keys.late(day, tenant), i as i64 + 1)?;
                    }
                }
                Ok(())
            })
            .expect("mark");
        let left = || -> Vec<String> {
            store
                .read(|t| crate::late::markers(t, &keys))
                .expect("read")
                .into_iter()
                .map(|m| format!("{} {}", m.day, m.tenant))
                .collect()
        };
        // In the middle of 2025-01-01: that day still has records.
        let mut opts = opts_2025(true, 3, false);
        opts.cutoff_ns += 12 * 3_600_000_000_000;
        let dry = run(&store, &keys, opts, &mut |_| {}).expect("dry");
        assert_eq!(dry.late_markers_removed, 4);
        assert_eq!(left().len(), 8, "a dry run removes nothing");
        opts.dry_run = false;
        let r = run(&store, &keys, opts, &mut |_| {}).expect("run");
        assert_eq!(r.late_markers_removed, 4);
        assert_eq!(
            left(),
            [
                "2025-01-01 acme",
                "2025-01-01 globex",
                "2025-01-02 acme",
                "2025-01-02 globex"
            ]
        );
        let again = run(&store, &keys, opts, &mut |_| {}).expect("again");
        assert_eq!(again.late_markers_removed, 0);
        // At the very start of a day, the day before is entirely before it.
        opts.cutoff_ns = crate::timespec::parse_time_ns("2025-01-02T00:00:00Z").expect("t");
        let r = run(&store, &keys, opts, &mut |_| {}).expect("run");
        assert_eq!(r.late_markers_removed, 2);
        assert_eq!(left(), ["2025-01-02 acme", "2025-01-02 globex"]);
    }

    fn cutoff_2025() -> i64 {
        crate::timespec::parse_time_ns("2025-01-01T00:00:00Z").expect("t")
    }

    /// Retention of what is older than 2025 with these options.
    fn opts_2025(
        dry_run: bool,
        batch_records: usize,
        allow_removing_all: bool,
    ) -> RetentionOptions {
        RetentionOptions {
            cutoff_ns: cutoff_2025(),
            dry_run,
            batch_records,
            allow_removing_all,
        }
    }

    /// A new embedded store holding `n` old records (see [`seed_old`]).
    fn seeded(n: usize) -> (tempfile::TempDir, Keys, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("dir");
        let keys = Keys::default();
        let store = EmbeddedStore::open(dir.path()).expect("open");
        seed_old(&store, &keys, n);
        (dir, keys, store)
    }

    #[test]
    fn a_transaction_reads_the_index_entries_of_its_records_together() {
        let (_dir, keys, inner) = seeded(300);
        // 300 records, 600 `by_path` and 70 `by_checksum` entries (each
        // shared by several records) in one transaction of a few reads.
        let store = Wrapped::budget(inner, 6, usize::MAX);
        let opts = opts_2025(false, 500, false);
        let r = run(&store, &keys, opts, &mut |_| {}).expect("run");
        assert_eq!(
            (
                r.records_removed,
                r.by_path_removed,
                r.by_checksum_removed,
                r.sessions_removed,
                r.transactions
            ),
            (300, 600, 70, 1, 1),
            "one transaction, no halving"
        );
    }

    #[test]
    fn a_batch_too_big_for_one_transaction_is_halved_until_it_fits() {
        let (_dir, keys, inner) = seeded(300);
        let opts = opts_2025(true, 500, false);
        let dry = run(&inner, &keys, opts, &mut |_| {}).expect("dry");
        // At most 300 keys read per transaction: 500, 250 and 125 records
        // do not fit, 62 do (62 records, 124 + 62 index keys, the first
        // record left and the type counter).
        let store = Wrapped::budget(inner, usize::MAX, 300);
        let wet = run(
            &store,
            &keys,
            RetentionOptions {
                dry_run: false,
                ..opts
            },
            &mut |_| {},
        )
        .expect("run");
        assert_eq!(wet.transactions, 5, "300 records in batches of 62: {wet:?}");
        assert_eq!(
            RetentionReport {
                dry_run: false,
                transactions: 0,
                ..wet
            },
            RetentionReport {
                dry_run: false,
                ..dry
            },
            "the dry run counted the same"
        );
        assert_eq!((wet.records_removed, wet.sessions_removed), (300, 1));
        let left = store
            .inner
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_all(), 0, false))
            .expect("read");
        assert_eq!(left.len(), 2);
    }

    #[test]
    fn a_step_that_fails_at_one_record_reports_the_error() {
        let (_dir, keys, inner) = seeded(3);
        let store = Wrapped::budget(inner, 0, usize::MAX);
        let opts = opts_2025(false, 8, true);
        let err = run(&store, &keys, opts, &mut |_| {}).expect_err("cannot fit");
        assert!(
            matches!(
                err,
                RetentionError::Store(StoreError::RetriesExhausted { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn batch_size_halves_on_too_big_errors_only_and_grows_back() {
        let too_old = || StoreError::RetriesExhausted {
            attempts: 20,
            last: Box::new(StoreError::TxnLimit("too old".into())),
        };
        let mut b = BatchSize::new(500);
        let mut tried = Vec::new();
        let r = b.run("records", |n| {
            tried.push(n);
            if n > 40 {
                Err(too_old())
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.ok(), Some(31));
        assert_eq!(tried, [500, 250, 125, 62, 31]);
        assert_eq!(b.get(), 31, "later steps start from the size that fit");
        // Another kind of error is returned at once.
        let mut calls = 0;
        let r = b.run("records", |_| -> Result<(), _> {
            calls += 1;
            Err(StoreError::Corrupt("x".into()))
        });
        assert!(matches!(r, Err(StoreError::Corrupt(_))) && calls == 1);
        assert_eq!(b.get(), 31);
        // Once transactions finish again, the size grows back, to the start.
        for _ in 0..GROW_AFTER - 1 {
            b.run("records", Ok).expect("ok");
        }
        assert_eq!(b.get(), 31, "not before {GROW_AFTER} in a row");
        b.run("records", Ok).expect("ok");
        assert_eq!(b.get(), 62);
        for _ in 0..GROW_AFTER * 10 {
            b.run("records", Ok).expect("ok");
        }
        assert_eq!(b.get(), 500, "never above --batch-records");
        // A limit that holds for the whole run: each regrowth that fails
        // makes the next one wait twice as long, so failures get rare.
        let mut capped = BatchSize::new(100);
        let mut failures = 0;
        for _ in 0..1000 {
            capped
                .run("records", |n| {
                    if n > 40 {
                        failures += 1;
                        Err(too_old())
                    } else {
                        Ok(n)
                    }
                })
                .expect("fits at 25");
        }
        // 2 to get from 100 to 25, then regrowths after 8, 16, 32, 64,
        // 128 and 256 steps (a fixed 8 would fail about 110 times).
        assert_eq!(failures, 2 + 6, "{failures}");
        // At size 1 the error is reported.
        let mut one = BatchSize::new(4);
        let r = one.run("records", |_| -> Result<(), _> { Err(too_old()) });
        assert!(matches!(r, Err(StoreError::RetriesExhausted { .. })));
        assert_eq!(one.get(), 1);
        assert_eq!(BatchSize::new(0).get(), 1);
    }

    /// What FoundationDB reports when a transaction gave up after its
    /// retries because the database is locked (`database_locked` 1038),
    /// emulated without the client.
    fn locked() -> StoreError {
        StoreError::RetriesExhausted {
            attempts: 20,
            last: Box::new(StoreError::unavailable_msg(
                "database_locked: Database is locked",
            )),
        }
    }

    #[test]
    fn only_errors_that_smaller_transactions_avoid_halve_the_batch() {
        let limit = |m: &str| StoreError::TxnLimit(m.into());
        let exhausted = |last| StoreError::RetriesExhausted {
            attempts: 20,
            last: Box::new(last),
        };
        assert!(batch_too_big(&limit("too old")));
        assert!(batch_too_big(&exhausted(limit("too old"))));
        assert!(!batch_too_big(&locked()));
        assert!(!batch_too_big(&exhausted(StoreError::Internal("x".into()))));
        assert!(!batch_too_big(&StoreError::unavailable_msg("down")));
        // A locked database: one attempt, the error as it is, no halving.
        let mut b = BatchSize::new(500);
        let mut tried = Vec::new();
        let r = b.run("records", |n| -> Result<(), _> {
            tried.push(n);
            Err(locked())
        });
        assert!(matches!(r, Err(StoreError::RetriesExhausted { .. })));
        assert_eq!((tried, b.get()), (vec![500], 500));
    }

    /// FoundationDB's own errors, by code.
    #[cfg(feature = "fdb")]
    #[test]
    fn foundationdb_errors_halve_only_when_smaller_transactions_may_fit() {
        use foundationdb::FdbError;
        let fdb = |code| StoreError::Fdb(FdbError::from_code(code));
        let exhausted = |code| StoreError::RetriesExhausted {
            attempts: 20,
            last: Box::new(fdb(code)),
        };
        // timed_out, transaction_too_old, transaction_timed_out,
        // transaction_too_large; not_committed after every retry (a smaller
        // transaction reads less, for less time, and conflicts less).
        for code in [1004, 1007, 1031, 2101] {
            assert!(batch_too_big(&fdb(code)), "{code}");
            assert!(batch_too_big(&exhausted(code)), "{code}");
        }
        assert!(batch_too_big(&exhausted(1020)), "conflicts");
        // database_locked, process_behind, proxy_memory_limit_exceeded,
        // batch_transaction_throttled, tag_throttled, commit_unknown_result,
        // future_version: not about the transaction's size.
        for code in [1038, 1037, 1042, 1051, 1213, 1021, 1009] {
            assert!(!batch_too_big(&fdb(code)), "{code}");
            assert!(!batch_too_big(&exhausted(code)), "{code}");
            let e = RetentionError::from(exhausted(code));
            assert!(
                matches!(e, RetentionError::StoreUnavailable(_)),
                "{code}: {e}"
            );
        }
        let e = RetentionError::from(exhausted(1007));
        assert!(matches!(e, RetentionError::Store(_)), "{e}");
        let mut b = BatchSize::new(64);
        let mut calls = 0;
        let r = b.run("records", |_| -> Result<(), _> {
            calls += 1;
            Err(exhausted(1038))
        });
        assert!(r.is_err());
        assert_eq!((calls, b.get()), (1, 64));
    }

    /// A store whose every write transaction gives up as FoundationDB's do
    /// while the database is locked; counts the attempts.
    struct Locked {
        inner: EmbeddedStore,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl Store for Locked {
        fn run_write(
            &self,
            _f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(locked())
        }
        fn run_read(
            &self,
            f: &mut dyn FnMut(&mut dyn crate::store::ReadTxn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.run_read(f)
        }
        fn check(&self) -> Result<(), StoreError> {
            self.inner.check()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn metrics(&self) -> &crate::store::StoreMetrics {
            self.inner.metrics()
        }
    }

    #[test]
    fn a_locked_database_stops_the_run_at_once_with_what_to_do() {
        let (_dir, keys, inner) = seeded(40);
        let store = Locked {
            inner,
            writes: Default::default(),
        };
        let err = run(&store, &keys, opts_2025(false, 32, false), &mut |_| {})
            .expect_err("the database is locked");
        assert_eq!(
            store.writes.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "not halved down to one record"
        );
        assert!(
            matches!(err, RetentionError::StoreUnavailable(_)),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "database_locked",
            "not about",
            "fdbcli",
            "run retention again",
        ] {
            assert!(msg.contains(part), "{part:?} in {msg}");
        }
    }

    /// A late record of a day whose records the run has already removed,
    /// stored before the run clears that day's marker, keeps the marker:
    /// the record is still in the store and must be archived.
    #[test]
    fn a_late_record_stored_after_its_days_records_were_removed_keeps_its_marker() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = Keys::default();
        let inner = EmbeddedStore::open(dir.path()).expect("open");
        let late = audit::WriteOptions {
            late_after_ns: Some(3_600_000_000_000),
            ..Default::default()
        };
        let write = |store: &EmbeddedStore, lines: &[Vec<u8>]| {
            let items: Vec<_> = lines
                .iter()
                .map(|l| crate::record::validate_line(&keys, l, 0))
                .collect();
            audit::write_items(store, &keys, &items, late).expect("write")
        };
        let cs = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let w = write(
            &inner,
            &[
                line("2020-01-01T10:00:00Z", "old", "a", cs),
                line("2026-01-01T10:00:00Z", "new", "b", cs),
            ],
        );
        assert_eq!(w.written, 2);
        let cutoff = cutoff_2025();
        let old_left = move |store: &EmbeddedStore| {
            let keys = Keys::default();
            store
                .read(|t| audit::records_in(t, &keys, &keys.audit_logs_all(), 0, false))
                .expect("read")
                .into_iter()
                .filter(|r| r.key.ts_ns < cutoff)
                .count()
        };
        // Once the run has removed the old records, another client stores
        // a late record of the same day.
        let late_line = line("2020-01-01T12:00:00Z", "old-2", "c", cs);
        let store = Wrapped::hooked(
            inner,
            (
                Box::new(move |s: &EmbeddedStore| old_left(s) == 0),
                Box::new(move |s: &EmbeddedStore| {
                    let keys = Keys::default();
                    let items = vec![crate::record::validate_line(&keys, &late_line, 0)];
                    let w = audit::write_items(s, &keys, &items, late).expect("late write");
                    assert_eq!(w.written, 1);
                }),
            ),
        );
        let r = run(&store, &keys, opts_2025(false, 10, false), &mut |_| {}).expect("run");
        assert_eq!(r.records_removed, 1, "{r:?}");
        assert!(
            store.hook.lock().expect("lock").is_none(),
            "the late record was stored during the run"
        );
        assert_eq!(old_left(&store.inner), 1, "the late record is kept");
        let marks = store
            .inner
            .read(|t| crate::late::markers(t, &keys))
            .expect("read");
        assert_eq!(
            marks
                .iter()
                .filter(|m| m.day.as_str() < "2025")
                .map(|m| format!("{} {} {}", m.day, m.tenant, m.count))
                .collect::<Vec<_>>(),
            ["2020-01-01 t 2"],
            "its marker stays (with the count it had)"
        );
        assert_eq!(r.late_markers_removed, 0);
        // The next run removes the record, and then the marker.
        let again = run(
            &store.inner,
            &keys,
            opts_2025(false, 10, false),
            &mut |_| {},
        )
        .expect("again");
        assert_eq!((again.records_removed, again.late_markers_removed), (1, 1));
    }

    #[test]
    fn guard_trips_above_ninety_percent_of_the_sessions() {
        assert!(!guard_trips(0, 0));
        assert!(!guard_trips(0, 10));
        assert!(!guard_trips(9, 10));
        assert!(guard_trips(10, 10));
        assert!(
            !guard_trips(1, 1),
            "a small store is cleaned without consent"
        );
        assert!(!guard_trips(9, 9));
        assert!(!guard_trips(900, 1000));
        assert!(guard_trips(901, 1000));
        assert!(guard_trips(u64::MAX, u64::MAX));
    }

    /// Stores `rows` (key, JSON value) in one transaction.
    fn set_rows(store: &EmbeddedStore, rows: &[(Vec<u8>, String)]) {
        store
            .transact(|t| {
                for (k, v) in rows {
                    t.set(k, v.as_bytes())?;
                }
                Ok(())
            })
            .expect("seed");
    }

    /// Retention of what is older than 90 days before `now_ns`.
    fn older_than_90_days(now_ns: i64) -> RetentionOptions {
        RetentionOptions {
            cutoff_ns: now_ns - 90 * 86_400_000_000_000,
            dry_run: false,
            batch_records: 10,
            allow_removing_all: false,
        }
    }

    #[test]
    fn a_claim_or_heartbeat_made_during_the_run_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = Keys::default();
        let now = crate::timespec::now_ns();
        let day = 86_400_000_000_000i64;
        let v = |field: &str, ns: i64| serde_json::json!({ field: ns }).to_string();
        let old = [
            (keys.agent("t", "a1"), v("received_ns", now - 100 * day)),
            (keys.agent("t", "a2"), v("received_ns", now - 100 * day)),
            (
                keys.claim("t", "src/x.rs"),
                v("expires_ns", now - 100 * day),
            ),
            (
                keys.claim("t", "src/y.rs"),
                v("expires_ns", now - 100 * day),
            ),
        ];
        let inner = EmbeddedStore::open(dir.path()).expect("open");
        set_rows(&inner, &old);
        // After retention read them, agent a1 sends a heartbeat and another
        // session claims src/x.rs, each just before the transaction that
        // removes stale rows of its kind. With no sessions, the write
        // transactions are: the (empty) dead-letter page, the agents', the
        // claims'.
        let fresh = vec![
            (keys.agent("t", "a1"), v("received_ns", now)),
            (keys.claim("t", "src/x.rs"), v("expires_ns", now + day)),
        ];
        let store = Wrapped::interleaved(
            inner,
            vec![
                None,
                Some(vec![fresh[0].clone()]),
                Some(vec![fresh[1].clone()]),
            ],
        );
        let r = run(&store, &keys, older_than_90_days(now), &mut |_| {}).expect("run");
        assert_eq!((r.agents_removed, r.claims_removed), (1, 1), "{r:?}");
        for (k, v) in &fresh {
            let got = store.inner.read(|t| t.get(k)).expect("read");
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "the fresh row stays");
        }
        for k in [keys.agent("t", "a2"), keys.claim("t", "src/y.rs")] {
            assert_eq!(store.inner.read(|t| t.get(&k)).expect("read"), None);
        }
    }

    #[test]
    fn removes_stale_agents_and_long_expired_claims() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let now = crate::timespec::now_ns();
        let day = 86_400_000_000_000i64;
        let v = |field: &str, ns: i64| serde_json::json!({ field: ns }).to_string();
        let rows = [
            (keys.agent("t", "old"), v("received_ns", now - 100 * day)),
            (keys.agent("t", "new"), v("received_ns", now)),
            (keys.claim("t", "a"), v("expires_ns", now - 100 * day)),
            (keys.claim("t", "b"), v("expires_ns", now + day)),
            (keys.claim("t", "c"), "not json".to_owned()),
        ];
        set_rows(&store, &rows);
        let r = run(&store, &keys, older_than_90_days(now), &mut |_| {}).expect("run");
        assert_eq!((r.agents_removed, r.claims_removed), (1, 1));
        let left = |range: crate::keys::KeyRange| {
            store
                .read(|t| t.get_range(&range.begin, &range.end, 0, false))
                .expect("read")
                .len()
        };
        assert_eq!(left(keys.agents_all()), 1);
        assert_eq!(left(keys.claims_all()), 2, "unreadable rows are left alone");
    }

    /// A session that claims without heartbeats keeps its row while its
    /// claims run (`until_ns`), however long ago its first claim was.
    #[test]
    fn keeps_agent_rows_whose_claims_run_past_the_cutoff() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let now = crate::timespec::now_ns();
        let day = 86_400_000_000_000i64;
        let row = |received: i64, until: i64| {
            serde_json::json!({"received_ns": received, "until_ns": until}).to_string()
        };
        let rows = [
            (keys.agent("t", "claiming"), row(now - 100 * day, now + day)),
            (
                keys.agent("t", "done"),
                row(now - 100 * day, now - 99 * day),
            ),
            (keys.agent("t", "stopped"), row(now - 100 * day, 0)),
        ];
        set_rows(&store, &rows);
        let r = run(&store, &keys, older_than_90_days(now), &mut |_| {}).expect("run");
        assert_eq!(r.agents_removed, 2, "{r:?}");
        let left = store
            .read(|t| t.get(&keys.agent("t", "claiming")))
            .expect("read");
        assert!(left.is_some(), "the row of live claims stays");
    }

    #[test]
    fn an_interrupted_run_leaves_consistent_summaries_and_resumes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let lines: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let day = if i < 15 { 1 + i % 10 } else { 5 + i };
                let ts = format!("2020-01-{day:02}T00:00:00Z");
                line(
                    &ts,
                    &format!("s{}", i % 3),
                    &format!("p{i}"),
                    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                )
            })
            .collect();
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l, 0))
            .collect();
        let w = audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        assert_eq!((w.written, w.dead_lettered), (20, 0));
        let opts = RetentionOptions {
            cutoff_ns: crate::timespec::parse_time_ns("2020-01-15T00:00:00Z").expect("t"),
            dry_run: false,
            batch_records: 2,
            allow_removing_all: false,
        };
        // Stop (as a crash would) after the third committed transaction.
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut n = 0;
            run(&store, &keys, opts, &mut |_| {
                n += 1;
                assert!(n < 3, "interrupted");
            })
        }));
        assert!(stopped.is_err());
        let consistent = |store: &EmbeddedStore| {
            store
                .read(|t| {
                    for s in audit::sessions_in(t, &keys, &keys.sessions_all())? {
                        let recs = audit::session_records(t, &keys, "t", "u", &s.session, None, 0)?;
                        assert_eq!(s.events as usize, recs.len(), "{}", s.session);
                        assert_eq!(s.first_ns as i64, recs[0].key.ts_ns, "{}", s.session);
                    }
                    Ok(())
                })
                .expect("read");
        };
        consistent(&store);
        let rest = run(&store, &keys, opts, &mut |_| {}).expect("resume");
        // The first run removed session s0's 5 old records (2 + 2 + 1).
        assert_eq!(rest.records_removed, 10, "the second run finishes the work");
        consistent(&store);
        let old = store
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_all(), 0, false))
            .expect("read")
            .into_iter()
            .filter(|r| r.key.ts_ns < opts.cutoff_ns)
            .count();
        assert_eq!(old, 0);
    }
}
