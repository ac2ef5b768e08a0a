//! The embedded backend: a fjall database (a log-structured merge tree) in
//! `<dir>/audit.fjall`, with one keyspace of byte keys to byte values
//! holding exactly the keys FoundationDB would hold.
//!
//! Write transactions run one at a time (a writer lock). Their writes are
//! buffered in an ordered in-memory overlay that their own reads consult
//! first (read-your-writes), and committed as one fjall write batch: one
//! atomic record appended to the journal, persisted with
//! `PersistMode::SyncAll` (fsync) before `commit` returns, so a `kill -9`
//! loses nothing that was acknowledged; on reopen the journal is replayed
//! and a torn final batch is discarded whole (fjall logs a warning). Bytes
//! that cannot be read but are followed by complete batches are damage, not
//! a crash's torn end: the database does not open, its files are left as
//! they are, and the error says what the operator can do. Readers work on snapshots,
//! which see a batch entirely or not at all, and never wait for the writer.
//!
//! The writer also remembers the committed values of the keys that atomic
//! operations read (counters, `by_checksum` times): they are read again by
//! almost every transaction, and a point read of an LSM tree consults the
//! memtables and a filter of every table. The copy is exact because this
//! process is the only writer: every commit updates the keys it wrote, and a
//! failed commit forgets them all.
//!
//! Why an LSM tree: an audit trail is append-mostly, and every event also
//! lands in secondary indexes ordered by path and by monitor, i.e. at random
//! positions of the key space. A log-structured store turns those into
//! sequential appends (memtable + journal) where a copy-on-write B-tree
//! rewrites one page per touched leaf on every commit; see
//! docs/storage.md and docs/performance.md for the measurements.
//!
//! fjall lets one process open a database at a time (an exclusive `flock` on
//! `<dir>/audit.fjall/lock`). When it cannot be opened (locked by another
//! process, unreadable, I/O error) the store reports itself unavailable and
//! tries to open it again on the next use, so a server keeps running, answers
//! 503 and recovers on its own once the directory is free.

use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Slice};

use super::{check_sizes, Kv, ReadTxn, Store, StoreError, StoreMetrics, Txn};
use crate::keys::{decode_i64, decode_u64};

/// Name of the database directory inside the store directory.
pub const DB_DIR: &str = "audit.fjall";

/// The one keyspace that holds every key.
const KEYSPACE: &str = "kv";

/// The file an older release of the sink used; its data is not read.
const LEGACY_FILE: &str = "audit.redb";

/// Most committed values the writer remembers; beyond, it starts over.
const MAX_KNOWN_VALUES: usize = 200_000;

/// An open database, its keyspace and the writer lock.
struct Open {
    db: Database,
    kv: Keyspace,
    writer: Mutex<KnownValues>,
    /// The database directory it opened (see [`DirIdentity`]).
    identity: Option<DirIdentity>,
}

/// Which directory a path names (device and inode): a store directory
/// removed or replaced while open leaves the process writing to unlinked
/// files, which an fsync does not save, so every commit checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirIdentity {
    dev: u64,
    ino: u64,
}

impl DirIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<DirIdentity> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| DirIdentity {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<DirIdentity> {
        None
    }
}

/// Committed values (`None` = absent) of keys that atomic operations read,
/// kept by the writer (see the module docs).
#[derive(Default)]
struct KnownValues {
    values: HashMap<Slice, Option<Slice>, foldhash::fast::RandomState>,
}

impl KnownValues {
    /// Learns the committed value of `key`.
    fn learn(&mut self, key: &[u8], value: Option<Slice>) {
        if self.values.len() >= MAX_KNOWN_VALUES {
            self.values.clear();
        }
        self.values.insert(Slice::from(key), value);
    }

    /// Takes in the writes of a committed transaction.
    fn committed(&mut self, overlay: &BTreeMap<Slice, Option<Slice>>) {
        if self.values.is_empty() {
            return;
        }
        for (key, value) in overlay {
            if let Some(known) = self.values.get_mut(key) {
                known.clone_from(value);
            }
        }
    }
}

/// The fjall-backed store.
pub struct EmbeddedStore {
    dir: PathBuf,
    path: PathBuf,
    open: Mutex<Option<Arc<Open>>>,
    metrics: StoreMetrics,
    /// Why the last commit failed, until one succeeds: the database may
    /// open while it cannot take writes (a full disk), and the readiness
    /// check must not say otherwise.
    write_fault: Mutex<Option<String>>,
    /// When the store was last found damaged, and why: it is opened again
    /// (a full replay of its journals) at most every [`DAMAGED_RETRY`], not
    /// at every readiness check.
    damaged: Mutex<Option<(std::time::Instant, String)>>,
}

/// How long a store found damaged is reported so before it is opened
/// again (an operator may have repaired it meanwhile).
const DAMAGED_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl EmbeddedStore {
    /// Prepares the store in `dir` and tries to open it; a failure to open is
    /// logged and retried on the next use (see the module docs).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = EmbeddedStore {
            dir: dir.to_path_buf(),
            path: dir.join(DB_DIR),
            open: Mutex::new(None),
            metrics: StoreMetrics::default(),
            write_fault: Mutex::new(None),
            damaged: Mutex::new(None),
        };
        if dir.join(LEGACY_FILE).exists() {
            tracing::warn!(
                file = %dir.join(LEGACY_FILE).display(),
                "found a store file of an older format; it is not read. Export it with the \
                 release that wrote it and `fdb-sink import` the export"
            );
        }
        // Whether a failure is retried is the caller's business: `serve`
        // keeps checking (and logs it), a one-shot command reports it.
        if let Err(e) = store.database() {
            tracing::debug!(store = %store.describe(), error = %e, "embedded store not available");
        }
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database(&self) -> Result<Arc<Open>, StoreError> {
        let mut slot = self
            .open
            .lock()
            .map_err(|_| StoreError::Internal("embedded store mutex poisoned".into()))?;
        if let Some(open) = slot.as_ref() {
            return Ok(open.clone());
        }
        let mut damaged = self
            .damaged
            .lock()
            .map_err(|_| StoreError::Internal("embedded store mutex poisoned".into()))?;
        if let Some((at, why)) = damaged.as_ref() {
            if at.elapsed() < DAMAGED_RETRY {
                return Err(StoreError::Damaged(why.clone()));
            }
        }
        match self.open_database() {
            Ok(open) => {
                *damaged = None;
                *slot = Some(open.clone());
                Ok(open)
            }
            Err(StoreError::Damaged(why)) => {
                *damaged = Some((std::time::Instant::now(), why.clone()));
                Err(StoreError::Damaged(why))
            }
            Err(e) => Err(e),
        }
    }

    fn open_database(&self) -> Result<Arc<Open>, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::Unavailable {
            message: format!("cannot create store directory {}: {e}", self.dir.display()),
            source: Some(Box::new(e)),
        })?;
        // fjall's default background workers (one per core, up to 4); the
        // workspace builds fjall with a fix that keeps the first of them
        // from spinning while another merges (vendor/fjall/PATCHES.md).
        let db = Database::builder(&self.path).open().map_err(convert)?;
        let kv = db.keyspace(KEYSPACE, keyspace_options).map_err(convert)?;
        tracing::info!(path = %self.path.display(), "embedded store opened");
        Ok(Arc::new(Open {
            db,
            kv,
            writer: Mutex::new(KnownValues::default()),
            identity: DirIdentity::of(&self.path),
        }))
    }

    /// Fails when the database directory is no longer the one `open` opened
    /// (removed, or replaced): what it writes would be lost.
    fn same_directory(&self, open: &Open) -> Result<(), StoreError> {
        let now = DirIdentity::of(&self.path);
        if open.identity.is_some() && now != open.identity {
            tracing::error!(
                path = %self.path.display(),
                "the store directory was removed or replaced while open; closing it (a new, \
                 empty store is created where it was)"
            );
            return Err(StoreError::unavailable_msg(format!(
                "the store directory {} was removed or replaced while the sink had it open; \
                 nothing written since is stored",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Drops the handle after a fault so that the next use reopens the store.
    fn on_error(&self, e: &StoreError) {
        if e.unavailable() {
            if let Ok(mut slot) = self.open.lock() {
                // The caller reports the error (and `serve` retries); this
                // only notes the handle being dropped.
                if slot.take().is_some() {
                    tracing::debug!(error = %e, "embedded store failed; handle closed");
                }
            }
        }
    }

    fn write_once(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let open = self.database()?;
        let mut known = open
            .writer
            .lock()
            .map_err(|_| StoreError::Internal("embedded store writer lock poisoned".into()))?;
        let mut txn = OverlayTxn {
            kv: &open.kv,
            overlay: BTreeMap::new(),
            known: &mut known,
            written: 0,
        };
        f(&mut txn)?;
        let overlay = txn.overlay;
        let committed = if overlay.is_empty() {
            // Nothing to write, but the answer rests on what was read (a
            // redelivery found stored): only true of the store's directory.
            Ok(())
        } else {
            let mut batch = fjall::OwnedWriteBatch::with_capacity(open.db.clone(), overlay.len())
                .durability(Some(PersistMode::SyncAll));
            for (key, value) in &overlay {
                match value {
                    Some(value) => batch.insert(&open.kv, key.clone(), value.clone()),
                    None => batch.remove(&open.kv, key.clone()),
                }
            }
            batch.commit()
        };
        let r = match committed {
            // Durable only if the files it went to are still the store's.
            Ok(()) => match self.same_directory(&open) {
                Ok(()) => {
                    known.committed(&overlay);
                    Ok(())
                }
                Err(e) => {
                    *known = KnownValues::default();
                    Err(e)
                }
            },
            Err(e) => {
                *known = KnownValues::default();
                Err(convert(e))
            }
        };
        // A write of nothing proves nothing about writing: it only records a fault.
        let wrote = !overlay.is_empty() || r.is_err();
        if let (true, Ok(mut fault)) = (wrote, self.write_fault.lock()) {
            *fault = r.as_ref().err().map(|e| match e {
                StoreError::Unavailable { message, .. } => message.clone(),
                other => other.to_string(),
            });
        }
        r
    }
}

impl Store for EmbeddedStore {
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // One writer at a time and no conflicts: nothing to retry.
        let r = self.write_once(f);
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let r = (|| {
            let open = self.database()?;
            f(&mut SnapshotRead {
                snapshot: open.db.snapshot(),
                kv: &open.kv,
            })
        })();
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    /// The database opens, and the last commit (if any failed) did not fail.
    ///
    /// A failed commit keeps the check failing until a write succeeds:
    /// the database may open while it cannot take writes (a full disk).
    /// `serve` makes that write itself while the store is not ready (its
    /// readiness probe, see `ingest::health`), so that a pod that gets no
    /// batches still becomes ready again.
    fn check(&self) -> Result<(), StoreError> {
        let open = self.database()?;
        if let Err(e) = self.same_directory(&open) {
            self.on_error(&e);
            return Err(e);
        }
        match self.write_fault.lock().ok().and_then(|f| f.clone()) {
            None => Ok(()),
            Some(why) => Err(StoreError::unavailable_msg(format!(
                "the last write failed ({why}); ready again once a write succeeds"
            ))),
        }
    }

    fn reads_add_to_txn_size(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("embedded:{}", self.dir.display())
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
}

/// How the keyspace is created (fjall records these with it: a store
/// created by an older release keeps the settings it was created with).
///
/// Tuned for ingest, whose compaction otherwise costs as much CPU as the
/// writer: new index keys land at hundreds of places of the key space, so
/// every flushed table overlaps all of level 1.
/// - Values of 256 bytes or more (the records, about 500 bytes of JSON) go
///   to blob files when flushed and are never rewritten by compaction,
///   which then moves only keys and small values. Records are written once
///   and rarely removed, so blob files seldom need garbage collection. The
///   blobs are not compressed: compressing them took about 0.7 us of CPU
///   per event, and the store ended up only about a tenth smaller.
/// - Memtables of 32 MiB (fjall's default: 64 MiB), with 16 tables in
///   level 0 before they are merged into level 1 (fjall's default: 4).
///   A flush ends with an fsync of the table and blob files it wrote, and
///   the journal's fsync of the commits running at that moment waits
///   behind it: halving what a flush writes halves those waits, which were
///   most of the acknowledgement tail. 16 level-0 tables of 32 MiB hold
///   the same data as 8 of 64 MiB, so level 1 is merged as often as with
///   those (fjall's defaults, 4 tables of 64 MiB, merge it twice as
///   often), at the cost of more tables for a read to consult. 128 MiB
///   memtables saved compaction but made every memtable insert of the
///   writer slower (a deeper skip list) and the waits longer.
fn keyspace_options() -> KeyspaceCreateOptions {
    let blobs = fjall::KvSeparationOptions {
        separation_threshold: 256,
        compression: fjall::CompressionType::None,
        ..Default::default()
    };
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .with_kv_separation(Some(blobs))
        .compaction_strategy(Arc::new(
            fjall::compaction::Leveled::default().with_l0_threshold(L0_TABLES),
        ))
}

/// Size at which a memtable is sealed and flushed to a table.
const MEMTABLE_BYTES: u64 = 32 << 20;

/// Tables in level 0 that trigger their merge into level 1.
const L0_TABLES: u8 = 16;

/// Every fjall error is a fault of the store (I/O, lock, journal), never of
/// the data being written: callers answer 503 and the client retries.
fn convert(e: fjall::Error) -> StoreError {
    let message = match &e {
        // The message says it all; fjall's own text would only repeat it.
        fjall::Error::Locked => return StoreError::unavailable_msg(
            "the database is locked by another process (another fdb-sink on the same directory?)",
        ),
        _ if io_kind(&e) == Some(std::io::ErrorKind::StorageFull) => {
            return StoreError::unavailable_msg(
                "no space left on the file system holding the store (writes succeed again \
                 once space is freed)",
            )
        }
        _ if io_kind(&e) == Some(std::io::ErrorKind::PermissionDenied) => {
            "permission denied on the store's files (check the owner and mode of the store \
             directory)"
                .to_string()
        }
        fjall::Error::Poisoned => {
            "a previous write failed (hardware or file system fault); reopening".to_string()
        }
        // Says it all, with the file and offsets: fjall's text would repeat it.
        fjall::Error::JournalRecovery(fjall::JournalRecoveryError::CorruptionBeforeValidData {
            path,
            pos,
            next_valid_batch,
        }) => return StoreError::Damaged(damaged_journal(path, *pos, *next_valid_batch)),
        fjall::Error::Storage(lsm) if damaged_file(lsm) => {
            return StoreError::Damaged(damaged_tables(&e))
        }
        other => format!("embedded store: {other}"),
    };
    StoreError::Unavailable {
        message,
        source: Some(Box::new(e)),
    }
}

/// True for the errors of reading a table or blob file whose bytes are not
/// what was written (a checksum that does not match, a header or trailer
/// that does not parse, a file missing): a fault of the disk or of someone
/// who changed the files, which running again cannot mend. (A format
/// version this build does not know is not damage: it stays a plain error,
/// with fjall's text.)
fn damaged_file(e: &fjall::LsmError) -> bool {
    use fjall::LsmError as L;
    matches!(
        e,
        L::ChecksumMismatch { .. }
            | L::Unrecoverable
            | L::Decompress(_)
            | L::InvalidTag(_)
            | L::InvalidTrailer
            | L::InvalidHeader(_)
            | L::Utf8(_)
    )
}

/// What an operator reads when a table or blob file of the store is
/// damaged: fjall's error log line just before names the file.
fn damaged_tables(e: &fjall::Error) -> String {
    format!(
        "a table or blob file of the embedded store is damaged, or was written by a store of \
         another configuration ({e}; the error logged just before names the file): the records \
         in it cannot be read, and writes that need them \
         fail. Ingest answers 503 so that clients keep what they hold. First keep a copy of \
         the store directory as it is. Then restore the store from a backup, or export what \
         can be read (`fdb-sink export` per tenant) and import it, with the monitors' output \
         or the clients' buffers delivered again, into a new directory; see docs/storage.md"
    )
}

/// What an operator reads when a journal file is damaged in the middle: the
/// store does not open, and nothing was changed on disk.
fn damaged_journal(path: &Path, pos: u64, next_valid_batch: Option<u64>) -> String {
    let db_dir = path.parent().unwrap_or(path);
    let after = match next_valid_batch {
        Some(next) => format!("committed batches follow it (the next at byte offset {next})"),
        None => "newer journal files follow it".to_string(),
    };
    format!(
        "the store's journal {journal} is damaged: the batch at byte offset {pos} cannot be \
         read, and {after}, so this is not the torn end a crash leaves. The store was not \
         opened and nothing was changed on disk. First keep a copy of {db} as it is. Then \
         restore the store from a backup or an export (`fdb-sink import`). Only if you accept \
         losing the records whose batches come after that offset in this file: cut it there \
         with `truncate -s {pos} {journal}`; the store then opens with everything before the \
         damage, and importing an export or the original events again adds back what is \
         missing (records already stored are skipped as duplicates)",
        journal = path.display(),
        db = db_dir.display(),
    )
}

/// The kind of the I/O error behind a fjall error, if it is one.
fn io_kind(e: &fjall::Error) -> Option<std::io::ErrorKind> {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => Some(io.kind()),
        _ => None,
    }
}

/// A read-only transaction: a snapshot of the committed batches.
struct SnapshotRead<'a> {
    snapshot: fjall::Snapshot,
    kv: &'a Keyspace,
}

/// A write transaction: pending writes (`None` = removed) over the
/// committed data, which cannot change while the writer lock is held.
struct OverlayTxn<'a> {
    kv: &'a Keyspace,
    /// Kept as fjall slices, which the commit hands to the batch as they are.
    overlay: BTreeMap<Slice, Option<Slice>>,
    known: &'a mut KnownValues,
    written: usize,
}

fn range_bounds<'k>(begin: &'k [u8], end: &'k [u8]) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (Bound::Included(begin), Bound::Excluded(end))
}

fn guard_kv(guard: fjall::Guard) -> Result<Kv, StoreError> {
    let (k, v) = guard.into_inner().map_err(convert)?;
    Ok((k.to_vec(), v.to_vec()))
}

fn collect_kvs(
    iter: impl Iterator<Item = fjall::Guard>,
    limit: usize,
) -> Result<Vec<Kv>, StoreError> {
    iter.take(limit).map(guard_kv).collect()
}

fn no_limit(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

impl ReadTxn for SnapshotRead<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshot
            .get(self.kv, key)
            .map_err(convert)?
            .map(|v| v.to_vec()))
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        if begin >= end {
            return Ok(Vec::new());
        }
        let iter = self
            .snapshot
            .range::<&[u8], _>(self.kv, range_bounds(begin, end));
        if reverse {
            collect_kvs(iter.rev(), no_limit(limit))
        } else {
            collect_kvs(iter, no_limit(limit))
        }
    }
}

/// Merges committed pairs with pending writes, both in the same order
/// (ascending, or descending when `reverse`); a pending write wins over the
/// committed pair with the same key, a pending removal hides it.
fn merge<'o>(
    committed: impl Iterator<Item = fjall::Guard>,
    pending: impl Iterator<Item = (&'o Slice, &'o Option<Slice>)>,
    limit: usize,
    reverse: bool,
) -> Result<Vec<Kv>, StoreError> {
    let mut committed: Peekable<_> = committed.map(guard_kv).peekable();
    let mut pending = pending.peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        let take_pending = match (committed.peek(), pending.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => {
                if let Some(Err(e)) = committed.next() {
                    return Err(e);
                }
                continue;
            }
            (Some(Ok(_)), None) => false,
            (None, Some(_)) => true,
            (Some(Ok((ck, _))), Some((pk, _))) => {
                let ord = <[u8] as Ord>::cmp(pk, ck.as_slice());
                let ord = if reverse { ord.reverse() } else { ord };
                match ord {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => {
                        committed.next();
                        true
                    }
                    std::cmp::Ordering::Greater => false,
                }
            }
        };
        if take_pending {
            if let Some((k, Some(v))) = pending.next() {
                out.push((k.to_vec(), v.to_vec()));
            }
        } else if let Some(Ok(kv)) = committed.next() {
            out.push(kv);
        }
    }
    Ok(out)
}

impl ReadTxn for OverlayTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.current(key, false)?.map(|v| v.to_vec()))
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        if begin >= end {
            return Ok(Vec::new());
        }
        let committed = self.kv.range::<&[u8], _>(range_bounds(begin, end));
        let pending = self.overlay.range::<[u8], _>(range_bounds(begin, end));
        if reverse {
            merge(committed.rev(), pending.rev(), no_limit(limit), true)
        } else {
            merge(committed, pending, no_limit(limit), false)
        }
    }
}

impl OverlayTxn<'_> {
    /// The current value of `key`: this transaction's write, else the
    /// remembered committed value, else a read of the committed value
    /// (remembered with `remember`, for the keys atomic operations update).
    fn current(&mut self, key: &[u8], remember: bool) -> Result<Option<Slice>, StoreError> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        if let Some(known) = self.known.values.get(key) {
            return Ok(known.clone());
        }
        let committed = self.kv.get(key).map_err(convert)?;
        if remember {
            self.known.learn(key, committed.clone());
        }
        Ok(committed)
    }

    /// The current value of a key an atomic operation updates.
    fn read_for_update<T>(
        &mut self,
        key: &[u8],
        decode: fn(&[u8]) -> T,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.current(key, true)?.as_deref().map(decode))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_sizes(key, Some(value))?;
        self.written += key.len() + value.len();
        self.overlay
            .insert(Slice::from(key), Some(Slice::from(value)));
        Ok(())
    }

    /// Stores `value` unless the current value should be kept
    /// (`keep_old(old, value)`).
    fn put_compare(
        &mut self,
        key: &[u8],
        value: u64,
        keep_old: fn(u64, u64) -> bool,
    ) -> Result<(), StoreError> {
        check_sizes(key, None)?;
        let old = self.read_for_update(key, decode_u64)?;
        if old.is_some_and(|old| keep_old(old, value)) {
            return Ok(());
        }
        self.put(key, &value.to_le_bytes())
    }
}

impl Txn for OverlayTxn<'_> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(key, value)
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.written += key.len();
        self.overlay.insert(Slice::from(key), None);
        Ok(())
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        // No range tombstones here: remove key by key.
        for (key, _) in self.get_range(begin, end, 0, false)? {
            self.clear(&key)?;
        }
        Ok(())
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        let cur = self.read_for_update(key, decode_i64)?.unwrap_or(0);
        self.put(key, &cur.wrapping_add(delta).to_le_bytes())
    }

    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.put_compare(key, value, |old, new| old >= new)
    }

    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.put_compare(key, value, |old, new| old <= new)
    }

    fn written_bytes(&self) -> usize {
        self.written
    }

    fn exclusive(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, StoreExt};

    /// A table or blob file that does not read back as written is
    /// reported as damaged (an operator must restore), not as unavailable
    /// (which suggests waiting); an I/O error stays unavailable.
    #[test]
    fn unreadable_table_files_are_damaged_not_unavailable() {
        for lsm in [
            fjall::LsmError::Unrecoverable,
            fjall::LsmError::InvalidTrailer,
            fjall::LsmError::InvalidHeader("Trailer"),
        ] {
            let e = convert(fjall::Error::Storage(lsm));
            let StoreError::Damaged(why) = &e else {
                panic!("not reported as damaged: {e:?}");
            };
            assert!(why.contains("table or blob file"), "{why}");
            assert!(why.contains("restore"), "{why}");
            assert!(e.unavailable(), "ingest must still answer 503: {e:?}");
        }
        let io = std::io::Error::other("disk went away");
        let e = convert(fjall::Error::Storage(fjall::LsmError::Io(io)));
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    }

    #[test]
    fn conformance_suite_passes_on_embedded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        conformance::run_all(&store);
    }

    /// The same suite through the write path FoundationDB takes
    /// (transactions that are not exclusive).
    #[test]
    fn conformance_suite_passes_on_embedded_seen_as_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        conformance::run_all(&conformance::Shared(store));
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.transact(|t| t.set(b"k", b"v")).expect("write");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.read(|t| t.get(b"k")).expect("read"),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn remembered_values_follow_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let value = |store: &EmbeddedStore| {
            store
                .read(|t| t.get(b"m"))
                .expect("read")
                .map(|v| decode_u64(&v))
        };
        store.transact(|t| t.atomic_max(b"m", 10)).expect("max");
        store
            .transact(|t| t.set(b"m", &5u64.to_le_bytes()))
            .expect("set");
        store.transact(|t| t.atomic_max(b"m", 7)).expect("max");
        assert_eq!(value(&store), Some(7), "MAX saw the plain write");
        store.transact(|t| t.clear(b"m")).expect("clear");
        store.transact(|t| t.atomic_min(b"m", 9)).expect("min");
        assert_eq!(value(&store), Some(9), "MIN saw the removal");
        let aborted = store.transact(|t| {
            t.atomic_max(b"m", 100)?;
            Err::<(), _>(StoreError::Internal("abort".into()))
        });
        assert!(aborted.is_err());
        store.transact(|t| t.atomic_max(b"m", 20)).expect("max");
        assert_eq!(value(&store), Some(20));
        store
            .transact(|t| {
                t.clear_range(b"a", b"z")?;
                t.atomic_add(b"m", 3)
            })
            .expect("clear_range then add");
        assert_eq!(value(&store), Some(3), "ADD saw the range removal");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_unavailable_until_the_first_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = EmbeddedStore::open(dir.path()).expect("open");
        first.check().expect("first is up");
        let second = EmbeddedStore::open(dir.path()).expect("open never fails");
        let err = second.check().expect_err("locked");
        assert!(err.unavailable(), "{err}");
        let err = second.transact(|t| t.set(b"a", b"b")).expect_err("locked");
        assert!(err.unavailable(), "{err}");
        drop(first);
        second.check().expect("recovers once the lock is released");
        second.transact(|t| t.set(b"a", b"b")).expect("write");
    }
}
