//! The FoundationDB backend (cargo feature `fdb`, client API 7.3).
//!
//! The client network thread is started once per process. Each transaction
//! runs the caller's closure, commits, and on a retryable error (conflict,
//! `commit_unknown_result`, `transaction_too_old`, …) lets the client's
//! `on_error` back off and runs the closure again. After
//! `commit_unknown_result` the first attempt may have committed, so a
//! closure must be safe to run again on top of its own writes. The sink's
//! closures are: plain sets write the same bytes again, and every
//! non-idempotent write (an `ADD` to a counter) is made only after a
//! serializable read in the same transaction shows it is still missing (a
//! record's key absent, a counter below its recomputed total), so a rerun
//! that sees the first attempt's commit adds nothing. Reads here are never
//! snapshot reads: the read conflicts they add also make an attempt that
//! commits late conflict with its rerun, so exactly one of them counts.
//! Each attempt lives at most FoundationDB's 5 s (`transaction_too_old` is
//! retried); all attempts of one transaction together have a 20 s budget
//! (the client's `Timeout` option, which since API 610 is not reset by
//! `on_error`), under the sink's 30 s request deadline, so an unreachable
//! cluster surfaces as an error instead of a hang. An error that is not
//! retryable is returned as it is, whatever the attempt, so that callers
//! can act on it (`transaction_too_large`: split the write).
//!
//! The client's network thread must be stopped before the process exits:
//! `main` calls [`super::shutdown`] once every store handle is gone.
//!
//! The trait is synchronous: the client's futures are resolved by its network
//! thread and awaited here with `futures::executor::block_on`; async callers
//! run store calls in `spawn_blocking`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use foundationdb::options::{MutationType, StreamingMode, TransactionOption};
use foundationdb::{Database, FdbError, RangeOption, Transaction};
use futures::executor::block_on;

use super::{check_sizes, Kv, RangeReq, ReadTxn, Store, StoreError, StoreMetrics, Txn};

/// Attempts per transaction before giving up (each retry backs off).
const MAX_ATTEMPTS: u32 = 20;
/// Budget of one transaction, all its attempts together, in milliseconds.
const TIMEOUT_MS: i32 = 20_000;

static NETWORK: OnceLock<Result<(), String>> = OnceLock::new();
/// The running network thread's guard, dropped by [`stop_network`].
static NETWORK_GUARD: Mutex<Option<foundationdb::api::NetworkAutoStop>> = Mutex::new(None);
/// Set once the network thread was stopped: the client cannot start it
/// again in the same process.
static NETWORK_STOPPED: AtomicBool = AtomicBool::new(false);

/// Starts the FoundationDB client network thread once per process.
fn boot_network() -> Result<(), StoreError> {
    if NETWORK_STOPPED.load(Ordering::SeqCst) {
        // A database opened now would wait forever for a network that no
        // longer runs.
        return Err(StoreError::Config(
            "the FoundationDB client network was stopped and cannot be started again in this \
             process"
                .into(),
        ));
    }
    NETWORK
        .get_or_init(|| {
            let builder = foundationdb::api::FdbApiBuilder::default()
                .build()
                .map_err(|e| format!("selecting the FoundationDB API version: {e}"))?;
            // SAFETY: `boot` must be called at most once per process, and its
            // guard dropped before the process exits while no client uses the
            // network. The OnceLock guarantees the single call; the guard is
            // kept until `stop_network`, which `main` calls last.
            #[allow(unsafe_code)]
            let guard = unsafe { builder.boot() }
                .map_err(|e| format!("starting the FoundationDB network: {e}"))?;
            *NETWORK_GUARD
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(guard);
            Ok(())
        })
        .clone()
        .map_err(StoreError::Config)
}

/// Stops the client network thread, if it was started (at exit, after every
/// store handle is dropped).
pub fn stop_network() {
    NETWORK_STOPPED.store(true, Ordering::SeqCst);
    let guard = NETWORK_GUARD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(guard);
}

/// A FoundationDB cluster.
pub struct FdbStore {
    db: Database,
    cluster_file: String,
    metrics: StoreMetrics,
}

impl FdbStore {
    /// Connects using `cluster_file` (resolved by the caller, see
    /// [`super::resolve_cluster_file`]).
    pub fn open(cluster_file: &Path) -> Result<Self, StoreError> {
        boot_network()?;
        let path = cluster_file.to_string_lossy().into_owned();
        if !cluster_file.exists() {
            return Err(StoreError::Config(format!(
                "FoundationDB cluster file {path} does not exist (set --store fdb:<file> or FDB_CLUSTER_FILE)"
            )));
        }
        let db = Database::new(Some(&path)).map_err(StoreError::Fdb)?;
        Ok(FdbStore {
            db,
            cluster_file: path,
            metrics: StoreMetrics::default(),
        })
    }

    fn new_trx(&self) -> Result<Transaction, StoreError> {
        let trx = self.db.create_trx().map_err(StoreError::Fdb)?;
        trx.set_option(TransactionOption::Timeout(TIMEOUT_MS))
            .map_err(StoreError::Fdb)?;
        Ok(trx)
    }

    /// Whether an error of attempt number `attempts` is to be retried: not
    /// when it is not retryable (it is returned as it is), nor after the
    /// last attempt.
    fn may_retry(err: FdbError, attempts: u32) -> Result<(), StoreError> {
        if !err.is_retryable() {
            return Err(StoreError::Fdb(err));
        }
        if attempts >= MAX_ATTEMPTS {
            return Err(StoreError::RetriesExhausted {
                attempts,
                last: Box::new(StoreError::Fdb(err)),
            });
        }
        Ok(())
    }

    /// Counts and logs a retry once the client's backoff is over.
    fn retried(&self, err: FdbError, attempts: u32) {
        self.metrics.retries.inc();
        tracing::debug!(code = err.code(), error = %err, attempts, "retrying FoundationDB transaction");
    }

    /// Hands an error of an operation of attempt number `attempts` to the
    /// client's backoff; returns the reset transaction, or the error.
    fn retry(
        &self,
        trx: Transaction,
        err: FdbError,
        attempts: u32,
    ) -> Result<Transaction, StoreError> {
        Self::may_retry(err, attempts)?;
        let trx = block_on(trx.on_error(err)).map_err(StoreError::Fdb)?;
        self.retried(err, attempts);
        Ok(trx)
    }
}

impl Store for FdbStore {
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut trx = self.new_trx()?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let res = f(&mut FdbTxn {
                trx: &trx,
                written: 0,
            });
            match res {
                Ok(()) => match block_on(trx.commit()) {
                    Ok(_) => return Ok(()),
                    Err(commit_err) => {
                        let err = *commit_err;
                        Self::may_retry(err, attempts)?;
                        // `on_error` of the commit error keeps the
                        // transaction's options (its timeout) and backoff
                        trx = block_on(commit_err.on_error()).map_err(StoreError::Fdb)?;
                        self.retried(err, attempts);
                    }
                },
                Err(StoreError::Fdb(err)) => trx = self.retry(trx, err, attempts)?,
                Err(other) => return Err(other),
            }
        }
    }

    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut trx = self.new_trx()?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match f(&mut FdbTxn {
                trx: &trx,
                written: 0,
            }) {
                Ok(()) => return Ok(()),
                Err(StoreError::Fdb(err)) => trx = self.retry(trx, err, attempts)?,
                Err(other) => return Err(other),
            }
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let trx = self.db.create_trx().map_err(StoreError::Fdb)?;
        trx.set_option(TransactionOption::Timeout(2_000))
            .map_err(StoreError::Fdb)?;
        block_on(trx.get_read_version())
            .map(|_| ())
            .map_err(StoreError::Fdb)
    }

    fn describe(&self) -> String {
        format!("fdb:{}", self.cluster_file)
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
}

struct FdbTxn<'t> {
    trx: &'t Transaction,
    written: usize,
}

impl ReadTxn for FdbTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(block_on(self.trx.get(key, false))
            .map_err(StoreError::Fdb)?
            .map(|v| v.to_vec()))
    }

    fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
        // All reads in flight at once: one round trip instead of one per key.
        let reads = keys.iter().map(|k| self.trx.get(k, false));
        Ok(block_on(futures::future::try_join_all(reads))
            .map_err(StoreError::Fdb)?
            .iter()
            .map(Option::is_some)
            .collect())
    }

    fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        // All reads in flight at once, as in `exist_many`.
        let reads = keys.iter().map(|k| self.trx.get(k, false));
        Ok(block_on(futures::future::try_join_all(reads))
            .map_err(StoreError::Fdb)?
            .into_iter()
            .map(|v| v.map(|v| v.to_vec()))
            .collect())
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.range(begin, end, limit, reverse, false)
    }

    fn get_range_snapshot(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.range(begin, end, limit, reverse, true)
    }

    fn get_ranges(&mut self, ranges: &[RangeReq<'_>]) -> Result<Vec<Vec<Kv>>, StoreError> {
        self.ranges(ranges)
    }
}

impl FdbTxn<'_> {
    /// A range read; `snapshot` reads add no read conflict range.
    fn range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        let req = RangeReq {
            begin,
            end,
            limit,
            reverse,
            snapshot,
        };
        Ok(self.ranges(&[req])?.pop().unwrap_or_default())
    }

    /// Range reads in rounds: every range's first batch in flight at once,
    /// then the next batch of each range the client did not return whole
    /// (its limit, if any, lowered by what came back), until every range is
    /// read. Ranges of one batch cost one round trip together.
    fn ranges(&mut self, reqs: &[RangeReq<'_>]) -> Result<Vec<Vec<Kv>>, StoreError> {
        let mut out: Vec<Vec<Kv>> = vec![Vec::new(); reqs.len()];
        let mut pending: Vec<(usize, RangeOption<'_>, usize)> = reqs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.begin < r.end)
            .map(|(i, r)| {
                let opt = RangeOption {
                    limit: (r.limit > 0).then_some(r.limit),
                    reverse: r.reverse,
                    mode: StreamingMode::WantAll,
                    ..RangeOption::from((r.begin, r.end))
                };
                (i, opt, 1)
            })
            .collect();
        while !pending.is_empty() {
            let reads = pending
                .iter()
                .map(|(i, opt, iteration)| self.trx.get_range(opt, *iteration, reqs[*i].snapshot));
            let batches =
                block_on(futures::future::try_join_all(reads)).map_err(StoreError::Fdb)?;
            let mut next = Vec::new();
            for ((i, opt, iteration), kvs) in pending.into_iter().zip(batches) {
                out[i].extend(
                    kvs.iter()
                        .map(|kv| (kv.key().to_vec(), kv.value().to_vec())),
                );
                if let Some(more) = opt.next_range(&kvs) {
                    next.push((i, more, iteration + 1));
                }
            }
            pending = next;
        }
        for (kvs, r) in out.iter_mut().zip(reqs) {
            if r.limit > 0 {
                kvs.truncate(r.limit);
            }
        }
        Ok(out)
    }
}

impl Txn for FdbTxn<'_> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_sizes(key, Some(value))?;
        self.trx.set(key, value);
        self.written += key.len() + value.len();
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        // No stored key is longer than the limit: clearing one is a no-op,
        // as in the client and the embedded store
        if key.len() > super::limits::MAX_KEY_BYTES {
            return Ok(());
        }
        self.trx.clear(key);
        self.written += key.len();
        Ok(())
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        if begin >= end {
            return Ok(());
        }
        self.trx.clear_range(begin, end);
        self.written += begin.len() + end.len();
        Ok(())
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        check_sizes(key, None)?;
        self.trx
            .atomic_op(key, &delta.to_le_bytes(), MutationType::Add);
        self.written += key.len() + 8;
        Ok(())
    }

    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        check_sizes(key, None)?;
        self.trx
            .atomic_op(key, &value.to_le_bytes(), MutationType::Max);
        self.written += key.len() + 8;
        Ok(())
    }

    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        check_sizes(key, None)?;
        self.trx
            .atomic_op(key, &value.to_le_bytes(), MutationType::Min);
        self.written += key.len() + 8;
        Ok(())
    }

    fn written_bytes(&self) -> usize {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs only where a cluster is reachable: `FDB_CLUSTER_FILE` must be set.
    #[test]
    fn conformance_suite_passes_on_foundationdb() {
        let Some(path) = std::env::var_os("FDB_CLUSTER_FILE") else {
            eprintln!("FDB_CLUSTER_FILE not set: skipping the FoundationDB conformance run");
            return;
        };
        // The network thread must stop before the test process exits, even
        // when the suite fails
        struct StopNetwork;
        impl Drop for StopNetwork {
            fn drop(&mut self) {
                stop_network();
            }
        }
        let _stop = StopNetwork;
        {
            let store = FdbStore::open(Path::new(&path)).expect("connect to FoundationDB");
            crate::store::conformance::run_all(&store);
        }
        assert!(
            FdbStore::open(Path::new(&path)).is_ok(),
            "the network is still running"
        );
        stop_network();
        assert!(
            matches!(FdbStore::open(Path::new(&path)), Err(StoreError::Config(_))),
            "a stopped network is not started again"
        );
    }
}
