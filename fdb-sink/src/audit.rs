//! Domain operations over the store: writing validated records idempotently,
//! and the read helpers the query API builds on.
//!
//! Idempotency: a record is written only when its `audit_logs` key is absent,
//! checked in the same transaction; only then are the session counters, the
//! monitor counters and the indexes updated. Redelivering an event (Vector
//! retrying after a lost response, or a retried FoundationDB commit whose
//! outcome was unknown) therefore stores and counts it once. Counters use
//! atomic ADD/MAX/MIN, aggregated per transaction, so concurrent writers never
//! conflict on them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

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
}

/// Rough bytes one item adds to a transaction (value, keys, counters), on
/// `store` (whose reads may count too, [`Store::reads_add_to_txn_size`]).
pub fn item_cost(item: &Item, store: &(impl Store + ?Sized)) -> usize {
    match item {
        Item::Record(r) => {
            r.value.len() + 160 + r.paths.iter().map(|p| 2 * p.len() + 80).sum::<usize>()
        }
        Item::DeadLetter(d) => {
            // One keyed by its receipt is also looked up under its
            // neighbouring hours: on FoundationDB each read adds a conflict
            // range (about twice its key) to the transaction's size; on the
            // embedded store reads add nothing.
            let lookups = if d.keyed_by_receipt && store.reads_add_to_txn_size() {
                LOOKUP_COST * receipt_lookup_times(d.ts_ns).count()
            } else {
                0
            };
            d.raw.len() + d.detail.len() + 200 + lookups
        }
    }
}

/// Rough bytes a point read of a dead letter's key adds to a transaction.
const LOOKUP_COST: usize = 130;

/// Writes a batch, split into transactions of about
/// `opts.target_txn_bytes`. Returns after every transaction committed. On
/// error, earlier transactions stay committed (safe: writes are idempotent,
/// the client retries the whole batch).
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
        let mut bytes = 0;
        while end < items.len()
            && (end == start || bytes + item_cost(&items[end], store) <= opts.target_txn_bytes)
        {
            bytes += item_cost(&items[end], store);
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
struct MonitorDelta<'a> {
    received: i64,
    max_seq: u64,
    last_ns: u64,
    tenant: &'a str,
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
    // "Last seen" per (tenant, checksum, path): one MAX per key and chunk.
    let mut last_seen: HashMap<&[u8], u64, RandomState> =
        HashMap::with_capacity_and_hasher(items.len(), RandomState::default());
    // Shared stores (FoundationDB): look every record up at once, in one
    // round trip, instead of one lookup per record; the exclusive embedded
    // store mostly needs no lookup at all (see `SessionDelta::start`).
    let mut prefetched = if txn.exclusive() {
        None
    } else {
        Some(Prefetched::read(txn, items)?)
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
                let ts = u64::try_from(r.ts_ns).unwrap_or(0);
                let id = (r.tenant.as_str(), r.user.as_str(), r.session.as_str());
                let s = match sessions.entry(id) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(SessionDelta::start(txn, keys, id)?),
                };
                // Later than anything stored in its session: cannot be stored yet.
                let known = match &mut prefetched {
                    Some(p) => Some(p.is_new(&r.encoded.audit)),
                    None => s
                        .stored_up_to
                        .is_some_and(|up_to| ts > up_to)
                        .then_some(true),
                };
                let new = write_record(txn, r, known)?;
                r.stored_new.set(new);
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
                    m.tenant = &r.tenant;
                } else {
                    summary.duplicates += 1;
                }
            }
            Item::DeadLetter(d) => {
                if write_dead_letter(txn, keys, d, stored_letters.as_mut())? {
                    summary.dead_lettered += d.line_count();
                    d.count_lines(&mut summary.dead_lettered_by_reason);
                } else {
                    summary.dead_letter_duplicates += d.line_count();
                }
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
        txn.set(&keys.monitor_tenant(id), m.tenant.as_bytes())?;
    }
    Ok(summary)
}

/// Which records of a chunk are already stored, read in one call before
/// the chunk is written.
struct Prefetched<'a> {
    /// Audit keys already stored, or written earlier in this chunk.
    present: HashSet<&'a [u8], RandomState>,
}

impl<'a> Prefetched<'a> {
    fn read(txn: &mut dyn Txn, items: &'a [Item]) -> Result<Self, StoreError> {
        let audit: Vec<&[u8]> = items
            .iter()
            .filter_map(|i| match i {
                Item::Record(r) => Some(r.encoded.audit.as_slice()),
                Item::DeadLetter(_) => None,
            })
            .collect();
        let exist = txn.exist_many(&audit)?;
        let present = audit
            .into_iter()
            .zip(exist)
            .filter_map(|(k, e)| e.then_some(k))
            .collect();
        Ok(Prefetched { present })
    }

    /// True the first time a key absent from the store is asked about (the
    /// record is written then); false afterwards, and for stored keys.
    fn is_new(&mut self, key: &'a [u8]) -> bool {
        self.present.insert(key)
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

/// Every tenant with at least one session row, in key order: one short
/// range read per tenant, jumping over the rest of its rows.
pub fn tenants(txn: &mut dyn ReadTxn, keys: &Keys) -> Result<Vec<String>, StoreError> {
    let all = keys.sessions_all();
    let mut begin = all.begin;
    let mut out = Vec::new();
    while let Some((k, _)) = txn
        .get_range(&begin, &all.end, 1, false)?
        .into_iter()
        .next()
    {
        let f = keys
            .decode_session_field(&k)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        begin = keys.sessions_tenant(&f.tenant).end;
        out.push(f.tenant);
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
/// [`MONITOR_PAGE_KEYS`] keys per transaction, so that any number of
/// monitors stays within FoundationDB's 5 s transaction lifetime.
pub fn each_monitor(
    store: &(impl Store + ?Sized),
    keys: &Keys,
    f: &mut dyn FnMut(MonitorRow),
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
        rows.into_iter().for_each(&mut *f);
        if !full {
            return Ok(());
        }
    }
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
