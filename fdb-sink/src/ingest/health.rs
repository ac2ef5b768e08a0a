//! Whether the store takes writes now: what `/readyz`, `fdb_sink_store_up`
//! and ingest's early 503 follow.
//!
//! The state changes at once with the outcome of every commit (a failed
//! one makes the sink not ready before its client gets the 503), and with
//! the readiness loop's checks and probe writes ([`probe_write`]), which
//! keep running while the store is down so that the sink recovers by
//! itself, without client traffic.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use crate::keys::Keys;
use crate::store::{Store, StoreError};

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The store's last known state, shared by ingest, `/readyz` and the
/// readiness loop.
#[derive(Debug)]
pub struct StoreHealth {
    state: AtomicU8,
    /// When a write (a commit or a probe) last succeeded.
    last_write_ok: Mutex<Option<Instant>>,
    store_up: Gauge,
    /// Wakes the readiness loop when a write failed, so that it probes at
    /// its pace for a store that is down.
    went_down: tokio::sync::Notify,
    /// A transaction failed for its own sake (too old, timed out, a
    /// conflict): the readiness loop makes a probe write at its next round.
    probe_wanted: AtomicBool,
}

impl StoreHealth {
    /// Unknown until the first check or commit; `store_up` is
    /// `fdb_sink_store_up`.
    pub fn new(store_up: Gauge) -> Self {
        StoreHealth {
            state: AtomicU8::new(UNKNOWN),
            last_write_ok: Mutex::new(None),
            store_up,
            went_down: tokio::sync::Notify::new(),
            probe_wanted: AtomicBool::new(false),
        }
    }

    /// The store took the last write, or passed the last check and probe:
    /// `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// The store is known to be down (the last commit, check or probe
    /// failed): ingest answers 503 without trying it.
    pub fn is_down(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DOWN
    }

    /// A write committed.
    pub fn write_succeeded(&self) {
        if let Ok(mut t) = self.last_write_ok.lock() {
            *t = Some(Instant::now());
        }
        self.set(true);
    }

    /// A write failed because of the store (not of the data).
    pub fn write_failed(&self) {
        self.set(false);
        self.went_down.notify_one();
    }

    /// A write failed for its own sake, not the store's: the store stays
    /// ready, but the readiness loop probes it at once (a cluster whose
    /// commits stall shows first as transactions that time out).
    pub fn suspect(&self) {
        self.probe_wanted.store(true, Ordering::Relaxed);
        self.went_down.notify_one();
    }

    /// Whether a probe was asked for since the last call.
    pub fn take_probe_wanted(&self) -> bool {
        self.probe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Resolves after a write failed (at once for a failure since the last
    /// call).
    pub async fn write_failure(&self) {
        self.went_down.notified().await;
    }

    /// The outcome of a check (without a write). A check that passes makes
    /// a store of unknown state ready, never one known to be down: a
    /// FoundationDB cluster can give read versions while its commits fail
    /// (throttling), and a commit may have failed while
    /// the check ran. Only a write brings a store that is down back.
    pub fn checked(&self, up: bool) {
        if !up {
            self.set(false);
        } else if self
            .state
            .compare_exchange(UNKNOWN, UP, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.store_up.set(1);
        }
    }

    /// True when no write succeeded within `within`.
    pub fn no_write_within(&self, within: Duration) -> bool {
        self.last_write_ok
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() >= within))
            .unwrap_or(true)
    }

    fn set(&self, up: bool) {
        self.state
            .store(if up { UP } else { DOWN }, Ordering::Relaxed);
        self.store_up.set(i64::from(up));
    }
}

/// Keys of the probe write: `(root, "readiness_probe", i)`, each padded to
/// [`PROBE_KEY_BYTES`]. They are only ever cleared, never set, so that no
/// read (queries, export, retention) can see them.
fn probe_keys(keys: &Keys, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut key = keys.root().pack(&(PROBE_SUBSPACE, i as i64));
            key.resize(PROBE_KEY_BYTES, b'.');
            key
        })
        .collect()
}

/// The name under the root subspace that probe writes clear.
pub const PROBE_SUBSPACE: &str = "readiness_probe";

/// Size of one probe key, within FoundationDB's 10 kB key limit.
const PROBE_KEY_BYTES: usize = 8 << 10;

/// Keys of a full probe on the embedded store: about as large in its
/// journal as one transaction of records (1 MB), so that a store with room
/// for the probe has room for a batch, not just for a few bytes.
const FULL_PROBE_KEYS: usize = 128;

/// Keys of a full probe on FoundationDB, which counts a clear's key twice
/// (the cleared range) and again in its write conflict range: about 1 MB
/// of transaction size, like one transaction of records.
const FULL_PROBE_KEYS_FDB: usize = 32;

/// How much a probe write writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// One key: while ready, to find a store that stopped taking writes
    /// while no batch came.
    Light,
    /// About 1 MB: at start and while not ready, so that a store on a full
    /// disk is not ready before its first batch fails.
    Full,
}

/// A durable write that leaves nothing readable: a commit that clears keys
/// nothing sets. It goes through the store's ordinary write path (fsync on
/// the embedded store, a commit on FoundationDB), so it fails where a batch
/// would.
pub fn probe_write(store: &dyn Store, keys: &Keys, probe: Probe) -> Result<(), StoreError> {
    let n = match probe {
        Probe::Light => 1,
        Probe::Full if store.reads_add_to_txn_size() => FULL_PROBE_KEYS_FDB,
        Probe::Full => FULL_PROBE_KEYS,
    };
    let keys = probe_keys(keys, n);
    store.run_write(&mut |t| keys.iter().try_for_each(|k| t.clear(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoreExt;

    #[test]
    fn a_passing_check_does_not_bring_back_a_store_known_down() {
        let h = StoreHealth::new(Gauge::default());
        assert!(!h.is_ready() && !h.is_down(), "unknown at first");
        h.checked(true);
        assert!(h.is_ready());
        h.write_failed();
        assert!(h.is_down());
        h.checked(true);
        assert!(h.is_down(), "a check is not a write");
        assert_eq!(h.store_up.get(), 0);
        h.write_succeeded();
        assert!(h.is_ready());
        assert_eq!(h.store_up.get(), 1);
        h.checked(false);
        assert!(h.is_down());
    }

    #[test]
    fn probe_keys_lie_under_their_own_name_in_the_root_subspace() {
        let keys = Keys::default();
        let probe = keys.root().subspace(&(PROBE_SUBSPACE,));
        for k in probe_keys(&keys, 3) {
            assert!(k.starts_with(probe.bytes()), "{k:?}");
            assert_eq!(k.len(), PROBE_KEY_BYTES);
        }
    }

    #[test]
    fn a_probe_write_leaves_nothing_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        probe_write(&store, &keys, Probe::Full).expect("probe");
        probe_write(&store, &keys, Probe::Light).expect("probe");
        let all = keys.all();
        let rows = store
            .read(|t| t.get_range(&all.begin, &all.end, 0, false))
            .expect("read");
        assert!(rows.is_empty(), "{rows:?}");
    }
}
