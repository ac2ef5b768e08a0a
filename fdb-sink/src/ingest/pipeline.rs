//! Validation and durable writes, shared by the HTTP endpoint, `serve
//! --stdin` and `import`. Blocking: async callers use `spawn_blocking`.

use std::sync::Arc;
use std::time::Instant;

use crate::audit::{self, WriteOptions, WriteSummary};
use crate::keys::Keys;
use crate::metrics::{outcome, Metrics};
use crate::record::{validate_line, Item};
use crate::store::{Store, StoreError};

/// Turns lines into committed audit records and dead letters.
pub struct Ingestor {
    store: Arc<dyn Store>,
    keys: Keys,
    opts: WriteOptions,
    metrics: Metrics,
}

/// What one batch did; the body of a 200 answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchSummary {
    /// Lines in the batch.
    pub received: u64,
    /// New audit records stored.
    pub written: u64,
    /// Records that were already stored (redelivery).
    pub duplicates: u64,
    /// Lines stored in dead-letter with a reason.
    pub dead_lettered: u64,
    /// Transactions the batch was committed in.
    pub transactions: u64,
}

impl BatchSummary {
    pub fn add(&mut self, o: &BatchSummary) {
        self.received += o.received;
        self.written += o.written;
        self.duplicates += o.duplicates;
        self.dead_lettered += o.dead_lettered;
        self.transactions += o.transactions;
    }
}

fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

impl Ingestor {
    pub fn new(store: Arc<dyn Store>, keys: Keys, opts: WriteOptions, metrics: Metrics) -> Self {
        Ingestor {
            store,
            keys,
            opts,
            metrics,
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

    /// Validates and commits `lines`. Returns once every line is durably
    /// stored (as a record or a dead letter). On a store error nothing is
    /// acknowledged; part of the batch may be stored, which is harmless
    /// since a retry stores each event once.
    pub fn ingest(&self, lines: &[&[u8]]) -> Result<BatchSummary, StoreError> {
        let received_ns = now_ns();
        let items: Vec<Item> = lines
            .iter()
            .map(|l| validate_line(&self.keys, l, received_ns))
            .collect();
        self.metrics.events_received.inc_by(items.len() as u64);
        let started = Instant::now();
        match audit::write_items(self.store.as_ref(), &self.keys, &items, self.opts) {
            Ok(s) => {
                self.metrics
                    .commit_latency
                    .observe(started.elapsed().as_secs_f64());
                self.record_success(&items, &s);
                Ok(BatchSummary {
                    received: items.len() as u64,
                    written: s.written,
                    duplicates: s.duplicates,
                    dead_lettered: s.dead_lettered,
                    transactions: s.transactions,
                })
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                self.metrics.batch(outcome::STORE_ERROR);
                if e.unavailable() {
                    self.metrics.store_up.set(0);
                }
                Err(e)
            }
        }
    }

    fn record_success(&self, items: &[Item], s: &WriteSummary) {
        self.metrics.events_written.inc_by(s.written);
        self.metrics.events_duplicate.inc_by(s.duplicates);
        for item in items {
            if let Item::DeadLetter(d) = item {
                self.metrics.dead_lettered(&d.reason);
                tracing::debug!(reason = %d.reason, detail = %d.detail, "line dead-lettered");
            }
        }
        self.metrics.batch(outcome::COMMITTED);
        self.metrics.store_up.set(1);
    }
}
