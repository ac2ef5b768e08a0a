//! What an API transaction weighs against FoundationDB's transaction size
//! limit ([`MAX_TXN_BYTES`](crate::store::limits::MAX_TXN_BYTES), 10 MB; past
//! it the commit fails for good, error 2101).
//!
//! FoundationDB counts more than the bytes written: every mutation (a set's
//! key and value, a clear's range: the key and the key plus one byte, an
//! atomic op's key and operand) and every conflict range, the read ones (a
//! read key and its successor, a range read's bounds) and the write ones (one
//! per mutation). So a key read and cleared costs about six times its
//! length. The claim routes estimate their worst case with these functions
//! before writing: a request that cannot fit is refused (413), and cleaning
//! of expired claims stops at what the rest of the transaction leaves.

/// What an API transaction may weigh by estimate: the store's limit less a
/// margin for what the estimates leave out (the owner check's reads, the
/// eviction of a few agent rows, the commit's own overhead).
pub const TXN_BUDGET: usize = 9_000_000;

/// The largest claim or release request by estimate (its own reads and
/// writes, worst case): the rest of [`TXN_BUDGET`] is left to cleaning.
pub const MAX_REQUEST_BYTES: usize = 5_000_000;

/// What cleaning expired claims may spend in one claim transaction at most.
pub const MAX_CLEAN_BYTES: usize = 4_000_000;

/// A key's conflict range: the key and its successor (the key plus `\0`).
fn point(key_len: usize) -> usize {
    2 * key_len + 1
}

/// A read of one key (its read conflict range).
pub fn read(key_len: usize) -> usize {
    point(key_len)
}

/// A range read (its read conflict range, at most its bounds).
pub fn read_range(begin_len: usize, end_len: usize) -> usize {
    begin_len + end_len
}

/// A set: the key and value, and the write conflict range.
pub fn set(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + point(key_len)
}

/// A clear of one key: the cleared range, and the write conflict range.
pub fn clear(key_len: usize) -> usize {
    2 * point(key_len)
}

/// An atomic add: the key and its 8-byte operand, and the write conflict
/// range.
pub fn add(key_len: usize) -> usize {
    set(key_len, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_and_cleared_costs_about_six_times_its_length() {
        assert_eq!(read(1000) + clear(1000), 6003);
        assert_eq!(set(100, 50), 351);
        assert_eq!(add(40), 129);
        assert_eq!(read_range(30, 31), 61);
        const { assert!(MAX_REQUEST_BYTES + MAX_CLEAN_BYTES <= TXN_BUDGET) };
        const { assert!(TXN_BUDGET < crate::store::limits::MAX_TXN_BYTES) };
    }
}
