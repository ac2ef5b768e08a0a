//! A transaction wrapper that counts read calls: each call is a round trip on
//! FoundationDB (the batched reads, `get_many`, `exist_many` and
//! `get_ranges`, one for all of their keys or ranges), so tests bound what a
//! request costs by its calls. Also the seeded cases of the random tests.

use crate::store::{Kv, RangeReq, ReadTxn, StoreError, Txn};

/// Counts the read calls made through it, passing every call on to `inner`.
pub struct CountingReads<'a, T: ?Sized> {
    pub inner: &'a mut T,
    /// `get` calls.
    pub gets: usize,
    /// `get_many` and `exist_many` calls.
    pub batches: usize,
    /// `get_range`, `get_range_snapshot` and `get_ranges` calls (a
    /// `get_ranges` call counts once, however many ranges it reads).
    pub ranges: usize,
    /// Rows read: the pairs range reads return and the keys point reads ask.
    pub rows: usize,
}

impl<'a, T: ?Sized> CountingReads<'a, T> {
    pub fn new(inner: &'a mut T) -> Self {
        CountingReads {
            inner,
            gets: 0,
            batches: 0,
            ranges: 0,
            rows: 0,
        }
    }

    /// Every read call: the round trips on FoundationDB.
    pub fn calls(&self) -> usize {
        self.gets + self.batches + self.ranges
    }
}

impl<T: ReadTxn + ?Sized> ReadTxn for CountingReads<'_, T> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets += 1;
        self.rows += 1;
        self.inner.get(key)
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.ranges += 1;
        let rows = self.inner.get_range(begin, end, limit, reverse)?;
        self.rows += rows.len();
        Ok(rows)
    }

    fn get_range_snapshot(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.ranges += 1;
        let rows = self.inner.get_range_snapshot(begin, end, limit, reverse)?;
        self.rows += rows.len();
        Ok(rows)
    }

    fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
        self.batches += 1;
        self.rows += keys.len();
        self.inner.exist_many(keys)
    }

    fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.batches += 1;
        self.rows += keys.len();
        self.inner.get_many(keys)
    }
    fn get_ranges(&mut self, ranges: &[RangeReq<'_>]) -> Result<Vec<Vec<Kv>>, StoreError> {
        self.ranges += 1;
        let read = self.inner.get_ranges(ranges)?;
        self.rows += read.iter().map(Vec::len).sum::<usize>();
        Ok(read)
    }
}

impl<T: Txn + ?Sized> Txn for CountingReads<'_, T> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.set(key, value)
    }
    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.clear(key)
    }
    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        self.inner.clear_range(begin, end)
    }
    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.inner.atomic_add(key, delta)
    }
    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.inner.atomic_max(key, value)
    }
    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.inner.atomic_min(key, value)
    }
    fn written_bytes(&self) -> usize {
        self.inner.written_bytes()
    }
    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }
    fn insert_new(&mut self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        self.gets += 1;
        self.inner.insert_new(key, value)
    }
}

/// One case of a random test: its seed (`FUZZ_SEED`, default 1), its
/// number, and a xorshift generator seeded from both.
pub struct FuzzCase {
    pub seed: u64,
    pub it: u64,
    rng: u64,
}

impl FuzzCase {
    /// A number below `m` (0 when `m` is 0).
    pub fn below(&mut self, m: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % m.max(1)
    }
}

/// The cases of a random test: `FUZZ_ITERS` of them (default `iters`).
pub fn fuzz_cases(iters: u64) -> impl Iterator<Item = FuzzCase> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let iters: u64 = env("FUZZ_ITERS").unwrap_or(iters);
    let seed: u64 = env("FUZZ_SEED").unwrap_or(1);
    (0..iters).map(move |it| FuzzCase {
        seed,
        it,
        rng: (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (it + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
            | 1,
    })
}
