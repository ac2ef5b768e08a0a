//! Domain operations over the store: writing validated records idempotently,
//! and the read helpers the query API builds on.
//!
//! Idempotency: a record is written only when its `audit_logs` key is absent,
//! checked in the same transaction; only then are the session counters, the
//! monitor counters and the indexes updated. Redelivering an event (Vector
//! retrying after a lost response, or a retried FoundationDB commit whose
//! outcome was unknown) therefore stores and counts it once. A key found
//! stored is compared with the event: other content under the same key (a
//! conflicting redelivery) leaves the stored record as it is and becomes a
//! `conflicting_redelivery` dead letter, never a silent duplicate. Counters use
//! atomic ADD/MAX/MIN, aggregated per transaction, so concurrent writers never
//! conflict on them.
//!
//! Monitors: the delivery counters of a monitor (`("monitors", monitor_id)`)
//! belong to the first tenant that stores an event of it, written in its
//! `tenant` field when that is absent. An event of the monitor under another
//! tenant is a `monitor_of_other_tenant` dead letter and is not stored, so
//! that one tenant never reads, nor mixes into, another tenant's counts (an
//! operator gives a monitor to another tenant with [`set_monitor_owner`],
//! `fdb-sink monitors set-owner`). The
//! field is read once per monitor and chunk (on a shared store with the
//! chunk's lookup, a conflicting read: two writers giving a new monitor two
//! tenants conflict, and the one that retries finds the other's).

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use foldhash::fast::RandomState;

use crate::keys::{decode_i64, decode_u64, AuditLogKey, ByPathKey, KeyRange, Keys, PathTouch};
use crate::late::LateMarks;
use crate::record::{reason, receipt_lookup_times, AuditRecord, DeadLetter, Item, ValidRecord};
use crate::store::{limits, Kv, ReadTxn, Store, StoreError, StoreExt, Txn};

/// How to cut a batch into transactions.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Approximate bytes of keys and values per transaction. FoundationDB
    /// accepts up to 10 MB and 5 s; ~1 MB keeps commits fast.
    pub target_txn_bytes: usize,
    /// New records whose UTC day ended more than this (ns) before their
    /// transaction are added to the `("late", day, tenant)` markers
    /// ([`crate::late`]); `None` marks nothing (`import`).
    pub late_after_ns: Option<i64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target_txn_bytes: limits::TARGET_TXN_BYTES,
            late_after_ns: None,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteSummary {
    /// Records newly stored.
    pub written: u64,
    /// Records already stored before (not counted again).
    pub duplicates: u64,
    /// Lines newly stored in dead-letter.
    pub dead_lettered: u64,
    /// Dead-lettered lines already stored before (a redelivery).
    pub dead_letter_duplicates: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// `dead_lettered` by reason, indexed like [`reason::ALL`].
    #[serde(skip)]
    pub dead_lettered_by_reason: [u64; reason::ALL.len()],
}

impl WriteSummary {
    pub fn add(&mut self, o: &WriteSummary) {
        self.written += o.written;
        self.duplicates += o.duplicates;
        self.dead_lettered += o.dead_lettered;
        self.dead_letter_duplicates += o.dead_letter_duplicates;
        self.transactions += o.transactions;
        for (a, b) in self
            .dead_lettered_by_reason
            .iter_mut()
            .zip(o.dead_lettered_by_reason)
        {
            *a += b;
        }
    }

    /// Counts the lines of the dead letter `d`: as newly dead-lettered (and
    /// by reason) when it was stored now, else as stored before.
    fn count_dead_letter(&mut self, d: &DeadLetter, stored_now: bool) {
        if stored_now {
            self.dead_lettered += d.line_count();
            d.count_lines(&mut self.dead_lettered_by_reason);
        } else {
            self.dead_letter_duplicates += d.line_count();
        }
    }
}

/// FoundationDB's accounting of a transaction's size, which its 10 MB limit
/// (and the sink's 1 MB target) applies to. Documented in "Known
/// Limitations" (<https://apple.github.io/foundationdb/known-limitations.html>,
/// "Large transactions": keys, values and ranges written, and keys and ranges
/// read, not the values read) and on the project's wiki page "Transaction
/// size limit" (<https://github.com/apple/foundationdb/wiki/Transaction-size-limit>:
/// each mutation, plus every read and write conflict range, a range being its
/// begin and end key). The client (`fdbclient/ReadYourWrites.actor.cpp`)
/// adds, per point read, the range `[key, key + \x00)` (`2 * key + 1`)
/// plus the range's own record; per mutation the key and value (param) plus
/// the mutation's record, and the write conflict range of its key the same
/// way as a read.
pub mod fdb_size {
    /// Bytes of the record of one mutation (`sizeof(MutationRef)`: a type
    /// and two 16-byte byte-string references).
    pub const MUTATION_OVERHEAD: usize = 40;
    /// Bytes of the record of one conflict range (`sizeof(KeyRangeRef)`:
    /// two 16-byte byte-string references).
    pub const RANGE_OVERHEAD: usize = 32;

    /// A conflict range of one key: `[key, key + \x00)`.
    pub fn key_range(key: usize) -> usize {
        2 * key + 1 + RANGE_OVERHEAD
    }

    /// A point read that adds a read conflict range (not a snapshot read).
    pub fn read(key: usize) -> usize {
        key_range(key)
    }

    /// A set or an atomic operation (`param` is the value or the operand):
    /// the mutation and its write conflict range.
    pub fn write(key: usize, param: usize) -> usize {
        key + param + MUTATION_OVERHEAD + key_range(key)
    }
}

/// Bytes of one point read on `store`: [`fdb_size::read`] where reads add
/// to a transaction's size ([`Store::reads_add_to_txn_size`]), else none.
fn read_cost(store: &(impl Store + ?Sized), key: usize) -> usize {
    if store.reads_add_to_txn_size() {
        fdb_size::read(key)
    } else {
        0
    }
}

/// Bytes of one set or atomic operation on `store`: [`fdb_size::write`]
/// where the store counts as FoundationDB does, else its key and value.
fn write_cost(store: &(impl Store + ?Sized), key: usize, param: usize) -> usize {
    if store.reads_add_to_txn_size() {
        fdb_size::write(key, param)
    } else {
        key + param
    }
}

/// Bytes one item adds to a transaction on `store` (on FoundationDB as it
/// counts them, [`fdb_size`]): its own reads and writes, from the keys and
/// values the writer stores for it. The counters it shares with the other
/// records of its session and monitor are counted once per transaction by
/// [`TxnCost`].
pub fn item_cost(item: &Item, store: &(impl Store + ?Sized)) -> usize {
    match item {
        Item::Record(r) => {
            let k = &r.encoded;
            // Looked up before it is written (a read conflict on FoundationDB).
            let lookup = read_cost(store, k.audit.len());
            let paths: usize = k
                .by_path
                .iter()
                .map(|p| write_cost(store, p.len(), k.touch.len()))
                .sum();
            // `by_checksum`: a MAX of the last-seen time.
            let checksum = k
                .by_checksum
                .as_ref()
                .map_or(0, |c| write_cost(store, c.len(), 8));
            lookup + write_cost(store, k.audit.len(), r.value.len()) + paths + checksum
        }
        Item::DeadLetter(d) => {
            // One keyed by its receipt is also looked up under its
            // neighbouring hours: on FoundationDB each read adds a conflict
            // range to the transaction's size; on the embedded store reads
            // add nothing.
            let lookups = if d.keyed_by_receipt && store.reads_add_to_txn_size() {
                LOOKUP_COST * receipt_lookup_times(d.ts_ns).count()
            } else {
                0
            };
            d.raw.len() + d.detail.len() + 200 + lookups
        }
    }
}

/// Rough bytes a point read of a dead letter's key adds to a transaction
/// (a key of about 50 bytes, [`fdb_size::read`]).
const LOOKUP_COST: usize = 130;

/// The size of a transaction being filled with items, as the store counts
/// it (on FoundationDB, [`fdb_size`]): each item's own keys ([`item_cost`]), plus the
/// counters its session, monitor and `late` marker add the first time the
/// transaction meets them (one update per counter and transaction,
/// whatever the number of records).
pub struct TxnCost<'a, S: Store + ?Sized> {
    keys: &'a Keys,
    store: &'a S,
    /// Records older than this are late ([`LateMarks`]); `None`: not marked.
    late_before_ns: Option<i64>,
    sessions: HashSet<(&'a str, &'a str, &'a str), RandomState>,
    types: HashSet<(&'a str, &'a str, &'a str, &'static str), RandomState>,
    monitors: HashSet<&'a str, RandomState>,
    late: HashSet<(i64, &'a str), RandomState>,
    bytes: usize,
}

impl<'a, S: Store + ?Sized> TxnCost<'a, S> {
    pub fn new(keys: &'a Keys, store: &'a S, late_after_ns: Option<i64>, now_ns: i64) -> Self {
        TxnCost {
            keys,
            store,
            late_before_ns: late_after_ns.map(|a| crate::late::late_before_ns(now_ns, a)),
            sessions: HashSet::default(),
            types: HashSet::default(),
            monitors: HashSet::default(),
            late: HashSet::default(),
            bytes: 0,
        }
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What `item` would add, without adding it.
    pub fn cost(&self, item: &'a Item) -> usize {
        let own = item_cost(item, self.store);
        let Item::Record(r) = item else { return own };
        let (t, u, s) = (r.tenant.as_str(), r.user.as_str(), r.session.as_str());
        let k = self.keys;
        let mut shared = 0;
        if !self.sessions.contains(&(t, u, s)) {
            shared += write_cost(self.store, k.session_events(t, u, s).len(), 8)
                + write_cost(self.store, k.session_first_ns(t, u, s).len(), 8)
                + write_cost(self.store, k.session_last_ns(t, u, s).len(), 8);
        }
        if !self.types.contains(&(t, u, s, r.event_type)) {
            shared += write_cost(
                self.store,
                k.session_type_count(t, u, s, r.event_type).len(),
                8,
            );
        }
        let m = r.monitor_id.as_str();
        if !self.monitors.contains(m) {
            // Its owner looked up with the chunk, then written if absent.
            let owner = k.monitor_tenant(m).len();
            shared += read_cost(self.store, owner)
                + write_cost(self.store, k.monitor_received(m).len(), 8)
                + write_cost(self.store, k.monitor_max_seq(m).len(), 8)
                + write_cost(self.store, k.monitor_last_ns(m).len(), 8)
                + write_cost(self.store, owner, t.len());
        }
        if self.late_before_ns.is_some_and(|b| r.ts_ns < b) {
            let day = crate::late::day_of(r.ts_ns);
            if !self.late.contains(&(day, t)) {
                let key = k.late(&crate::late::day_string(day), t);
                shared += write_cost(self.store, key.len(), 8);
            }
        }
        own + shared
    }

    /// Adds `item`; returns the bytes counted so far.
    pub fn add(&mut self, item: &'a Item) -> usize {
        self.bytes += self.cost(item);
        if let Item::Record(r) = item {
            let (t, u, s) = (r.tenant.as_str(), r.user.as_str(), r.session.as_str());
            self.sessions.insert((t, u, s));
            self.types.insert((t, u, s, r.event_type));
            self.monitors.insert(r.monitor_id.as_str());
            if self.late_before_ns.is_some_and(|b| r.ts_ns < b) {
                self.late.insert((crate::late::day_of(r.ts_ns), t));
            }
        }
        self.bytes
    }
}

/// Writes a batch, split into transactions of about
/// `opts.target_txn_bytes` as the store counts them ([`TxnCost`]).
/// Returns after every transaction committed. On error, earlier
/// transactions stay committed (safe: writes are idempotent, the client
/// retries the whole batch).
pub fn write_items(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    items: &[Item],
    opts: WriteOptions,
) -> Result<WriteSummary, StoreError> {
    let mut total = WriteSummary::default();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut cost = TxnCost::new(keys, store, opts.late_after_ns, crate::timespec::now_ns());
        while end < items.len()
            && (end == start || cost.bytes() + cost.cost(&items[end]) <= opts.target_txn_bytes)
        {
            cost.add(&items[end]);
            end += 1;
        }
        total.add(&write_split(
            store,
            keys,
            &items[start..end],
            opts.late_after_ns,
        )?);
        start = end;
    }
    Ok(total)
}

/// Commits `chunk` in one transaction, or, when FoundationDB finds it too
/// large (it also counts conflict ranges, about three times each key), in
/// two halves, recursively.
fn write_split(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    chunk: &[Item],
    late_after_ns: Option<i64>,
) -> Result<WriteSummary, StoreError> {
    let r = store.transact(|txn| {
        let mut late = LateMarks::new(late_after_ns, crate::timespec::now_ns());
        let s = write_chunk(txn, keys, chunk, &mut late)?;
        late.write(txn, keys)?;
        Ok(s)
    });
    match r {
        Err(e) if e.transaction_too_large() && chunk.len() > 1 => {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            let mut s = write_split(store, keys, a, late_after_ns)?;
            s.add(&write_split(store, keys, b, late_after_ns)?);
            Ok(s)
        }
        r => r,
    }
}

#[derive(Default)]
struct SessionDelta {
    events: i64,
    by_type: HashMap<&'static str, i64, RandomState>,
    first_ns: u64,
    last_ns: u64,
    /// Every record of the session stored so far (committed or written by
    /// this transaction) has a time at or below this bound; `None` when
    /// unknown. Only kept in exclusive transactions (see [`Txn::exclusive`]).
    stored_up_to: Option<u64>,
}

impl SessionDelta {
    /// A session seen for the first time in this chunk. In an exclusive
    /// transaction its `last_ns` (the latest time of any record stored in
    /// it, this transaction's writes included) bounds what can already be
    /// stored, so that a later event needs no lookup to be known new.
    fn start(
        txn: &mut dyn Txn,
        keys: &Keys,
        (t, u, s): (&str, &str, &str),
    ) -> Result<Self, StoreError> {
        let stored_up_to = if txn.exclusive() {
            txn.get(&keys.session_last_ns(t, u, s))?
                .map(|v| decode_u64(&v))
        } else {
            None
        };
        Ok(SessionDelta {
            first_ns: u64::MAX,
            stored_up_to,
            ..Default::default()
        })
    }
}

#[derive(Default)]
struct MonitorDelta {
    received: i64,
    max_seq: u64,
    last_ns: u64,
}

/// The tenant a monitor met in a chunk belongs to.
struct MonitorOwner<'a> {
    tenant: Cow<'a, str>,
    /// No tenant was stored: the first tenant met in the chunk owns it, and
    /// is written with the counters.
    claimed: bool,
}

impl<'a> MonitorOwner<'a> {
    /// The owner of a monitor whose `tenant` field holds `stored`, met first
    /// with an event of `tenant`.
    fn new(stored: Option<Vec<u8>>, tenant: &'a str) -> Self {
        match stored {
            Some(v) => MonitorOwner {
                tenant: match String::from_utf8(v) {
                    Ok(t) => Cow::Owned(t),
                    Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                },
                claimed: false,
            },
            None => MonitorOwner {
                tenant: Cow::Borrowed(tenant),
                claimed: true,
            },
        }
    }
}

/// Writes one chunk inside `txn`; idempotent, safe to retry. Each record
/// stored anew is noted in `late` (its time is compared once with the
/// transaction's threshold); the caller writes `late` once per transaction,
/// after its chunks ([`LateMarks::write`]).
pub fn write_chunk<'a>(
    txn: &mut dyn Txn,
    keys: &Keys,
    items: &'a [Item],
    late: &mut LateMarks<'a>,
) -> Result<WriteSummary, StoreError> {
    let mut summary = WriteSummary {
        transactions: 1,
        ..Default::default()
    };
    // Per-chunk maps (at most a few thousand keys, so even colliding keys
    // cost little): foldhash, randomly seeded, instead of SipHash.
    let mut sessions: HashMap<(&str, &str, &str), SessionDelta, RandomState> = HashMap::default();
    let mut monitors: HashMap<&str, MonitorDelta, RandomState> = HashMap::default();
    let mut owners: HashMap<&str, MonitorOwner, RandomState> = HashMap::default();
    // "Last seen" per (tenant, checksum, path): one MAX per key and chunk.
    let mut last_seen: HashMap<&[u8], u64, RandomState> =
        HashMap::with_capacity_and_hasher(items.len(), RandomState::default());
    // Shared stores (FoundationDB): look every record up at once, in one
    // round trip, instead of one lookup per record; the exclusive embedded
    // store mostly needs no lookup at all (see `SessionDelta::start`).
    let mut prefetched = if txn.exclusive() {
        None
    } else {
        Some(Prefetched::read(txn, keys, items)?)
    };
    // Dead letters likewise, in a second call only when the chunk has any.
    let mut stored_letters = if txn.exclusive() {
        None
    } else {
        Some(StoredLetters::read(txn, keys, items)?)
    };
    for item in items {
        match item {
            Item::Record(r) => {
                let owner = match owners.entry(r.monitor_id.as_str()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        // Read once per monitor and chunk: with the chunk's
                        // lookup on a shared store, here on the exclusive one.
                        let stored = match &mut prefetched {
                            Some(p) => p.monitor_tenant(&r.monitor_id),
                            None => txn.get(&keys.monitor_tenant(&r.monitor_id))?,
                        };
                        e.insert(MonitorOwner::new(stored, &r.tenant))
                    }
                };
                if owner.tenant != r.tenant.as_str() {
                    r.stored_new.set(false);
                    let d = other_tenant_letter(r, &owner.tenant);
                    let stored_now = store_record_letter(txn, keys, &d, &mut summary)?;
                    log_other_tenant(r, &owner.tenant, stored_now);
                    continue;
                }
                let ts = u64::try_from(r.ts_ns).unwrap_or(0);
                let id = (r.tenant.as_str(), r.user.as_str(), r.session.as_str());
                let s = match sessions.entry(id) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(SessionDelta::start(txn, keys, id)?),
                };
                // What the key holds when it is found stored: compared with
                // the event, so that other content is never taken for a
                // redelivery. Only stored keys are read back.
                let mut conflict = None;
                let new = match &mut prefetched {
                    Some(p) => match p.stored(&r.encoded.audit, &r.value) {
                        None => write_record(txn, r, Some(true))?,
                        Some(stored) => {
                            conflict = conflict_with(Some(stored), r);
                            false
                        }
                    },
                    None => {
                        // Later than anything stored in its session: cannot
                        // be stored yet.
                        let known = s
                            .stored_up_to
                            .is_some_and(|up_to| ts > up_to)
                            .then_some(true);
                        let new = write_record(txn, r, known)?;
                        if !new {
                            conflict = conflict_with(txn.get(&r.encoded.audit)?.as_deref(), r);
                        }
                        new
                    }
                };
                r.stored_new.set(new);
                if let Some(differs) = conflict {
                    let d = conflict_letter(r, &differs);
                    let stored_now = store_record_letter(txn, keys, &d, &mut summary)?;
                    log_conflict(r, &differs, stored_now);
                    continue;
                }
                if new {
                    if let Some(key) = &r.encoded.by_checksum {
                        let seen = last_seen.entry(key.as_slice()).or_insert(ts);
                        *seen = (*seen).max(ts);
                    }
                    late.note(r.ts_ns, &r.tenant);
                    summary.written += 1;
                    s.events += 1;
                    *s.by_type.entry(r.event_type).or_default() += 1;
                    s.first_ns = s.first_ns.min(ts);
                    s.last_ns = s.last_ns.max(ts);
                    if let Some(up_to) = &mut s.stored_up_to {
                        *up_to = (*up_to).max(ts);
                    }
                    let m = monitors.entry(&r.monitor_id).or_default();
                    m.received += 1;
                    m.max_seq = m.max_seq.max(r.seq);
                    m.last_ns = m.last_ns.max(ts);
                } else {
                    summary.duplicates += 1;
                }
            }
            Item::DeadLetter(d) => {
                let stored_now = write_dead_letter(txn, keys, d, stored_letters.as_mut())?;
                summary.count_dead_letter(d, stored_now);
            }
        }
    }
    for ((t, u, s), d) in sessions.iter().filter(|(_, d)| d.events > 0) {
        txn.atomic_add(&keys.session_events(t, u, s), d.events)?;
        for (ty, n) in &d.by_type {
            txn.atomic_add(&keys.session_type_count(t, u, s, ty), *n)?;
        }
        txn.atomic_min(&keys.session_first_ns(t, u, s), d.first_ns)?;
        txn.atomic_max(&keys.session_last_ns(t, u, s), d.last_ns)?;
    }
    for (key, ts) in &last_seen {
        txn.atomic_max(key, *ts)?;
    }
    for (id, m) in &monitors {
        txn.atomic_add(&keys.monitor_received(id), m.received)?;
        txn.atomic_max(&keys.monitor_max_seq(id), m.max_seq)?;
        txn.atomic_max(&keys.monitor_last_ns(id), m.last_ns)?;
        // Written only when absent: the first tenant that stored an event
        // of the monitor keeps it.
        if let Some(o) = owners.get(id).filter(|o| o.claimed) {
            txn.set(&keys.monitor_tenant(id), o.tenant.as_bytes())?;
        }
    }
    Ok(summary)
}

/// Which records of a chunk are already stored, and what they hold, and
/// the tenant each of its monitors belongs to, read in one call before the
/// chunk is written (on FoundationDB the read that says whether a key
/// exists returns its value anyway: one round trip either way). The reads
/// conflict (they are not snapshot reads): a concurrent writer that stores
/// one of the records, or gives one of the monitors its tenant, first makes
/// this transaction retry.
struct Prefetched<'a> {
    /// Audit keys already stored, or written earlier in this chunk, with
    /// their values.
    present: HashMap<&'a [u8], Cow<'a, [u8]>, RandomState>,
    /// The stored `tenant` field of each monitor of the chunk.
    monitor_tenants: HashMap<&'a str, Option<Vec<u8>>, RandomState>,
}

impl<'a> Prefetched<'a> {
    fn read(txn: &mut dyn Txn, keys: &Keys, items: &'a [Item]) -> Result<Self, StoreError> {
        let records = || {
            items.iter().filter_map(|i| match i {
                Item::Record(r) => Some(r),
                Item::DeadLetter(_) => None,
            })
        };
        let audit: Vec<&[u8]> = records().map(|r| r.encoded.audit.as_slice()).collect();
        let mut seen: HashSet<&str, RandomState> = HashSet::default();
        let monitors: Vec<&str> = records()
            .map(|r| r.monitor_id.as_str())
            .filter(|m| seen.insert(m))
            .collect();
        let tenant_keys: Vec<Vec<u8>> = monitors.iter().map(|m| keys.monitor_tenant(m)).collect();
        // One call: the records' keys, then the monitors' tenants.
        let all: Vec<&[u8]> = audit
            .iter()
            .copied()
            .chain(tenant_keys.iter().map(Vec::as_slice))
            .collect();
        let mut values = txn.get_many(&all)?;
        let tenants = values.split_off(audit.len().min(values.len()));
        let monitor_tenants = monitors.into_iter().zip(tenants).collect();
        let present = audit
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, Cow::Owned(v))))
            .collect();
        Ok(Prefetched {
            present,
            monitor_tenants,
        })
    }

    /// The stored `tenant` field of a monitor of the chunk (asked once per
    /// monitor: the caller keeps it).
    fn monitor_tenant(&mut self, monitor_id: &str) -> Option<Vec<u8>> {
        self.monitor_tenants.remove(monitor_id).flatten()
    }

    /// `None` the first time a key absent from the store is asked about
    /// (the record, `value`, is written then, and found stored afterwards);
    /// else the value stored under it.
    fn stored(&mut self, key: &'a [u8], value: &'a [u8]) -> Option<&[u8]> {
        match self.present.entry(key) {
            Entry::Occupied(e) => Some(&**e.into_mut()),
            Entry::Vacant(e) => {
                e.insert(Cow::Borrowed(value));
                None
            }
        }
    }
}

/// Why a record found stored under its key is not a redelivery of it: the
/// fields of the event that differ (`None` when it is the same event). The
/// content compared is the event as its monitor wrote it, not what the
/// collector adds per delivery (the Kubernetes fields, the fields the sink
/// ignores), so that a redelivery through another route is a duplicate. A
/// stored value that cannot be read is never taken for the same event.
fn conflict_with(stored: Option<&[u8]>, r: &ValidRecord) -> Option<Vec<&'static str>> {
    let stored = stored?;
    if stored == r.value.as_slice() {
        return None;
    }
    let unreadable = || Some(vec!["the stored record (unreadable)"]);
    let Ok(stored) = AuditRecord::from_json(stored) else {
        return unreadable();
    };
    let Ok(new) = AuditRecord::from_json(&r.value) else {
        return unreadable();
    };
    let differs = differing_fields(&stored, &new);
    (!differs.is_empty()).then_some(differs)
}

/// The fields of the event (as its monitor wrote it) in which `a` and `b`
/// differ. Metadata cut to fit the value limit (`metadata_truncated`) is
/// compared on the entries both kept: the cut depends on the size of the
/// whole record, Kubernetes fields included.
fn differing_fields(a: &AuditRecord, b: &AuditRecord) -> Vec<&'static str> {
    // Destructured whole: a field added to the event is compared, or the
    // build fails here.
    let file_event::FileEvent {
        schema,
        event_id,
        monitor_id,
        seq,
        timestamp,
        event_type,
        kind,
        path,
        path_b64,
        from,
        from_b64,
        to,
        to_b64,
        size,
        checksum,
        tenant_id,
        user_id,
        session_id,
        metadata: _,
        rescan,
    } = &a.event;
    let y = &b.event;
    let mut out = Vec::new();
    let mut check = |same: bool, name: &'static str| {
        if !same {
            out.push(name);
        }
    };
    check(*schema == y.schema, "schema");
    check(*event_id == y.event_id, "event_id");
    check(*monitor_id == y.monitor_id, "monitor_id");
    check(*seq == y.seq, "seq");
    check(*timestamp == y.timestamp, "timestamp");
    check(*event_type == y.event_type, "event_type");
    check(*kind == y.kind, "kind");
    check(*path == y.path, "path");
    check(*path_b64 == y.path_b64, "path_b64");
    check(*from == y.from, "from");
    check(*from_b64 == y.from_b64, "from_b64");
    check(*to == y.to, "to");
    check(*to_b64 == y.to_b64, "to_b64");
    check(*size == y.size, "size");
    check(*checksum == y.checksum, "checksum");
    check(*tenant_id == y.tenant_id, "tenant_id");
    check(*user_id == y.user_id, "user_id");
    check(*session_id == y.session_id, "session_id");
    check(metadata_agrees(a, b), "metadata");
    check(*rescan == y.rescan, "rescan");
    out
}

/// True when the metadata of `a` and `b` can be that of one event: equal,
/// or, where one was cut, every entry both kept equal and every entry only
/// one holds missing from a cut one.
fn metadata_agrees(a: &AuditRecord, b: &AuditRecord) -> bool {
    let (ma, mb) = (&a.event.metadata, &b.event.metadata);
    if !a.metadata_truncated && !b.metadata_truncated {
        return ma == mb;
    }
    let within = |x: &AuditRecord, y: &AuditRecord| {
        x.event.metadata.iter().all(|(k, v)| {
            y.event
                .metadata
                .get(k)
                .map_or(y.metadata_truncated, |w| w == v)
        })
    };
    within(a, b) && within(b, a)
}

/// The dead letter of a record whose key holds another event: the record
/// as it would have been stored (the event's own JSON with its Kubernetes
/// fields) in `raw`, keyed by the event's time. Its id is a hash of the
/// event alone, so that the same conflicting event delivered again, by any
/// route, finds it stored.
fn conflict_letter(r: &ValidRecord, differs: &[&str]) -> DeadLetter {
    let detail = format!(
        "event {} (tenant {}, user {}, session {}, monitor {}, seq {}) is already stored under its key \
         with other content (differing in: {}); the stored record is kept unchanged, this copy is kept here",
        r.event_id,
        r.tenant,
        r.user,
        r.session,
        r.monitor_id,
        r.seq,
        differs.join(", "),
    );
    event_letter(
        r,
        reason::CONFLICTING_REDELIVERY,
        detail,
        "fdb-sink conflicting redelivery of an event",
    )
}

/// The dead letter of a record whose monitor belongs to `owner`, another
/// tenant: the record as it would have been stored in `raw`, keyed by the
/// event's time, with an id hashed from the event alone (as
/// [`conflict_letter`]'s), so that a redelivery by any route finds it stored.
fn other_tenant_letter(r: &ValidRecord, owner: &str) -> DeadLetter {
    let detail = format!(
        "monitor {} belongs to tenant {owner} (the first tenant that stored an event of it), \
         not to tenant {}: event {} (user {}, session {}, seq {}) is not stored, so that its \
         counts and history stay with their tenant; this copy is kept here",
        r.monitor_id, r.tenant, r.event_id, r.user, r.session, r.seq,
    );
    event_letter(
        r,
        reason::MONITOR_OF_OTHER_TENANT,
        detail,
        "fdb-sink event of a monitor of another tenant",
    )
}

/// A dead letter of the valid record `r` that is not stored: the record as
/// it would have been stored in `raw`, keyed by the event's time, with an
/// id hashed (in the domain `context`) from the event alone.
fn event_letter(r: &ValidRecord, reason: &str, detail: String, context: &str) -> DeadLetter {
    let mut d = crate::record::dead_letter(
        &r.value,
        reason,
        detail,
        Some(r.ts_ns),
        crate::timespec::now_ns(),
    );
    d.id = event_hash(r, context);
    d
}

/// A hash (32 hex digits) of the event of `r` as its monitor wrote it,
/// without what the collector adds per delivery, in the domain `context`.
fn event_hash(r: &ValidRecord, context: &str) -> String {
    let event = AuditRecord::from_json(&r.value)
        .ok()
        .and_then(|a| serde_json::to_vec(&a.event).ok())
        .unwrap_or_else(|| r.value.clone());
    let id = blake3::Hasher::new_derive_key(context)
        .update(&event)
        .finalize();
    id.to_hex()[..32].to_owned()
}

/// Logs an event of a monitor of another tenant: a warning when its dead
/// letter is stored now, at info level when it was stored before.
fn log_other_tenant(r: &ValidRecord, owner: &str, stored_now: bool) {
    // `tracing` takes one constant level per call: one call per level.
    macro_rules! log {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                reason = reason::MONITOR_OF_OTHER_TENANT,
                monitor_id = %r.monitor_id,
                owner = %owner,
                tenant = %r.tenant,
                event_id = %r.event_id,
                $message
            )
        };
    }
    if stored_now {
        log!(
            tracing::Level::WARN,
            "an event names a monitor of another tenant: it is not stored, it is dead-lettered"
        );
    } else {
        log!(
            tracing::Level::INFO,
            "an event of a monitor of another tenant was delivered again; its dead letter is \
             already stored"
        );
    }
}

/// Logs a conflicting copy of a stored event: a warning when its dead letter
/// is stored now, at info level when it was stored before.
fn log_conflict(r: &ValidRecord, differs: &[&str], stored_now: bool) {
    let differs = differs.join(",");
    // `tracing` takes one constant level per call: one call per level.
    macro_rules! log {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                reason = reason::CONFLICTING_REDELIVERY,
                tenant = %r.tenant,
                user = %r.user,
                session = %r.session,
                ts_ns = r.ts_ns,
                event_id = %r.event_id,
                differs = %differs,
                $message
            )
        };
    }
    if stored_now {
        log!(
            tracing::Level::WARN,
            "an event already stored was delivered with other content: the stored record is kept, \
             the new copy is dead-lettered"
        );
    } else {
        log!(
            tracing::Level::INFO,
            "a conflicting copy of a stored event was delivered again; its dead letter is already stored"
        );
    }
}

/// Writes one record and its `by_path` entries unless it is already stored.
/// Returns whether it was new. `known` is whether it is new when the caller
/// knows it (proven absent, or looked up with the chunk), skipping the lookup
/// of its key. Counters and `by_checksum` (one MAX per key and chunk) are the
/// caller's job. The keys were built at validation with the same [`Keys`].
fn write_record(
    txn: &mut dyn Txn,
    r: &ValidRecord,
    known: Option<bool>,
) -> Result<bool, StoreError> {
    let k = &r.encoded;
    match known {
        Some(false) => return Ok(false),
        Some(true) => txn.set(&k.audit, &r.value)?,
        None => {
            if !txn.insert_new(&k.audit, &r.value)? {
                return Ok(false);
            }
        }
    }
    for key in &k.by_path {
        txn.set(key, &k.touch)?;
    }
    Ok(true)
}

/// Stores a dead letter unless it is already stored (a redelivered line, or
/// group of lines); returns whether it was new. One keyed by its own
/// timestamp is stored when its key is absent. One keyed by its receipt
/// ([`DeadLetter::keyed_by_receipt`]) is also looked for under the same id
/// in the neighbouring receipt hours ([`receipt_lookup_times`]), where an
/// earlier delivery of it was stored: a fixed number of point reads, never a
/// scan. `stored` is what was looked up with the chunk (shared stores); else
/// the keys are looked up here. Only dead letters are looked up, so a batch
/// of valid lines reads nothing more.
fn write_dead_letter(
    txn: &mut dyn Txn,
    keys: &Keys,
    d: &DeadLetter,
    stored: Option<&mut StoredLetters>,
) -> Result<bool, StoreError> {
    let key = keys.dead_letter(d.ts_ns, &d.id);
    match stored {
        None => {
            let others = other_keys(keys, d);
            if !others.is_empty() {
                let refs: Vec<&[u8]> = others.iter().map(Vec::as_slice).collect();
                if txn.exist_many(&refs)?.into_iter().any(|e| e) {
                    return Ok(false);
                }
            }
            txn.insert_new(&key, &d.to_json())
        }
        Some(s) => {
            if other_keys(keys, d).iter().any(|k| s.present.contains(k)) {
                return Ok(false);
            }
            if !s.present.insert(key.clone()) {
                return Ok(false);
            }
            txn.set(&key, &d.to_json())?;
            Ok(true)
        }
    }
}

/// Stores the dead letter of a valid record that is not stored (a
/// conflicting redelivery, an event of another tenant's monitor), unless it
/// is already stored, and counts it in `summary`. Returns whether it was
/// stored now.
fn store_record_letter(
    txn: &mut dyn Txn,
    keys: &Keys,
    d: &DeadLetter,
    summary: &mut WriteSummary,
) -> Result<bool, StoreError> {
    let stored_now = write_dead_letter(txn, keys, d, None)?;
    summary.count_dead_letter(d, stored_now);
    Ok(stored_now)
}

/// The keys under which an earlier delivery of a dead letter keyed by its
/// receipt may be stored, besides its own (none for one keyed by its own
/// timestamp, whose key does not depend on the delivery).
fn other_keys(keys: &Keys, d: &DeadLetter) -> Vec<Vec<u8>> {
    if !d.keyed_by_receipt {
        return Vec::new();
    }
    receipt_lookup_times(d.ts_ns)
        .map(|ts| keys.dead_letter(ts, &d.id))
        .collect()
}

/// Which dead letters of a chunk are already stored, read in one call
/// (none when the chunk has no dead letter).
struct StoredLetters {
    /// Keys already stored, or written earlier in this chunk.
    present: HashSet<Vec<u8>, RandomState>,
}

impl StoredLetters {
    fn read(txn: &mut dyn Txn, keys: &Keys, items: &[Item]) -> Result<Self, StoreError> {
        let wanted: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|i| match i {
                Item::DeadLetter(d) => {
                    let mut k = other_keys(keys, d);
                    k.push(keys.dead_letter(d.ts_ns, &d.id));
                    Some(k)
                }
                Item::Record(_) => None,
            })
            .flatten()
            .collect();
        let mut present = HashSet::default();
        if !wanted.is_empty() {
            let refs: Vec<&[u8]> = wanted.iter().map(Vec::as_slice).collect();
            let exist = txn.exist_many(&refs)?;
            present.extend(
                wanted
                    .into_iter()
                    .zip(exist)
                    .filter_map(|(k, e)| e.then_some(k)),
            );
        }
        Ok(StoredLetters { present })
    }
}

// ---------------------------------------------------------------------------
// Read helpers. All take a `ReadTxn`, so they compose inside `Store::read`
// (or a write transaction, for read-modify-write).

/// A stored record with its decoded key.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: AuditLogKey,
    pub record: AuditRecord,
    /// The raw key, usable as a pagination cursor (see [`after`]).
    pub raw_key: Vec<u8>,
}

/// The first key strictly after `key` (for "continue after this key" cursors).
pub fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Records in `range` (any audit_logs range from [`Keys`]), at most `limit`
/// (0 = all), time-ordered (or newest first with `reverse`).
pub fn records_in(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    range: &KeyRange,
    limit: usize,
    reverse: bool,
) -> Result<Vec<StoredRecord>, StoreError> {
    txn.get_range(&range.begin, &range.end, limit, reverse)?
        .into_iter()
        .map(|(k, v)| {
            let key = keys
                .decode_audit_log(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let record = AuditRecord::from_json(&v).map_err(|e| {
                StoreError::Corrupt(format!("record {}: {e}", crate::keys::printable(&k)))
            })?;
            Ok(StoredRecord {
                key,
                record,
                raw_key: k,
            })
        })
        .collect()
}

/// A session's records, time-ordered, starting strictly after `cursor` (a
/// `raw_key` returned earlier) when given.
pub fn session_records(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    session: &str,
    cursor: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<StoredRecord>, StoreError> {
    let mut range = keys.audit_logs_session(tenant, user, session);
    if let Some(c) = cursor {
        let next = after(c);
        if next > range.begin {
            range.begin = next;
        }
    }
    records_in(txn, keys, &range, limit, false)
}

/// One session's summary (the `sessions` row).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    pub tenant: String,
    pub user: String,
    pub session: String,
    pub events: i64,
    pub by_type: std::collections::BTreeMap<String, i64>,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// The summaries of every session in `range` (one of the `sessions` ranges
/// of [`Keys`]), ordered by tenant, user, session.
pub fn sessions_in(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    range: &KeyRange,
) -> Result<Vec<SessionSummary>, StoreError> {
    use crate::keys::SessionField;
    let mut out: Vec<SessionSummary> = Vec::new();
    for (k, v) in txn.get_range(&range.begin, &range.end, 0, false)? {
        let f = keys
            .decode_session_field(&k)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let same = out
            .last()
            .is_some_and(|s| s.tenant == f.tenant && s.user == f.user && s.session == f.session);
        if !same {
            out.push(SessionSummary {
                tenant: f.tenant.clone(),
                user: f.user.clone(),
                session: f.session.clone(),
                ..Default::default()
            });
        }
        let Some(s) = out.last_mut() else { continue };
        match f.field {
            SessionField::Events => s.events = decode_i64(&v),
            SessionField::TypeCount(t) => {
                s.by_type.insert(t, decode_i64(&v));
            }
            SessionField::FirstNs => s.first_ns = decode_u64(&v),
            SessionField::LastNs => s.last_ns = decode_u64(&v),
        }
    }
    Ok(out)
}

/// One session's summary, if it has any record.
pub fn session_summary(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    session: &str,
) -> Result<Option<SessionSummary>, StoreError> {
    Ok(
        sessions_in(txn, keys, &keys.session(tenant, user, session))?
            .into_iter()
            .next(),
    )
}

/// Who touched `path`, time-ordered (newest first with `reverse`).
pub fn path_history(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    limit: usize,
    reverse: bool,
) -> Result<Vec<(ByPathKey, PathTouch)>, StoreError> {
    let r = keys.by_path_range(tenant, path);
    txn.get_range(&r.begin, &r.end, limit, reverse)?
        .into_iter()
        .map(|(k, v)| {
            let key = keys
                .decode_by_path(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let touch = PathTouch::decode(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((key, touch))
        })
        .collect()
}

/// Paths that held content with this checksum, with when each was last seen (ns).
pub fn checksum_paths(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    checksum: &str,
    limit: usize,
) -> Result<Vec<(String, u64)>, StoreError> {
    let r = keys.by_checksum_range(tenant, checksum);
    txn.get_range(&r.begin, &r.end, limit, false)?
        .into_iter()
        .map(|(k, v)| {
            let key = keys
                .decode_by_checksum(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((key.path, decode_u64(&v)))
        })
        .collect()
}

/// A monitor's delivery counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MonitorRow {
    pub monitor_id: String,
    pub tenant: String,
    /// Distinct events stored.
    pub received: i64,
    /// Highest `seq` stored; `max_seq - received` events are missing so far.
    pub max_seq: u64,
    /// Time of the latest event stored (ns); 0 for rows written before it
    /// was kept.
    pub last_ns: u64,
}

impl MonitorRow {
    /// Events not (yet) received: gaps below the highest `seq`.
    pub fn missing(&self) -> i64 {
        i64::try_from(self.max_seq)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.received)
            .max(0)
    }
}

fn monitors_in(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    range: &KeyRange,
) -> Result<Vec<MonitorRow>, StoreError> {
    monitors_of(keys, txn.get_range(&range.begin, &range.end, 0, false)?)
}

/// Groups `("monitors", id, field)` pairs (in key order) into rows.
fn monitors_of(keys: &Keys, kvs: Vec<Kv>) -> Result<Vec<MonitorRow>, StoreError> {
    let mut out: Vec<MonitorRow> = Vec::new();
    for (k, v) in kvs {
        let (id, field) = keys
            .decode_monitor_field(&k)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if out.last().is_none_or(|m| m.monitor_id != id) {
            out.push(MonitorRow {
                monitor_id: id,
                ..Default::default()
            });
        }
        let Some(m) = out.last_mut() else { continue };
        match field.as_str() {
            crate::keys::MONITOR_RECEIVED => m.received = decode_i64(&v),
            crate::keys::MONITOR_MAX_SEQ => m.max_seq = decode_u64(&v),
            crate::keys::MONITOR_LAST_NS => m.last_ns = decode_u64(&v),
            crate::keys::MONITOR_TENANT => m.tenant = String::from_utf8_lossy(&v).into_owned(),
            _ => {}
        }
    }
    Ok(out)
}

/// One monitor's row.
pub fn monitor(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    monitor_id: &str,
) -> Result<Option<MonitorRow>, StoreError> {
    Ok(monitors_in(txn, keys, &keys.monitor(monitor_id))?
        .into_iter()
        .next())
}

/// Every monitor's row, in one transaction (tests and small stores; see
/// [`each_monitor`] for a store of any size).
pub fn monitors(txn: &mut dyn ReadTxn, keys: &Keys) -> Result<Vec<MonitorRow>, StoreError> {
    monitors_in(txn, keys, &keys.monitors_all())
}

/// Monitor rows read per transaction by [`each_monitor`].
const MONITOR_PAGE_KEYS: usize = 4000;

/// Calls `f` with every monitor's row, reading at most
/// `MONITOR_PAGE_KEYS` keys per transaction, so that any number of
/// monitors stays within FoundationDB's 5 s transaction lifetime.
pub fn each_monitor(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    f: &mut dyn FnMut(MonitorRow),
) -> Result<(), StoreError> {
    each_monitor_until(store, keys, &mut |m| {
        f(m);
        ControlFlow::Continue(())
    })
}

/// Calls `f` with the monitors' rows in key order, as [`each_monitor`]
/// does, until `f` breaks; no page is read after that.
pub fn each_monitor_until(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    f: &mut dyn FnMut(MonitorRow) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let all = keys.monitors_all();
    let mut begin = all.begin.clone();
    loop {
        let page = KeyRange {
            begin: begin.clone(),
            end: all.end.clone(),
        };
        let (mut rows, full) = store.read(|t| {
            let kvs = t.get_range(&page.begin, &page.end, MONITOR_PAGE_KEYS, false)?;
            let full = kvs.len() == MONITOR_PAGE_KEYS;
            Ok((monitors_of(keys, kvs)?, full))
        })?;
        if full {
            // The page may end inside the last monitor's fields: read that
            // monitor again, whole, with the next page.
            let Some(last) = rows.pop() else {
                return Ok(());
            };
            begin = keys.monitor(&last.monitor_id).begin;
            if rows.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "monitor {} has more than {MONITOR_PAGE_KEYS} fields",
                    last.monitor_id
                )));
            }
        }
        for row in rows {
            if f(row).is_break() {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// Gives the monitor `monitor_id` to `tenant`: rewrites its `tenant` field
/// and keeps its counters as they are (they may count events stored under
/// the owner before). Returns the row as it was before, `None` when the
/// monitor has no row (nothing is written then). With `dry_run`, or when
/// `tenant` already owns it, nothing is written. Read and written in `txn`:
/// on a shared store, a writer that gives the monitor an owner meanwhile
/// makes the transaction retry.
pub fn set_monitor_owner(
    txn: &mut dyn Txn,
    keys: &Keys,
    monitor_id: &str,
    tenant: &str,
    dry_run: bool,
) -> Result<Option<MonitorRow>, StoreError> {
    let range = keys.monitor(monitor_id);
    let before = monitors_of(keys, txn.get_range(&range.begin, &range.end, 0, false)?)?
        .into_iter()
        .next();
    if let Some(row) = &before {
        if !dry_run && row.tenant != tenant {
            txn.set(&keys.monitor_tenant(monitor_id), tenant.as_bytes())?;
        }
    }
    Ok(before)
}

/// A stored dead letter with its key parts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterRow {
    pub ts_ns: i64,
    pub id: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Dead letters, oldest first, at most `limit` (0 = all).
pub fn dead_letters(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    dead_letters_in(txn, keys, &keys.dead_letter_all(), limit)
}

/// Dead letters in a key range, oldest first, at most `limit` (0 = all).
pub fn dead_letters_in(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    r: &KeyRange,
    limit: usize,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    txn.get_range(&r.begin, &r.end, limit, false)?
        .into_iter()
        .map(|(k, v)| {
            let (ts_ns, id) = keys
                .decode_dead_letter(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut letter: DeadLetter = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("dead letter: {e}")))?;
            letter.ts_ns = ts_ns;
            letter.id.clone_from(&id);
            Ok(DeadLetterRow { ts_ns, id, letter })
        })
        .collect()
}

/// Counts keys in a range (for tests and tools; scans the range).
pub fn count_in(txn: &mut dyn ReadTxn, range: &KeyRange) -> Result<usize, StoreError> {
    Ok(txn.get_range(&range.begin, &range.end, 0, false)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoreMetrics;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An embedded store whose write transactions take the path they take
    /// on FoundationDB (not exclusive) and measure themselves as
    /// FoundationDB does ([`fdb_size`]): every key read (a read conflict
    /// range), every mutation and its write conflict range, with the keys and
    /// values the writer really passes.
    struct Metered {
        inner: EmbeddedStore,
        /// Size of the last committed write transaction.
        last: AtomicUsize,
        /// Sizes of every committed write transaction, in order.
        all: std::sync::Mutex<Vec<usize>>,
    }

    impl Metered {
        fn open(dir: &std::path::Path) -> Self {
            Metered {
                inner: EmbeddedStore::open(dir).expect("open"),
                last: AtomicUsize::new(0),
                all: Default::default(),
            }
        }
    }

    struct MeteredTxn<'t> {
        txn: &'t mut dyn Txn,
        bytes: usize,
    }

    impl ReadTxn for MeteredTxn<'_> {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.bytes += fdb_size::read(key.len());
            self.txn.get(key)
        }
        fn get_range(
            &mut self,
            begin: &[u8],
            end: &[u8],
            limit: usize,
            reverse: bool,
        ) -> Result<Vec<Kv>, StoreError> {
            self.bytes += begin.len() + end.len() + fdb_size::RANGE_OVERHEAD;
            self.txn.get_range(begin, end, limit, reverse)
        }
        fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
            self.bytes += keys.iter().map(|k| fdb_size::read(k.len())).sum::<usize>();
            self.txn.exist_many(keys)
        }
        fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.bytes += keys.iter().map(|k| fdb_size::read(k.len())).sum::<usize>();
            self.txn.get_many(keys)
        }
    }

    impl Txn for MeteredTxn<'_> {
        fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.bytes += fdb_size::write(key.len(), value.len());
            self.txn.set(key, value)
        }
        fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.bytes += fdb_size::write(key.len(), key.len() + 1);
            self.txn.clear(key)
        }
        fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
            self.bytes += 2 * (begin.len() + end.len() + fdb_size::RANGE_OVERHEAD)
                + fdb_size::MUTATION_OVERHEAD;
            self.txn.clear_range(begin, end)
        }
        fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
            self.bytes += fdb_size::write(key.len(), 8);
            self.txn.atomic_add(key, delta)
        }
        fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.bytes += fdb_size::write(key.len(), 8);
            self.txn.atomic_max(key, value)
        }
        fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.bytes += fdb_size::write(key.len(), 8);
            self.txn.atomic_min(key, value)
        }
        fn written_bytes(&self) -> usize {
            self.txn.written_bytes()
        }
    }

    impl Store for Metered {
        fn run_write(
            &self,
            f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            let mut bytes = 0;
            self.inner.run_write(&mut |txn| {
                let mut m = MeteredTxn { txn, bytes: 0 };
                let r = f(&mut m);
                bytes = m.bytes;
                r
            })?;
            self.last.store(bytes, Ordering::SeqCst);
            self.all.lock().expect("lock").push(bytes);
            Ok(())
        }
        fn run_read(
            &self,
            f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.run_read(f)
        }
        fn check(&self) -> Result<(), StoreError> {
            self.inner.check()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn metrics(&self) -> &StoreMetrics {
            self.inner.metrics()
        }
    }

    fn record_line(i: usize, session: &str, monitor: &str) -> String {
        let mut v = serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": monitor,
            "seq": i + 1,
            "timestamp": format!("2020-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
            "event_type": "update",
            "kind": "file",
            "path": format!("src/module_{i}/file_{i}.rs"),
            "checksum": format!("sha256:{:064x}", i),
            "tenant_id": "acme",
            "user_id": "alice",
            "session_id": session,
        });
        // Every other one a move: two `by_path` entries.
        if i % 2 == 0 {
            v["event_type"] = "move".into();
            v["from"] = format!("src/old_{i}/file_{i}.rs").into();
            v["to"] = v["path"].clone();
        }
        v.to_string()
    }

    /// The estimate of a transaction matches what FoundationDB counts for
    /// the keys and values the writer really stores (within 10 %, never
    /// below), for one record, for many records of one session (counters
    /// shared) and for records of many sessions and monitors.
    #[test]
    fn the_estimate_follows_foundationdb_accounting_of_the_real_writes() {
        let keys = Keys::default();
        let cases: [(&str, usize, bool); 4] = [
            ("one record", 1, false),
            ("one session", 300, false),
            ("a session and a monitor each", 100, true),
            ("late records", 50, false),
        ];
        for (name, n, spread) in cases {
            let dir = tempfile::tempdir().expect("dir");
            let store = Metered::open(dir.path());
            let lines: Vec<String> = (0..n)
                .map(|i| {
                    let (s, m) = if spread {
                        (format!("s-{i}"), uuid::Uuid::now_v7().to_string())
                    } else {
                        ("s".into(), "0190b5a0-0000-7000-8000-000000000001".into())
                    };
                    record_line(i, &s, &m)
                })
                .collect();
            let items: Vec<Item> = lines
                .iter()
                .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
                .collect();
            for i in &items {
                if let Item::DeadLetter(d) = i {
                    panic!("{name}: {:?}", d.detail);
                }
            }
            let late_after = (name == "late records").then_some(3_600_000_000_000);
            let mut cost = TxnCost::new(&keys, &store, late_after, crate::timespec::now_ns());
            for i in &items {
                cost.add(i);
            }
            let opts = WriteOptions {
                target_txn_bytes: usize::MAX,
                late_after_ns: late_after,
            };
            let w = write_items(&store, &keys, &items, opts).expect("write");
            assert_eq!((w.written, w.transactions), (n as u64, 1), "{name}");
            let actual = store.last.load(Ordering::SeqCst);
            let estimate = cost.bytes();
            assert!(
                estimate >= actual && estimate * 10 <= actual * 11,
                "{name}: estimated {estimate} bytes, FoundationDB counts {actual}"
            );
        }
    }

    /// With the default 1 MB target, a large batch is cut into transactions
    /// that FoundationDB counts at about 1 MB each, never above.
    #[test]
    fn transactions_are_cut_near_the_target_as_foundationdb_counts_them() {
        let keys = Keys::default();
        let dir = tempfile::tempdir().expect("dir");
        let store = Metered::open(dir.path());
        let lines: Vec<String> = (0..4000)
            .map(|i| record_line(i, "s", "0190b5a0-0000-7000-8000-000000000001"))
            .collect();
        let items: Vec<Item> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
            .collect();
        let w = write_items(&store, &keys, &items, WriteOptions::default()).expect("write");
        assert_eq!(w.written, 4000);
        let sizes = store.all.lock().expect("lock").clone();
        assert_eq!(sizes.len() as u64, w.transactions);
        let full = &sizes[..sizes.len() - 1];
        assert!(full.len() >= 2, "{sizes:?}");
        for s in full {
            assert!(
                (900_000..=limits::TARGET_TXN_BYTES).contains(s),
                "a transaction of {s} bytes as FoundationDB counts them: {sizes:?}"
            );
        }
    }
}
