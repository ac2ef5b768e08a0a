//! Records stored after their UTC day was archived, and the markers that
//! get them archived.
//!
//! The daily export archives a day by the records' own time, shortly after
//! the day ends. A record of an earlier day stored more than `late-after`
//! past its day's end ([`late_before_ns`]) may have missed that export: the
//! writer adds it to the counter `("late", day, tenant)` ([`LateMarks`]), in
//! the transaction that stores it, so that the marker survives any crash
//! that the record survives. The daily export reads the markers, re-exports
//! those tenants' days, and clears each marker only if its count is still
//! the one it saw ([`clear_if_count`]): records stored meanwhile keep it set
//! for the next run. Retention removes the markers of days whose records it
//! removed, at the count they had before it removed them.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::keys::{decode_i64, Keys};
use crate::store::{ReadTxn, StoreError, Txn};

/// Nanoseconds in a UTC day.
pub const DAY_NS: i64 = 86_400_000_000_000;

/// Records with a time before this are late when stored at `now_ns`: their
/// UTC day ended more than `after_ns` before `now_ns`. Equivalently, a record
/// of day `d` (`ts_ns.div_euclid(DAY_NS)`) is late when
/// `now_ns > (d + 1) * DAY_NS + after_ns`.
pub fn late_before_ns(now_ns: i64, after_ns: i64) -> i64 {
    // The first day that is not late is the one whose end plus `after_ns`
    // is at or after `now_ns`: day `ceil(t / DAY) - 1` with
    // `t = now - after`, i.e. `floor((t - 1) / DAY)`.
    let t = now_ns.saturating_sub(after_ns);
    t.saturating_sub(1)
        .div_euclid(DAY_NS)
        .saturating_mul(DAY_NS)
}

/// The UTC day (days since the epoch) of a time in nanoseconds.
pub fn day_of(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(DAY_NS)
}

/// A day (days since the epoch) as `YYYY-MM-DD` (UTC); such strings sort
/// like the days they name.
pub fn day_string(day: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        // Outside the times a record can have (1970..2262).
        Err(_) => format!("{day}"),
    }
}

/// Parses a `YYYY-MM-DD` day (a real calendar date), for the command line.
pub fn day_arg(s: &str) -> Result<String, String> {
    let bad = || format!("bad day {s:?}: expected YYYY-MM-DD, e.g. 2026-11-26");
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return Err(bad());
    }
    if !digits(5..7) || !digits(8..10) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().map_err(|_| bad());
    let month = u8::try_from(num(5..7)?).map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let day = u8::try_from(num(8..10)?).map_err(|_| bad())?;
    let year = i32::from(num(0..4)?);
    time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(s.to_owned())
}

/// The late records one transaction stores, counted per (day, tenant):
/// one ADD per marker and transaction, whatever the number of records.
pub struct LateMarks<'a> {
    /// Records with a time before this are late; `None`: nothing is marked
    /// (`import`, which restores exports).
    before_ns: Option<i64>,
    counts: HashMap<(i64, &'a str), i64, RandomState>,
}

impl<'a> LateMarks<'a> {
    /// Marks records late by [`late_before_ns`] at `now_ns`; none when
    /// `late_after_ns` is `None`.
    pub fn new(late_after_ns: Option<i64>, now_ns: i64) -> Self {
        LateMarks {
            before_ns: late_after_ns.map(|after| late_before_ns(now_ns, after)),
            counts: HashMap::default(),
        }
    }

    /// Marks nothing.
    pub fn off() -> Self {
        LateMarks::new(None, 0)
    }

    /// Counts a record just stored anew, if it is late.
    #[inline]
    pub fn note(&mut self, ts_ns: i64, tenant: &'a str) {
        if self.before_ns.is_some_and(|before| ts_ns < before) {
            *self.counts.entry((day_of(ts_ns), tenant)).or_default() += 1;
        }
    }

    /// Late records counted so far.
    pub fn total(&self) -> i64 {
        self.counts.values().sum()
    }

    /// Adds the counts to their markers in `txn` (atomic ADD: concurrent
    /// writers never conflict on them). Call once per transaction, after
    /// its records are written.
    pub fn write(&self, txn: &mut dyn Txn, keys: &Keys) -> Result<(), StoreError> {
        for ((day, tenant), n) in &self.counts {
            txn.atomic_add(&keys.late(&day_string(*day), tenant), *n)?;
        }
        Ok(())
    }
}

/// One marker: `count` records of `tenant` on `day` were stored late and
/// are not archived yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Marker {
    pub day: String,
    pub tenant: String,
    pub count: i64,
}

/// Every marker, oldest day first (then by tenant).
pub fn markers(txn: &mut dyn ReadTxn, keys: &Keys) -> Result<Vec<Marker>, StoreError> {
    let all = keys.late_all();
    txn.get_range(&all.begin, &all.end, 0, false)?
        .into_iter()
        .map(|(k, v)| {
            let (day, tenant) = keys
                .decode_late(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Marker {
                day,
                tenant,
                count: decode_i64(&v),
            })
        })
        .collect()
}

/// What [`clear_if_count`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The marker had the expected count and is gone.
    Yes,
    /// The marker's count is not the expected one (`None`: no marker):
    /// nothing was changed.
    Changed(Option<i64>),
}

/// Clears the marker of (`day`, `tenant`) if its count is `expected`, read
/// and cleared in `txn` (on FoundationDB a concurrent ADD makes the
/// transaction conflict, and the retry sees the new count).
///
/// `issued` belongs to the caller's transaction, across its attempts (start
/// with `false`): it records that an attempt cleared the marker at
/// `expected`. On FoundationDB a commit may fail with
/// `commit_unknown_result` although it committed, and the retry then finds
/// the caller's own clear: a marker now absent, or counting fewer than
/// `expected` (counts only grow between clears, so those are late records
/// stored after that clear). Both are reported [`Cleared::Yes`], and the
/// marker of the later records is kept. A count of `expected` or more after
/// such an attempt is ambiguous (that attempt did not commit, or as many
/// records came since): the marker is kept and [`Cleared::Changed`]
/// reported, so the day is exported again, which loses nothing.
pub fn clear_if_count(
    txn: &mut dyn Txn,
    keys: &Keys,
    day: &str,
    tenant: &str,
    expected: i64,
    issued: &mut bool,
) -> Result<Cleared, StoreError> {
    let key = keys.late(day, tenant);
    let now = txn.get(&key)?.map(|v| decode_i64(&v));
    match now {
        Some(n) if n == expected && !*issued => {
            txn.clear(&key)?;
            *issued = true;
            Ok(Cleared::Yes)
        }
        None if *issued => Ok(Cleared::Yes),
        Some(n) if *issued && n < expected => Ok(Cleared::Yes),
        _ => Ok(Cleared::Changed(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoreExt;
    use crate::timespec::parse_time_ns;

    fn ns(t: &str) -> i64 {
        parse_time_ns(t).expect("time")
    }

    /// The rule the log used: late when `now > end of day + after`.
    fn late_by_definition(ts: i64, now: i64, after: i64) -> bool {
        now > (day_of(ts) + 1) * DAY_NS + after
    }

    #[test]
    fn the_threshold_is_the_rule_of_the_days_end_plus_late_after() {
        let hour = 3_600_000_000_000;
        let nows = [
            ns("2026-11-28T00:30:00Z"),
            ns("2026-11-28T01:00:00Z"),
            ns("2026-11-28T01:00:00.000000001Z"),
            ns("2026-11-28T03:00:00Z"),
            ns("2026-11-29T00:00:00Z"),
        ];
        let times = [
            ns("2026-11-26T00:00:00Z"),
            ns("2026-11-26T23:59:59.999999999Z"),
            ns("2026-11-27T00:00:00Z"),
            ns("2026-11-27T23:59:59.999999999Z"),
            ns("2026-11-28T00:00:00Z"),
            ns("2026-11-28T12:00:00Z"),
        ];
        for after in [0, 1, hour, 25 * hour] {
            for now in nows {
                let before = late_before_ns(now, after);
                for ts in times {
                    assert_eq!(
                        ts < before,
                        late_by_definition(ts, now, after),
                        "ts {ts} now {now} after {after}"
                    );
                }
            }
        }
        assert_eq!(
            late_before_ns(ns("2026-11-28T03:00:00Z"), hour),
            ns("2026-11-28T00:00:00Z")
        );
        assert_eq!(
            late_before_ns(ns("2026-11-28T00:59:00Z"), hour),
            ns("2026-11-27T00:00:00Z")
        );
        // A huge late-after marks nothing a record can carry.
        assert!(late_before_ns(ns("2026-11-28T00:00:00Z"), i64::MAX) < 0);
    }

    #[test]
    fn days_print_and_parse_as_dates() {
        assert_eq!(day_string(day_of(ns("2026-11-27T23:59:59Z"))), "2026-11-27");
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_arg("2026-02-28"), Ok("2026-02-28".into()));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-11-01",
            "2026/11/01",
            "2026-11-01T",
            "",
            "yesterday",
            "+026-11-01",
        ] {
            assert!(day_arg(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn marks_are_added_per_day_and_tenant_and_cleared_only_at_the_count_seen() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let now = ns("2026-11-28T03:00:00Z");
        let (a, b) = (String::from("acme"), String::from("globex"));
        for _ in 0..2 {
            store
                .transact(|txn| {
                    let mut m = LateMarks::new(Some(3_600_000_000_000), now);
                    m.note(ns("2026-11-26T10:00:00Z"), &a);
                    m.note(ns("2026-11-26T11:00:00Z"), &a);
                    m.note(ns("2026-11-27T23:00:00Z"), &b);
                    m.note(ns("2026-11-28T00:00:00Z"), &b); // today: not late
                    m.write(txn, &keys)
                })
                .expect("write");
        }
        let got = store.read(|t| markers(t, &keys)).expect("read");
        let want = |day: &str, tenant: &str, count| Marker {
            day: day.into(),
            tenant: tenant.into(),
            count,
        };
        assert_eq!(
            got,
            vec![
                want("2026-11-26", "acme", 4),
                want("2026-11-27", "globex", 2)
            ]
        );
        let clear = |n| {
            let mut issued = false;
            store
                .transact(|t| clear_if_count(t, &keys, "2026-11-26", "acme", n, &mut issued))
                .expect("clear")
        };
        assert_eq!(clear(3), Cleared::Changed(Some(4)));
        assert_eq!(clear(4), Cleared::Yes);
        assert_eq!(clear(4), Cleared::Changed(None));
        let got = store.read(|t| markers(t, &keys)).expect("read");
        assert_eq!(got, vec![want("2026-11-27", "globex", 2)]);
        // Off: nothing is counted.
        let mut off = LateMarks::off();
        off.note(0, &a);
        assert_eq!(off.total(), 0);
    }

    /// A clear whose commit was retried after `commit_unknown_result`: the
    /// retry finds its own clear (no marker), or the marker of late records
    /// stored since (a lower count), and reports the marker cleared,
    /// keeping the later records' marker.
    #[test]
    fn a_retried_clear_finds_its_own_clear_and_keeps_later_records() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let key = keys.late("2026-11-26", "acme");
        let add = |n| store.transact(|t| t.atomic_add(&key, n)).expect("add");
        let attempt = |issued: &mut bool| {
            store
                .transact(|t| clear_if_count(t, &keys, "2026-11-26", "acme", 4, issued))
                .expect("clear")
        };
        for later in [0, 1, 3] {
            add(4);
            // The first attempt commits; its answer is lost.
            let mut issued = false;
            assert_eq!(attempt(&mut issued), Cleared::Yes);
            assert!(issued);
            if later > 0 {
                add(later);
            }
            // The retry of the same transaction.
            assert_eq!(attempt(&mut issued), Cleared::Yes, "{later} later");
            let left = store
                .read(|t| t.get(&key))
                .expect("read")
                .map(|v| decode_i64(&v));
            assert_eq!(
                left,
                (later > 0).then_some(later),
                "later records keep theirs"
            );
            store.transact(|t| t.clear(&key)).expect("reset");
        }
        // As many later records as the count cleared: ambiguous, kept.
        add(4);
        let mut issued = false;
        assert_eq!(attempt(&mut issued), Cleared::Yes);
        add(4);
        assert_eq!(attempt(&mut issued), Cleared::Changed(Some(4)));
        // A caller that cleared nothing: no marker is "not cleared".
        store.transact(|t| t.clear(&key)).expect("reset");
        assert_eq!(attempt(&mut false), Cleared::Changed(None));
    }
}
