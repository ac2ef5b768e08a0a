//! The embedded backend: one redb file, `<dir>/audit.redb`, one table of
//! byte keys to byte values holding exactly the keys FoundationDB would hold.
//!
//! Every commit is `Durability::Immediate` (fsync before `commit` returns),
//! so a `kill -9` loses nothing that was acknowledged; redb's copy-on-write
//! B-tree with checksummed roots always reopens at the last commit.
//!
//! redb lets one process open a file at a time (it takes an exclusive `flock`).
//! When the file cannot be opened (locked by another process, unreadable,
//! I/O error) the store reports itself unavailable and tries to open it
//! again on the next use, so a server keeps running, answers 503 and
//! recovers on its own once the file is free.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::{check_sizes, Kv, ReadTxn, Store, StoreError, StoreMetrics, Txn};
use crate::keys::{decode_i64, decode_u64};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// File name inside the store directory.
pub const FILE_NAME: &str = "audit.redb";

/// The redb-backed store.
pub struct EmbeddedStore {
    dir: PathBuf,
    path: PathBuf,
    db: Mutex<Option<Arc<Database>>>,
    metrics: StoreMetrics,
}

impl EmbeddedStore {
    /// Prepares the store in `dir` and tries to open it; a failure to open is
    /// logged and retried on the next use (see the module docs).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = EmbeddedStore {
            dir: dir.to_path_buf(),
            path: dir.join(FILE_NAME),
            db: Mutex::new(None),
            metrics: StoreMetrics::default(),
        };
        if let Err(e) = store.database() {
            tracing::warn!(store = %store.describe(), error = %e, "embedded store not available yet; will retry");
        }
        Ok(store)
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.path
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = self
            .db
            .lock()
            .map_err(|_| StoreError::Internal("embedded store mutex poisoned".into()))?;
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::Unavailable {
            message: format!("cannot create store directory {}", self.dir.display()),
            source: Some(Box::new(e)),
        })?;
        let db = Database::builder().create(&self.path).map_err(convert)?;
        // Make sure the table exists so that read transactions can open it.
        let w = db.begin_write().map_err(convert)?;
        w.open_table(TABLE).map_err(convert)?;
        w.commit().map_err(convert)?;
        tracing::info!(file = %self.path.display(), "embedded store opened");
        let db = Arc::new(db);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Drops the handle after a fault so that the next use reopens the file.
    fn on_error(&self, e: &StoreError) {
        if e.unavailable() {
            if let Ok(mut slot) = self.db.lock() {
                if slot.take().is_some() {
                    tracing::warn!(error = %e, "embedded store failed; closing it, will reopen");
                }
            }
        }
    }

    fn write_once(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let db = self.database()?;
        let mut w = db.begin_write().map_err(convert)?;
        w.set_durability(Durability::Immediate);
        let dirty = {
            let table = w.open_table(TABLE).map_err(convert)?;
            let mut txn = RedbTxn {
                table,
                written: 0,
                dirty: false,
            };
            f(&mut txn)?;
            txn.dirty
        };
        if dirty {
            w.commit().map_err(convert)
        } else {
            w.abort().map_err(convert)
        }
    }
}

impl Store for EmbeddedStore {
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // redb has one writer at a time and no conflicts: nothing to retry.
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
            let db = self.database()?;
            let r = db.begin_read().map_err(convert)?;
            let table = r.open_table(TABLE).map_err(convert)?;
            f(&mut RedbRead { table })
        })();
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    fn check(&self) -> Result<(), StoreError> {
        let db = self.database()?;
        db.begin_read().map_err(convert).map(|_| ())
    }

    fn describe(&self) -> String {
        format!("embedded:{}", self.dir.display())
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
}

fn convert(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable {
            message: "the database file is locked by another process".into(),
            source: Some(Box::new(redb::Error::DatabaseAlreadyOpen)),
        },
        other => StoreError::Embedded(Box::new(other)),
    }
}

type Guard<'a> = redb::AccessGuard<'a, &'static [u8]>;

struct RedbTxn<'t> {
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
    written: usize,
    dirty: bool,
}

struct RedbRead {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

fn get_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table.get(key).map_err(convert)?.map(|v| v.value().to_vec()))
}

fn range_in(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    begin: &[u8],
    end: &[u8],
    limit: usize,
    reverse: bool,
) -> Result<Vec<Kv>, StoreError> {
    if begin >= end {
        return Ok(Vec::new());
    }
    let limit = if limit == 0 { usize::MAX } else { limit };
    let iter = table
        .range::<&[u8]>((Bound::Included(begin), Bound::Excluded(end)))
        .map_err(convert)?;
    let mut out = Vec::new();
    let mut push = |item: Result<(Guard, Guard), redb::StorageError>| {
        let (k, v) = item.map_err(convert)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
        Ok::<_, StoreError>(())
    };
    if reverse {
        for item in iter.rev().take(limit) {
            push(item)?;
        }
    } else {
        for item in iter.take(limit) {
            push(item)?;
        }
    }
    Ok(out)
}

impl ReadTxn for RedbRead {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(&self.table, key)
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        range_in(&self.table, begin, end, limit, reverse)
    }
}

impl ReadTxn for RedbTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(&self.table, key)
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        range_in(&self.table, begin, end, limit, reverse)
    }
}

impl RedbTxn<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_sizes(key, Some(value))?;
        self.table.insert(key, value).map_err(convert)?;
        self.written += key.len() + value.len();
        self.dirty = true;
        Ok(())
    }
}

impl RedbTxn<'_> {
    /// Stores `value`, then restores the previous value when `keep_old(old, value)`.
    fn put_compare(
        &mut self,
        key: &[u8],
        value: u64,
        keep_old: fn(u64, u64) -> bool,
    ) -> Result<(), StoreError> {
        check_sizes(key, None)?;
        let old = self
            .table
            .insert(key, value.to_le_bytes().as_slice())
            .map_err(convert)?
            .map(|v| decode_u64(v.value()));
        self.written += key.len() + 8;
        self.dirty = true;
        if let Some(old) = old.filter(|o| keep_old(*o, value)) {
            self.table
                .insert(key, old.to_le_bytes().as_slice())
                .map_err(convert)?;
        }
        Ok(())
    }
}

impl Txn for RedbTxn<'_> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put(key, value)
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.table.remove(key).map_err(convert)?;
        self.written += key.len();
        self.dirty = true;
        Ok(())
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        if begin >= end {
            return Ok(());
        }
        self.table
            .retain_in::<&[u8], _>((Bound::Included(begin), Bound::Excluded(end)), |_, _| false)
            .map_err(convert)?;
        self.written += begin.len() + end.len();
        self.dirty = true;
        Ok(())
    }

    fn insert_new(&mut self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        // One B-tree descent in the common case (the key is new); a
        // duplicate puts the old value back.
        check_sizes(key, Some(value))?;
        let old = self
            .table
            .insert(key, value)
            .map_err(convert)?
            .map(|v| v.value().to_vec());
        self.dirty = true;
        match old {
            None => {
                self.written += key.len() + value.len();
                Ok(true)
            }
            Some(old) => {
                self.table.insert(key, old.as_slice()).map_err(convert)?;
                Ok(false)
            }
        }
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        let cur = get_in(&self.table, key)?.map_or(0, |v| decode_i64(&v));
        self.put(key, &cur.wrapping_add(delta).to_le_bytes())
    }

    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        // Write first (one descent when the value grows, the common case for
        // "last seen" times), and put the old value back if it was larger.
        self.put_compare(key, value, |old, new| old > new)
    }

    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.put_compare(key, value, |old, new| old < new)
    }

    fn written_bytes(&self) -> usize {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, StoreExt};

    #[test]
    fn conformance_suite_passes_on_embedded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        conformance::run_all(&store);
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
    fn a_second_open_of_the_same_file_is_unavailable_until_the_first_closes() {
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
