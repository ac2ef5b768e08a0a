//! The storage trait: an ordered, transactional key-value store with
//! FoundationDB's semantics, and its two backends.
//!
//! The trait is synchronous on purpose: the embedded backend is a blocking
//! LSM tree with an fsync per commit, and the FoundationDB client resolves its
//! futures on its own network thread. Async callers wrap calls in
//! `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use fdb_sink::store::{self, StoreExt, StoreSpec};
//! let store = store::open(&"embedded:./data".parse::<StoreSpec>()?)?;
//! let n = store.transact(|txn| {
//!     txn.atomic_add(b"counter", 1)?;
//!     txn.get(b"counter")
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Semantics both backends guarantee (checked by [`conformance`]):
//! - keys are compared as bytes; ranges are half-open `[begin, end)`;
//! - a transaction sees its own writes (read-your-writes), including atomic ops;
//! - `atomic_add` adds a little-endian i64 (FDB `ADD`), `atomic_max`/`atomic_min`
//!   compare little-endian u64 (FDB `MAX`/`MIN`); on a missing key the operand
//!   is stored;
//! - a transaction commits all of its writes or none; once `transact` returns
//!   `Ok`, the writes are durable;
//! - the closure may run more than once (retries), so it must not have side
//!   effects outside the transaction.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

pub mod conformance;
pub mod embedded;
#[cfg(feature = "fdb")]
pub mod fdb;

/// A key and its value.
pub type Kv = (Vec<u8>, Vec<u8>);

/// One range of a [`ReadTxn::get_ranges`] call: the arguments of one
/// [`ReadTxn::get_range`], or with `snapshot` of one
/// [`ReadTxn::get_range_snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeReq<'a> {
    pub begin: &'a [u8],
    pub end: &'a [u8],
    /// At most this many pairs (`0` = no limit).
    pub limit: usize,
    pub reverse: bool,
    /// Adds no read conflict (see [`ReadTxn::get_range_snapshot`]).
    pub snapshot: bool,
}

impl<'a> RangeReq<'a> {
    /// The range `[begin, end)`, read as [`ReadTxn::get_range`] reads it.
    pub fn new(begin: &'a [u8], end: &'a [u8], limit: usize, reverse: bool) -> Self {
        RangeReq {
            begin,
            end,
            limit,
            reverse,
            snapshot: false,
        }
    }
}

/// Reads inside a transaction.
pub trait ReadTxn {
    /// The value of `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Key-value pairs with `begin <= key < end`, ascending (or descending when
    /// `reverse`), at most `limit` of them (`0` = no limit).
    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError>;

    /// As [`get_range`](Self::get_range), but adds no read conflict: a
    /// concurrent commit that writes into the range does not make this
    /// transaction retry. For reads whose answer may be stale without harm.
    /// The embedded store runs one write transaction at a time, so there it
    /// is a plain read.
    fn get_range_snapshot(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.get_range(begin, end, limit, reverse)
    }

    /// Whether each of `keys` has a value, in order: the same as one `get`
    /// per key (and the same read conflicts), but a backend with network
    /// round trips issues the reads together.
    fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
        keys.iter()
            .map(|k| self.get(k).map(|v| v.is_some()))
            .collect()
    }

    /// The value of each of `keys`, in order (a key may repeat): the same as
    /// one `get` per key (and the same read conflicts), but a backend with
    /// network round trips issues the reads together.
    fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// The pairs of each of `ranges`, in order (a range may repeat): the
    /// same as one [`get_range`](Self::get_range) (or
    /// [`get_range_snapshot`](Self::get_range_snapshot)) per range, and the
    /// same read conflicts, but a backend with network round trips issues
    /// the reads together.
    fn get_ranges(&mut self, ranges: &[RangeReq<'_>]) -> Result<Vec<Vec<Kv>>, StoreError> {
        ranges
            .iter()
            .map(|r| {
                if r.snapshot {
                    self.get_range_snapshot(r.begin, r.end, r.limit, r.reverse)
                } else {
                    self.get_range(r.begin, r.end, r.limit, r.reverse)
                }
            })
            .collect()
    }
}

/// Reads and writes inside a transaction.
pub trait Txn: ReadTxn {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Removes every key with `begin <= key < end`.
    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError>;
    /// FDB `ADD`: the value is a little-endian i64 (wrapping).
    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError>;
    /// FDB `MAX`: the value becomes the larger little-endian u64.
    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError>;
    /// FDB `MIN`: the value becomes the smaller little-endian u64.
    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError>;
    /// Bytes of keys and values written so far (to keep transactions small).
    fn written_bytes(&self) -> usize;

    /// True when no other transaction runs while this one does (one writer
    /// at a time, as in the embedded store), so that a value read early in
    /// the transaction stays a valid proof about the committed data without
    /// a conflict check. False on FoundationDB, where concurrent
    /// transactions are serialised by the conflicts of the keys they read.
    fn exclusive(&self) -> bool {
        false
    }

    /// Sets `key` only if it has no value; returns whether it was set. Reads
    /// the key (a read conflict on FoundationDB), so concurrent inserts of
    /// the same key serialise and exactly one returns `true`.
    fn insert_new(&mut self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        if self.get(key)?.is_some() {
            return Ok(false);
        }
        self.set(key, value)?;
        Ok(true)
    }
}

/// Counters every backend keeps; registered in the sink's metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// Transactions retried after a retryable error.
    pub retries: Counter,
}

/// An ordered transactional key-value store.
///
/// Object-safe; use the generic helpers of [`StoreExt`].
pub trait Store: Send + Sync {
    /// Runs `f` in a read-write transaction and commits it, retrying retryable
    /// errors. Returns once the commit is durable.
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs `f` in a read-only transaction (a consistent snapshot).
    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Cheap liveness probe: `Ok` when a transaction could run now. After a
    /// failed commit the embedded store also tries a durable write that
    /// leaves nothing readable (at most every few seconds), so that it
    /// reports itself up again without waiting for a client's write.
    fn check(&self) -> Result<(), StoreError>;

    /// Human-readable description, e.g. `embedded:/var/lib/fdb-sink`.
    fn describe(&self) -> String;

    fn metrics(&self) -> &StoreMetrics;

    /// True when the store counts a transaction's size as FoundationDB
    /// does (`crate::audit::fdb_size`): the keys it reads (read conflict
    /// ranges) add to it, and so do the write conflict range and a fixed
    /// record of each mutation, toward its 10 MB limit; writers budget all
    /// of them. False on the embedded store, where a transaction costs the
    /// bytes of the keys and values it writes, and reads cost nothing.
    fn reads_add_to_txn_size(&self) -> bool {
        true
    }
}

/// Typed helpers over [`Store`].
pub trait StoreExt: Store {
    /// Runs `f` in a read-write transaction, commits, and returns its result.
    ///
    /// To abort with a domain error (e.g. a conflicting claim), return
    /// `Ok(Err(e))` before writing anything: the empty transaction commits and
    /// the caller gets `e`.
    fn transact<T>(
        &self,
        mut f: impl FnMut(&mut dyn Txn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.run_write(&mut |txn| {
            out = Some(f(txn)?);
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Internal("transaction closure did not run".into()))
    }

    /// Runs `f` in a read-only transaction and returns its result.
    fn read<T>(
        &self,
        mut f: impl FnMut(&mut dyn ReadTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.run_read(&mut |txn| {
            out = Some(f(txn)?);
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Internal("transaction closure did not run".into()))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or opened right now (locked by another
    /// process, I/O error, cluster down). Ingest answers 503.
    #[error("store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An error of the FoundationDB client, kept as is so that its
    /// retryability is preserved.
    #[cfg(feature = "fdb")]
    #[error("FoundationDB: {0}")]
    Fdb(#[source] foundationdb::FdbError),
    /// A transaction kept failing with retryable errors.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<StoreError>,
    },
    /// A key or value exceeds the backend's limits.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A key in FoundationDB's system key space (its first byte is `\xff`),
    /// which applications do not write: both backends refuse it, so that
    /// data accepted by one is accepted by the other.
    #[error(
        "key {key} is in FoundationDB's system key space (it starts with \\xff), which \
         application data cannot use"
    )]
    SystemKey { key: String },
    /// A transaction did more than one transaction may (FoundationDB: it
    /// grew older than 5 s, ran out of its time budget, or grew past 10 MB):
    /// the same work may fit in smaller transactions. Backends report their
    /// own error where they have one (FoundationDB keeps its error code);
    /// this one is for stores that wrap another (and emulate such limits).
    #[error("transaction over the store's limits: {0}")]
    TxnLimit(String),
    /// A stored value or key could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The store's files are damaged and it does not open: an operator must
    /// repair or restore it (the message says how); retrying cannot help, but
    /// ingest answers 503 meanwhile so that clients keep what they hold.
    #[error("{0}")]
    Damaged(String),
    /// Bad store configuration (unparsable STORE, missing feature, …).
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// True when running the same transaction again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            #[cfg(feature = "fdb")]
            StoreError::Fdb(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// True when the failure is a transient fault of the store (not of the
    /// data): callers answer 503 and retry later.
    pub fn unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. }
            | StoreError::RetriesExhausted { .. }
            | StoreError::Damaged(_) => true,
            // FoundationDB's 1xxx errors are the cluster's (conflicts, a
            // recovery, timeouts, throttling); 2xxx are the client's misuse
            // (transaction, key or value too large, invalid ranges), which a
            // retry cannot fix.
            #[cfg(feature = "fdb")]
            StoreError::Fdb(e) => e.is_retryable() || e.is_maybe_committed() || e.code() < 2000,
            StoreError::TooLarge { .. }
            | StoreError::SystemKey { .. }
            | StoreError::TxnLimit(_)
            | StoreError::Corrupt(_)
            | StoreError::Config(_)
            | StoreError::Internal(_) => false,
        }
    }

    /// True when the same work may succeed in smaller transactions: the
    /// transaction grew too old (FoundationDB `transaction_too_old` 1007,
    /// after its 5 s), ran out of time (`timed_out` 1004,
    /// `transaction_timed_out` 1031), grew too large
    /// (`transaction_too_large` 2101), or gave up after its retries
    /// ([`StoreError::RetriesExhausted`]) on one of those or on conflicts
    /// (`not_committed` 1020).
    ///
    /// Conflicts count: a transaction that reads more keys, for longer,
    /// meets more concurrent writes to them (retention reads the session
    /// counters that every ingest into the session adds to), so a smaller
    /// one is likelier to commit. Everything else is not about size: a
    /// locked database (`database_locked` 1038), throttling
    /// (`tag_throttled` 1213, `proxy_memory_limit_exceeded` 1042,
    /// `batch_transaction_throttled` 1051), a recovery or an unreachable
    /// cluster fail smaller transactions just the same.
    pub fn smaller_may_fit(&self) -> bool {
        match self {
            StoreError::TxnLimit(_) => true,
            StoreError::RetriesExhausted { last, .. } => last.smaller_may_fit() || last.conflict(),
            #[cfg(feature = "fdb")]
            StoreError::Fdb(e) => matches!(e.code(), 1004 | 1007 | 1031 | 2101),
            _ => false,
        }
    }

    /// True when the store itself is down (the sink is then not ready and
    /// refuses batches until a write works again), not just this
    /// transaction: a transaction that ran too long, conflicted or grew too
    /// large says nothing of the next one.
    pub fn store_down(&self) -> bool {
        self.unavailable() && !self.smaller_may_fit() && !self.conflict()
    }

    /// True for FoundationDB's `not_committed` (1020): the transaction
    /// conflicted with a concurrent one.
    pub fn conflict(&self) -> bool {
        match self {
            #[cfg(feature = "fdb")]
            StoreError::Fdb(e) => e.code() == 1020,
            _ => false,
        }
    }

    /// True for FoundationDB's `transaction_too_large`: the same writes fit
    /// when split into smaller transactions.
    pub fn transaction_too_large(&self) -> bool {
        match self {
            #[cfg(feature = "fdb")]
            StoreError::Fdb(e) => e.code() == 2101,
            _ => false,
        }
    }

    pub fn unavailable_msg(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, for another batch of the transaction that failed
    /// (errors cannot be cloned): as unavailable (or damaged) as this one,
    /// with this one's text and its chain of causes.
    pub fn copy_for(&self) -> StoreError {
        match self {
            // A failure of this transaction, not of the store: the copy
            // says so too (see [`StoreError::store_down`]).
            StoreError::RetriesExhausted { attempts, last } if !self.store_down() => {
                StoreError::RetriesExhausted {
                    attempts: *attempts,
                    last: Box::new(StoreError::TxnLimit(ErrorChain(last.as_ref()).to_string())),
                }
            }
            other if other.unavailable() && !other.store_down() => StoreError::RetriesExhausted {
                attempts: 1,
                last: Box::new(StoreError::TxnLimit(ErrorChain(other).to_string())),
            },
            StoreError::Unavailable {
                message,
                source: Some(source),
            } => StoreError::unavailable_msg(format!("{message}: {}", ErrorChain(source.as_ref()))),
            StoreError::Unavailable { message, .. } => StoreError::unavailable_msg(message.clone()),
            StoreError::Damaged(m) => StoreError::Damaged(m.clone()),
            other if other.unavailable() => {
                StoreError::unavailable_msg(ErrorChain(other).to_string())
            }
            other => StoreError::Internal(ErrorChain(other).to_string()),
        }
    }
}

/// Shows an error followed by its chain of causes (`error: cause: cause`),
/// a cause whose text the previous one already holds left out: what the
/// sink's log says of a failure.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}

/// Limits FoundationDB imposes; the embedded store enforces the same ones so
/// that data valid on one backend is valid on the other.
pub mod limits {
    /// Largest key.
    pub const MAX_KEY_BYTES: usize = 10_000;
    /// Largest value.
    pub const MAX_VALUE_BYTES: usize = 100_000;
    /// Hard transaction size limit.
    pub const MAX_TXN_BYTES: usize = 10_000_000;
    /// The size the sink aims for per transaction.
    pub const TARGET_TXN_BYTES: usize = 1_000_000;
}

/// The first byte of FoundationDB's system keys (`\xff...`).
pub const SYSTEM_KEY_PREFIX: u8 = 0xff;

/// Checks a key and value against [`limits`], and that the key is not a
/// system key ([`SYSTEM_KEY_PREFIX`]). Every backend runs it on every key it
/// sets or updates.
pub fn check_sizes(key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
    if key.first() == Some(&SYSTEM_KEY_PREFIX) {
        let shown: String = key
            .iter()
            .take(64)
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect();
        return Err(StoreError::SystemKey { key: shown });
    }
    if key.len() > limits::MAX_KEY_BYTES {
        return Err(StoreError::TooLarge {
            what: "key",
            size: key.len(),
            limit: limits::MAX_KEY_BYTES,
        });
    }
    if let Some(v) = value {
        if v.len() > limits::MAX_VALUE_BYTES {
            return Err(StoreError::TooLarge {
                what: "value",
                size: v.len(),
                limit: limits::MAX_VALUE_BYTES,
            });
        }
    }
    Ok(())
}

/// Where the data lives: the `--store` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `embedded:<dir>`: a fjall database in `<dir>/audit.fjall`.
    Embedded { dir: PathBuf },
    /// `fdb[:<cluster-file>]`: a FoundationDB cluster.
    Fdb { cluster_file: Option<PathBuf> },
}

/// The default `--store`.
pub const DEFAULT_STORE: &str = "embedded:./data";

impl FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.is_empty() {
                return Err("`embedded:` needs a directory, e.g. `embedded:./data`".into());
            }
            return Ok(StoreSpec::Embedded { dir: dir.into() });
        }
        if s == "fdb" {
            return Ok(StoreSpec::Fdb { cluster_file: None });
        }
        if let Some(file) = s.strip_prefix("fdb:") {
            if file.is_empty() {
                return Err("`fdb:` needs a cluster file path, or use plain `fdb`".into());
            }
            return Ok(StoreSpec::Fdb {
                cluster_file: Some(file.into()),
            });
        }
        Err(format!(
            "unknown store {s:?}: expected `embedded:<dir>` or `fdb[:<cluster-file>]`"
        ))
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Embedded { dir } => write!(f, "embedded:{}", dir.display()),
            StoreSpec::Fdb { cluster_file: None } => f.write_str("fdb"),
            StoreSpec::Fdb {
                cluster_file: Some(p),
            } => write!(f, "fdb:{}", p.display()),
        }
    }
}

/// The cluster file FoundationDB uses: the flag, else `$FDB_CLUSTER_FILE`,
/// else `/etc/foundationdb/fdb.cluster`. `env` looks up a variable (injectable
/// for tests).
pub fn resolve_cluster_file(
    flag: Option<&std::path::Path>,
    env: impl Fn(&str) -> Option<String>,
) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match env("FDB_CLUSTER_FILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/etc/foundationdb/fdb.cluster"),
    }
}

/// Releases process-wide store resources at exit: stops the FoundationDB
/// client's network thread when it was started (nothing to do for the
/// embedded store). Call it once every store handle is dropped.
pub fn shutdown() {
    #[cfg(feature = "fdb")]
    fdb::stop_network();
}

/// Opens the store named by `spec`.
///
/// The embedded store opens even when its file is locked or unreadable: it
/// reports itself unavailable and retries on each use, so that a server can
/// start, answer 503 and recover on its own. Use [`Store::check`] to require
/// it up front.
pub fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>, StoreError> {
    match spec {
        StoreSpec::Embedded { dir } => Ok(Arc::new(embedded::EmbeddedStore::open(dir)?)),
        #[cfg(feature = "fdb")]
        StoreSpec::Fdb { cluster_file } => {
            let path = resolve_cluster_file(cluster_file.as_deref(), |k| std::env::var(k).ok());
            Ok(Arc::new(fdb::FdbStore::open(&path)?))
        }
        #[cfg(not(feature = "fdb"))]
        StoreSpec::Fdb { .. } => Err(StoreError::Config(
            "this fdb-sink was built without FoundationDB support; rebuild with `--features fdb` \
             or use `--store embedded:<dir>`"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_copy_for_another_batch_keeps_whether_the_store_is_down() {
        let own = StoreError::RetriesExhausted {
            attempts: 20,
            last: Box::new(StoreError::TxnLimit("transaction too old".into())),
        };
        assert!(!own.store_down() && own.unavailable());
        let c = own.copy_for();
        assert!(!c.store_down() && c.unavailable(), "{c:?}");
        assert!(c.to_string().contains("transaction too old"), "{c}");
        let down = StoreError::unavailable_msg("no space left on device");
        assert!(down.store_down() && down.copy_for().store_down());
    }
    use super::*;

    #[test]
    fn store_spec_parses_the_documented_forms() {
        assert_eq!(
            "embedded:./data".parse::<StoreSpec>(),
            Ok(StoreSpec::Embedded {
                dir: "./data".into()
            })
        );
        assert_eq!(
            "fdb".parse::<StoreSpec>(),
            Ok(StoreSpec::Fdb { cluster_file: None })
        );
        assert_eq!(
            "fdb:/etc/x.cluster".parse::<StoreSpec>(),
            Ok(StoreSpec::Fdb {
                cluster_file: Some("/etc/x.cluster".into())
            })
        );
        for bad in ["", "embedded:", "fdb:", "redis:x", "./data"] {
            assert!(bad.parse::<StoreSpec>().is_err(), "{bad:?}");
        }
        assert_eq!(
            DEFAULT_STORE.parse::<StoreSpec>().map(|s| s.to_string()),
            Ok(DEFAULT_STORE.to_string())
        );
    }

    #[test]
    fn cluster_file_precedence_is_flag_then_env_then_default() {
        let env = |k: &str| (k == "FDB_CLUSTER_FILE").then(|| "/env/fdb.cluster".to_string());
        assert_eq!(
            resolve_cluster_file(Some("/flag".as_ref()), env),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_cluster_file(None, env),
            PathBuf::from("/env/fdb.cluster")
        );
        assert_eq!(
            resolve_cluster_file(None, |_| None),
            PathBuf::from("/etc/foundationdb/fdb.cluster")
        );
    }
}
