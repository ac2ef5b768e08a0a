//! One conformance suite for every [`Store`] backend: ordering, range reads
//! (reverse, limit), read-your-writes, atomic operations, all-or-nothing
//! commits, limits, and the domain guarantees built on them (idempotent
//! writes, batches split into transactions).
//!
//! Every check works under its own fresh prefix and clears it afterwards, so
//! the suite can run against a shared FoundationDB cluster. Checks panic with
//! a message on failure.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Kv, RangeReq, ReadTxn, Store, StoreError, StoreExt, StoreMetrics, Txn};
use crate::audit::{self, WriteOptions};
use crate::keys::{decode_i64, decode_u64, Keys};
use crate::late::LateMarks;
use crate::record::{validate_line, Item};

static RUN: AtomicU64 = AtomicU64::new(0);

fn prefix(name: &str) -> Vec<u8> {
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    format!(
        "conformance/{}/{}/{name}/",
        uuid::Uuid::new_v4().simple(),
        n
    )
    .into_bytes()
}

fn k(p: &[u8], s: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    v.extend_from_slice(s);
    v
}

/// The first key after every key starting with `p` (`p` ends in `/`, never 0xff).
fn end_of(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    if let Some(last) = v.last_mut() {
        *last += 1;
    }
    v
}

fn cleanup<S: Store + ?Sized>(store: &S, p: &[u8]) {
    store
        .transact(|t| t.clear_range(p, &end_of(p)))
        .expect("cleanup");
}

fn clear_keys<S: Store + ?Sized>(store: &S, keys: &Keys) {
    let r = keys.all();
    store
        .transact(|t| t.clear_range(&r.begin, &r.end))
        .expect("cleanup");
}

/// Runs every check.
pub fn run_all<S: Store + ?Sized>(store: &S) {
    ordering(store);
    range_reads(store);
    read_your_writes_and_clear(store);
    ranges_merge_pending_and_committed(store);
    atomic_ops(store);
    insert_new(store);
    exist_many(store);
    get_many(store);
    get_ranges(store);
    failed_closure_commits_nothing(store);
    limits_are_enforced(store);
    system_keys_are_refused(store);
    concurrent_atomic_adds(store);
    idempotent_records(store);
    conflicting_redeliveries(store);
    monitors_keep_their_tenant(store);
    records_out_of_time_order(store);
    batches_split_into_transactions(store);
    monitors_read_in_pages(store);
    late_records_are_marked(store);
    replayed_commits_count_once(store);
    replayed_late_clear_reports_cleared(store);
}

/// A store on which every write transaction commits, then runs again and
/// commits again: what FoundationDB's retry loop does when a commit's
/// outcome was unknown (`commit_unknown_result`) and it had in fact
/// committed. Whatever such a transaction writes must count once.
pub struct Replayed<'a, S: ?Sized>(pub &'a S);

impl<S: Store + ?Sized> Store for Replayed<'_, S> {
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.run_write(&mut |t| f(&mut SharedTxn(t)))?;
        self.0.run_write(&mut |t| f(&mut SharedTxn(t)))
    }
    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.run_read(f)
    }
    fn check(&self) -> Result<(), StoreError> {
        self.0.check()
    }
    fn describe(&self) -> String {
        format!("replayed view of {}", self.0.describe())
    }
    fn metrics(&self) -> &StoreMetrics {
        self.0.metrics()
    }
}

/// Ingest through a store whose every commit is replayed ([`Replayed`])
/// stores and counts each record, dead letter and late record once: the
/// session and monitor counters, the path index and the late markers.
pub fn replayed_commits_count_once<S: Store + ?Sized>(store: &S) {
    let p = prefix("replayed");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let monitor = uuid::Uuid::new_v4().to_string();
    let mut lines: Vec<String> = (1..=10)
        .map(|i| event_line(&monitor, i, "s-r", &format!("f{}.txt", i % 4)))
        .collect();
    lines.push("not json".into());
    let mut batch = items(&keys, &lines);
    batch.push(batch[0].clone());
    let late = WriteOptions {
        late_after_ns: Some(3_600_000_000_000),
        ..Default::default()
    };
    audit::write_items(&Replayed(store), &keys, &batch, late).expect("write");
    let (records, summary, mon, history, dead, marked) = store
        .read(|t| {
            Ok((
                audit::session_records(t, &keys, "acme", "alice", "s-r", None, 0)?,
                audit::session_summary(t, &keys, "acme", "alice", "s-r")?,
                audit::monitor(t, &keys, &monitor)?,
                audit::path_history(t, &keys, "acme", "f1.txt", 0, false)?,
                audit::dead_letters(t, &keys, 0)?,
                crate::late::markers(t, &keys)?,
            ))
        })
        .expect("read");
    assert_eq!(records.len(), 10);
    let summary = summary.expect("session row");
    assert_eq!(summary.events, 10, "session counted once");
    assert_eq!(
        summary.by_type.values().sum::<i64>(),
        10,
        "types counted once"
    );
    let mon = mon.expect("monitor row");
    assert_eq!(
        (mon.received, mon.max_seq),
        (10, 10),
        "monitor counted once"
    );
    assert_eq!(history.len(), 3, "f1.txt indexed once per touch");
    assert_eq!(dead.len(), 1, "one dead letter");
    // The conformance events are of days long past: all ten are late.
    let counted: i64 = marked.iter().map(|m| m.count).sum();
    assert_eq!(counted, 10, "late records marked once: {marked:?}");
}

/// `late --clear --if-count N` through a store whose commit is replayed
/// ([`Replayed`]: the first commit's outcome was unknown and it had
/// committed): the replay finds the marker it cleared itself and reports it
/// cleared, not "kept"; one whose count changed is kept.
pub fn replayed_late_clear_reports_cleared<S: Store + ?Sized>(store: &S) {
    use crate::late::{clear_if_count, Cleared};
    let p = prefix("late-clear");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let (day, tenant) = ("2026-11-20", "acme");
    let marker = keys.late(day, tenant);
    store.transact(|t| t.atomic_add(&marker, 3)).expect("mark");
    let clear = |expected| {
        let mut issued = false;
        Replayed(store)
            .transact(|t| clear_if_count(t, &keys, day, tenant, expected, &mut issued))
            .expect("clear")
    };
    assert_eq!(clear(2), Cleared::Changed(Some(3)), "another count is kept");
    assert_eq!(clear(3), Cleared::Yes, "the replay sees its own clear");
    assert_eq!(store.read(|t| t.get(&marker)).expect("read"), None);
    // Nothing to clear and nothing cleared by this caller: still reported.
    assert_eq!(clear(3), Cleared::Changed(None));
    clear_keys(store, &keys);
}

/// A store seen as shared: its transactions say they are not exclusive, as
/// FoundationDB's do, so the write path takes the code it takes there
/// (records looked up with the chunk instead of proven new). Runs the suite
/// through that path on the embedded store.
pub struct Shared<S>(pub S);

struct SharedTxn<'t>(&'t mut dyn Txn);

impl ReadTxn for SharedTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.0.get_range(begin, end, limit, reverse)
    }
    fn exist_many(&mut self, keys: &[&[u8]]) -> Result<Vec<bool>, StoreError> {
        self.0.exist_many(keys)
    }
    fn get_range_snapshot(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        self.0.get_range_snapshot(begin, end, limit, reverse)
    }
    fn get_many(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.0.get_many(keys)
    }
    fn get_ranges(&mut self, ranges: &[RangeReq<'_>]) -> Result<Vec<Vec<Kv>>, StoreError> {
        self.0.get_ranges(ranges)
    }
}

impl Txn for SharedTxn<'_> {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.set(key, value)
    }
    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.0.clear(key)
    }
    fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
        self.0.clear_range(begin, end)
    }
    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.0.atomic_add(key, delta)
    }
    fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.0.atomic_max(key, value)
    }
    fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.0.atomic_min(key, value)
    }
    fn written_bytes(&self) -> usize {
        self.0.written_bytes()
    }
    fn insert_new(&mut self, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        self.0.insert_new(key, value)
    }
}

impl<S: Store> Store for Shared<S> {
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.run_write(&mut |t| f(&mut SharedTxn(t)))
    }
    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn ReadTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.run_read(f)
    }
    fn check(&self) -> Result<(), StoreError> {
        self.0.check()
    }
    fn describe(&self) -> String {
        format!("shared view of {}", self.0.describe())
    }
    fn metrics(&self) -> &StoreMetrics {
        self.0.metrics()
    }
}

/// `get_ranges` answers each range as `get_range` (or
/// `get_range_snapshot`) answers it, in order: limits, reverse, empty,
/// inverted and repeated ranges, ranges larger than one batch of the
/// client (read in several), and the transaction's own writes and clears.
pub fn get_ranges<S: Store + ?Sized>(store: &S) {
    let p = prefix("get_ranges");
    let key = |i: usize| k(&p, format!("k{i:04}").as_bytes());
    // 300 pairs of 2 kB: more than FoundationDB returns in one batch.
    let big = vec![b'v'; 2_000];
    store
        .transact(|t| {
            for i in 0..300usize {
                let mut v = big.clone();
                v.extend_from_slice(&i.to_le_bytes());
                t.set(&key(i), &v)?;
            }
            Ok(())
        })
        .expect("write");
    let (all_b, all_e) = (p.clone(), end_of(&p));
    let (k10, k20, k250) = (key(10), key(20), key(250));
    let reqs = [
        RangeReq::new(&all_b, &all_e, 0, false),
        RangeReq::new(&all_b, &all_e, 0, true),
        RangeReq::new(&all_b, &all_e, 260, false),
        RangeReq::new(&all_b, &all_e, 260, true),
        RangeReq::new(&k10, &k20, 0, false),
        RangeReq::new(&k10, &k20, 3, true),
        RangeReq::new(&k10, &k10, 0, false),
        RangeReq::new(&k20, &k10, 0, false),
        RangeReq::new(&k10, &k20, 0, false),
        RangeReq::new(&k10, &k250, 1, false),
        RangeReq {
            snapshot: true,
            ..RangeReq::new(&k10, &k250, 5, true)
        },
    ];
    let one_by_one = |t: &mut dyn ReadTxn| -> Result<Vec<Vec<Kv>>, StoreError> {
        reqs.iter()
            .map(|r| {
                if r.snapshot {
                    t.get_range_snapshot(r.begin, r.end, r.limit, r.reverse)
                } else {
                    t.get_range(r.begin, r.end, r.limit, r.reverse)
                }
            })
            .collect()
    };
    let (many, single, none) = store
        .read(|t| Ok((t.get_ranges(&reqs)?, one_by_one(t)?, t.get_ranges(&[])?)))
        .expect("read");
    assert_eq!(many, single, "get_ranges answers as get_range does");
    assert!(none.is_empty(), "no ranges, no answers");
    let lens: Vec<usize> = many.iter().map(Vec::len).collect();
    assert_eq!(lens, [300, 300, 260, 260, 10, 3, 0, 0, 10, 1, 5]);
    assert_eq!(
        many[0][299].0,
        key(299),
        "a range larger than a batch is whole"
    );
    assert_eq!(many[1][0].0, key(299), "reverse starts at the end");
    assert_eq!(many[2][259].0, key(259), "limit");
    assert_eq!(
        many[3][259].0,
        key(40),
        "limit counts from the end in reverse"
    );
    assert_eq!(many[5][0].0, key(19));
    assert_eq!(many[4], many[8], "a repeated range answers each time");
    assert_eq!(many[10][0].0, key(249), "snapshot reverse");
    // Inside a write transaction: its own sets, overwrites and clears.
    let (many, single) = store
        .transact(|t| {
            t.clear_range(&key(12), &key(15))?;
            t.set(&key(10), b"mine")?;
            t.set(&k(&p, b"k0010x"), b"new")?;
            let many = t.get_ranges(&reqs)?;
            Ok((many, one_by_one(t)?))
        })
        .expect("transaction");
    assert_eq!(many, single, "get_ranges sees the transaction's writes");
    let keys_10_20: Vec<Vec<u8>> = many[4].iter().map(|(key, _)| key.clone()).collect();
    let want: Vec<Vec<u8>> = [key(10), k(&p, b"k0010x"), key(11)]
        .into_iter()
        .chain((15..20).map(key))
        .collect();
    assert_eq!(keys_10_20, want, "own writes and clears merged");
    assert_eq!(many[4][0].1, b"mine".to_vec());
    assert_eq!(many[0].len(), 298);
    cleanup(store, &p);
}

/// `exist_many` answers in order, sees the transaction's own writes and
/// clears, and agrees with `get`.
pub fn exist_many<S: Store + ?Sized>(store: &S) {
    let p = prefix("exist_many");
    store
        .transact(|t| t.set(&k(&p, b"stored"), b"v"))
        .expect("write");
    let got = store
        .transact(|t| {
            t.set(&k(&p, b"mine"), b"v")?;
            t.clear(&k(&p, b"stored"))?;
            let before = t.exist_many(&[&k(&p, b"absent"), &k(&p, b"mine"), &k(&p, b"stored")])?;
            t.set(&k(&p, b"stored"), b"again")?;
            let after = t.exist_many(&[&k(&p, b"stored"), &k(&p, b"absent"), &k(&p, b"mine")])?;
            Ok((before, after))
        })
        .expect("transaction");
    assert_eq!(got, (vec![false, true, false], vec![true, false, true]));
    assert_eq!(
        store
            .read(|t| t.exist_many(&[&k(&p, b"mine"), &k(&p, b"nothing")]))
            .expect("read"),
        vec![true, false]
    );
    cleanup(store, &p);
}

/// `get_many` answers in order (a repeated key answers each time), sees
/// the transaction's own writes and clears, and agrees with `get`.
pub fn get_many<S: Store + ?Sized>(store: &S) {
    let p = prefix("get_many");
    let (stored, mine, absent, gone) = (
        k(&p, b"stored"),
        k(&p, b"mine"),
        k(&p, b"absent"),
        k(&p, b"gone"),
    );
    store
        .transact(|t| {
            t.set(&stored, b"s")?;
            t.set(&gone, b"g")
        })
        .expect("write");
    let v = |s: &[u8]| Some(s.to_vec());
    let got = store
        .transact(|t| {
            let empty = t.get_many(&[])?;
            t.set(&mine, b"m")?;
            t.clear(&gone)?;
            let before = t.get_many(&[&absent, &mine, &stored, &gone, &stored])?;
            t.set(&stored, b"again")?;
            t.clear(&mine)?;
            let after = t.get_many(&[&stored, &mine])?;
            let one_by_one = [&stored, &mine, &absent, &gone]
                .iter()
                .map(|key| t.get(key))
                .collect::<Result<Vec<_>, _>>()?;
            let many = t.get_many(&[&stored, &mine, &absent, &gone])?;
            Ok((empty, before, after, one_by_one, many))
        })
        .expect("transaction");
    assert!(got.0.is_empty());
    assert_eq!(got.1, vec![None, v(b"m"), v(b"s"), None, v(b"s")]);
    assert_eq!(got.2, vec![v(b"again"), None]);
    assert_eq!(got.3, got.4, "agrees with get");
    assert_eq!(
        store
            .read(|t| t.get_many(&[&gone, &stored, &absent]))
            .expect("read"),
        vec![None, v(b"again"), None]
    );
    cleanup(store, &p);
}

/// Keys come back in byte order, whatever the insertion order.
pub fn ordering<S: Store + ?Sized>(store: &S) {
    let p = prefix("ordering");
    let raw: Vec<&[u8]> = vec![b"b", b"a\xff", b"a", b"\x00", b"a\x00", b"ab", b"\xff\xfe"];
    store
        .transact(|t| {
            for s in &raw {
                t.set(&k(&p, s), s)?;
            }
            Ok(())
        })
        .expect("write");
    let got = store
        .read(|t| t.get_range(&p, &end_of(&p), 0, false))
        .expect("read");
    let mut want: Vec<Vec<u8>> = raw.iter().map(|s| k(&p, s)).collect();
    want.sort();
    let keys: Vec<Vec<u8>> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, want, "keys must come back in byte order");
    for (key, v) in &got {
        assert_eq!(&key[p.len()..], v.as_slice(), "value follows its key");
    }
    cleanup(store, &p);
}

/// Half-open ranges, limit, reverse, empty and inverted ranges.
pub fn range_reads<S: Store + ?Sized>(store: &S) {
    let p = prefix("range");
    store
        .transact(|t| {
            for i in 0..20u8 {
                t.set(&k(&p, &[b'k', i]), &[i])?;
            }
            Ok(())
        })
        .expect("write");
    let vals = |begin: u8, end: u8, limit: usize, reverse: bool| -> Vec<u8> {
        store
            .read(|t| t.get_range(&k(&p, &[b'k', begin]), &k(&p, &[b'k', end]), limit, reverse))
            .expect("range")
            .into_iter()
            .map(|(_, v)| v[0])
            .collect()
    };
    assert_eq!(vals(3, 7, 0, false), vec![3, 4, 5, 6], "end is exclusive");
    assert_eq!(vals(3, 7, 0, true), vec![6, 5, 4, 3], "reverse");
    assert_eq!(vals(3, 7, 2, false), vec![3, 4], "limit");
    assert_eq!(
        vals(3, 7, 2, true),
        vec![6, 5],
        "limit counts from the end in reverse"
    );
    assert_eq!(vals(3, 3, 0, false), Vec::<u8>::new(), "empty range");
    assert_eq!(
        vals(7, 3, 0, false),
        Vec::<u8>::new(),
        "inverted range is empty"
    );
    assert_eq!(vals(0, 20, 100, false).len(), 20, "limit above size");
    // A range that is a prefix of other keys.
    let all = store
        .read(|t| t.get_range(&p, &end_of(&p), 0, false))
        .expect("all");
    assert_eq!(all.len(), 20);
    // get on a missing key.
    assert_eq!(store.read(|t| t.get(&k(&p, b"nope"))).expect("get"), None);
    cleanup(store, &p);
}

/// A transaction sees its own writes; clear and clear_range remove keys.
pub fn read_your_writes_and_clear<S: Store + ?Sized>(store: &S) {
    let p = prefix("ryw");
    store
        .transact(|t| {
            t.set(&k(&p, b"a"), b"1")?;
            assert_eq!(t.get(&k(&p, b"a"))?, Some(b"1".to_vec()), "read own set");
            t.set(&k(&p, b"a"), b"2")?;
            assert_eq!(
                t.get(&k(&p, b"a"))?,
                Some(b"2".to_vec()),
                "read own overwrite"
            );
            for s in [b"b", b"c", b"d", b"e"] {
                t.set(&k(&p, s), s)?;
            }
            t.clear(&k(&p, b"b"))?;
            assert_eq!(t.get(&k(&p, b"b"))?, None, "read own clear");
            let r = t.get_range(&p, &end_of(&p), 0, false)?;
            assert_eq!(r.len(), 4, "range sees own writes and clears");
            assert!(t.written_bytes() > 0);
            Ok(())
        })
        .expect("txn");
    store
        .transact(|t| t.clear_range(&k(&p, b"c"), &k(&p, b"e")))
        .expect("clear_range");
    let left: Vec<Vec<u8>> = store
        .read(|t| t.get_range(&p, &end_of(&p), 0, false))
        .expect("read")
        .into_iter()
        .map(|(key, _)| key[p.len()..].to_vec())
        .collect();
    assert_eq!(
        left,
        vec![b"a".to_vec(), b"e".to_vec()],
        "clear_range is half-open"
    );
    cleanup(store, &p);
}

/// `insert_new` sets a missing key and leaves an existing one untouched.
/// Inside a write transaction, a range read merges the transaction's own
/// sets, overwrites and clears with committed keys, in both directions and
/// under a limit.
pub fn ranges_merge_pending_and_committed<S: Store + ?Sized>(store: &S) {
    let p = prefix("merge");
    store
        .transact(|t| {
            for s in [b"a", b"c", b"e", b"g"] {
                t.set(&k(&p, s), b"old")?;
            }
            Ok(())
        })
        .expect("seed");
    let short = |r: Vec<Kv>| -> Vec<(String, String)> {
        r.into_iter()
            .map(|(key, v)| {
                (
                    String::from_utf8_lossy(&key[p.len()..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    store
        .transact(|t| {
            t.set(&k(&p, b"b"), b"new")?;
            t.set(&k(&p, b"c"), b"new")?;
            t.clear(&k(&p, b"e"))?;
            t.set(&k(&p, b"h"), b"new")?;
            let end = end_of(&p);
            assert_eq!(
                short(t.get_range(&p, &end, 0, false)?),
                vec![
                    pair("a", "old"),
                    pair("b", "new"),
                    pair("c", "new"),
                    pair("g", "old"),
                    pair("h", "new")
                ],
                "forward merge"
            );
            assert_eq!(
                short(t.get_range(&p, &end, 3, true)?),
                vec![pair("h", "new"), pair("g", "old"), pair("c", "new")],
                "reverse merge with a limit"
            );
            assert_eq!(
                short(t.get_range(&k(&p, b"b"), &k(&p, b"g"), 2, false)?),
                vec![pair("b", "new"), pair("c", "new")],
                "bounded merge with a limit"
            );
            assert_eq!(
                short(t.get_range(&k(&p, b"d"), &k(&p, b"g"), 0, true)?),
                vec![],
                "a cleared key is hidden"
            );
            Ok(())
        })
        .expect("txn");
    cleanup(store, &p);
}

pub fn insert_new<S: Store + ?Sized>(store: &S) {
    let p = prefix("insert_new");
    let key = k(&p, b"x");
    let first = store
        .transact(|t| t.insert_new(&key, b"one"))
        .expect("insert");
    let second = store
        .transact(|t| {
            let again = t.insert_new(&key, b"two")?;
            // Read-your-writes after a refused insert: still the old value.
            Ok((again, t.get(&key)?))
        })
        .expect("insert again");
    assert!(first, "a missing key is inserted");
    assert_eq!(
        second,
        (false, Some(b"one".to_vec())),
        "an existing key is kept"
    );
    let within = store
        .transact(|t| {
            Ok((
                t.insert_new(&k(&p, b"y"), b"1")?,
                t.insert_new(&k(&p, b"y"), b"2")?,
            ))
        })
        .expect("twice in one txn");
    assert_eq!(within, (true, false), "a transaction sees its own insert");
    assert_eq!(
        store.read(|t| t.get(&k(&p, b"y"))).expect("read"),
        Some(b"1".to_vec())
    );
    cleanup(store, &p);
}

/// ADD, MAX and MIN behave like FoundationDB's, including on missing keys.
pub fn atomic_ops<S: Store + ?Sized>(store: &S) {
    let p = prefix("atomic");
    let (c, mx, mn) = (k(&p, b"count"), k(&p, b"max"), k(&p, b"min"));
    store
        .transact(|t| {
            t.atomic_add(&c, 5)?;
            t.atomic_add(&c, -2)?;
            t.atomic_max(&mx, 10)?;
            t.atomic_max(&mx, 3)?;
            t.atomic_min(&mn, 10)?;
            t.atomic_min(&mn, 30)?;
            Ok(())
        })
        .expect("atomics");
    store
        .transact(|t| {
            t.atomic_add(&c, 1)?;
            t.atomic_max(&mx, u64::MAX - 1)?;
            t.atomic_min(&mn, 7)?;
            Ok(())
        })
        .expect("atomics 2");
    let (cv, mxv, mnv) = store
        .read(|t| Ok((t.get(&c)?, t.get(&mx)?, t.get(&mn)?)))
        .expect("read");
    assert_eq!(cv.as_deref().map(decode_i64), Some(4), "ADD sums");
    assert_eq!(cv.map(|v| v.len()), Some(8), "ADD stores 8 bytes");
    assert_eq!(
        mxv.as_deref().map(decode_u64),
        Some(u64::MAX - 1),
        "MAX is unsigned"
    );
    assert_eq!(mnv.as_deref().map(decode_u64), Some(7), "MIN");
    // Read-your-writes through an atomic op.
    let seen = store
        .transact(|t| {
            t.atomic_add(&c, 10)?;
            Ok(t.get(&c)?.as_deref().map(decode_i64))
        })
        .expect("ryw atomic");
    assert_eq!(seen, Some(14), "a transaction reads its own ADD");
    cleanup(store, &p);
}

/// An error from the closure aborts the transaction: nothing is written.
pub fn failed_closure_commits_nothing<S: Store + ?Sized>(store: &S) {
    let p = prefix("abort");
    let r: Result<(), StoreError> = store.transact(|t| {
        t.set(&k(&p, b"x"), b"1")?;
        t.atomic_add(&k(&p, b"n"), 1)?;
        Err(StoreError::Internal("abort on purpose".into()))
    });
    assert!(r.is_err());
    let got = store
        .read(|t| t.get_range(&p, &end_of(&p), 0, false))
        .expect("read");
    assert!(
        got.is_empty(),
        "aborted writes must not be visible: {got:?}"
    );
}

/// Keys over 10 kB and values over 100 kB are refused.
pub fn limits_are_enforced<S: Store + ?Sized>(store: &S) {
    let p = prefix("limits");
    let big_key = k(&p, &vec![b'k'; super::limits::MAX_KEY_BYTES + 1]);
    let r = store.transact(|t| t.set(&big_key, b"v"));
    assert!(r.is_err(), "oversize key accepted");
    let r = store.transact(|t| t.set(&k(&p, b"v"), &vec![0u8; super::limits::MAX_VALUE_BYTES + 1]));
    assert!(r.is_err(), "oversize value accepted");
    store
        .transact(|t| t.set(&k(&p, b"ok"), &vec![0u8; super::limits::MAX_VALUE_BYTES]))
        .expect("a value at the limit is fine");
    cleanup(store, &p);
}

/// Keys in FoundationDB's system key space (first byte `\xff`) are refused
/// by every write, with [`StoreError::SystemKey`], and the transaction
/// commits nothing: FoundationDB itself refuses them, so the embedded store
/// must too.
pub fn system_keys_are_refused<S: Store + ?Sized>(store: &S) {
    let p = prefix("system-keys");
    let ok = k(&p, b"ok");
    type Write = fn(&mut dyn Txn, &[u8]) -> Result<(), StoreError>;
    let writes: [(&str, Write); 4] = [
        ("set", |t, key| t.set(key, b"v")),
        ("atomic_add", |t, key| t.atomic_add(key, 1)),
        ("atomic_max", |t, key| t.atomic_max(key, 1)),
        ("atomic_min", |t, key| t.atomic_min(key, 1)),
    ];
    for key in [&b"\xff"[..], b"\xff/fdb-sink/x", b"\xff\xff/status/json"] {
        for (what, write) in writes {
            let r = store.transact(|t| {
                t.set(&ok, b"1")?;
                write(t, key)
            });
            match r {
                Err(StoreError::SystemKey { key: shown }) => {
                    assert!(shown.starts_with("\\xff"), "{what}: {shown}")
                }
                other => panic!("{what} of a system key {key:?}: {other:?}"),
            }
        }
    }
    assert_eq!(
        store.read(|t| t.get(&ok)).expect("read"),
        None,
        "a refused write commits nothing"
    );
    // The largest key below the system keys is an ordinary key.
    let below = b"\xfe\xff\xff";
    store
        .transact(|t| t.set(below, b"v"))
        .expect("a key below \\xff is fine");
    store.transact(|t| t.clear(below)).expect("cleanup");
    cleanup(store, &p);
}

/// Concurrent ADDs from several threads are all counted.
pub fn concurrent_atomic_adds<S: Store + ?Sized>(store: &S) {
    let p = prefix("concurrent");
    let c = k(&p, b"n");
    std::thread::scope(|s| {
        for thread in 0..4u8 {
            let (p, c) = (&p, &c);
            s.spawn(move || {
                for i in 0..25u8 {
                    // Each add is made idempotent by its own marker key, as
                    // the sink's writes are: a commit retried after an
                    // unknown result must not add twice.
                    let marker = k(p, &[b'm', thread, i]);
                    store
                        .transact(|t| {
                            if t.get(&marker)?.is_none() {
                                t.set(&marker, b"")?;
                                t.atomic_add(c, 1)?;
                            }
                            Ok(())
                        })
                        .expect("add");
                }
            });
        }
    });
    let v = store.read(|t| t.get(&c)).expect("read");
    assert_eq!(v.as_deref().map(decode_i64), Some(100));
    cleanup(store, &p);
}

/// A test event line.
pub fn event_line(monitor: &str, seq: u64, session: &str, path: &str) -> String {
    serde_json::json!({
        "schema": "file-event/1",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "monitor_id": monitor,
        "seq": seq,
        "timestamp": format!("2026-11-26T18:00:{:02}.{:09}Z", seq % 60, seq),
        "event_type": if seq % 2 == 0 { "update" } else { "create" },
        "kind": "file",
        "path": path,
        "size": seq,
        "checksum": format!("sha256:{:064x}", seq % 3),
        "tenant_id": "acme",
        "user_id": "alice",
        "session_id": session,
        "metadata": {"k": "v"},
    })
    .to_string()
}

fn items(keys: &Keys, lines: &[String]) -> Vec<Item> {
    lines
        .iter()
        .map(|l| validate_line(keys, l.as_bytes(), 0))
        .collect()
}

/// The same records written twice are stored and counted once.
pub fn idempotent_records<S: Store + ?Sized>(store: &S) {
    let p = prefix("idem");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let monitor = uuid::Uuid::new_v4().to_string();
    let lines: Vec<String> = (1..=10)
        .map(|i| event_line(&monitor, i, "s-1", &format!("f{}.txt", i % 4)))
        .collect();
    let mut batch = items(&keys, &lines);
    // A duplicate inside the batch, too.
    batch.push(batch[0].clone());
    let first = audit::write_items(store, &keys, &batch, WriteOptions::default()).expect("first");
    assert_eq!((first.written, first.duplicates), (10, 1));
    let again = audit::write_items(store, &keys, &batch, WriteOptions::default()).expect("again");
    assert_eq!((again.written, again.duplicates), (0, 11));
    let (records, summary, mon, history) = store
        .read(|t| {
            Ok((
                audit::session_records(t, &keys, "acme", "alice", "s-1", None, 0)?,
                audit::session_summary(t, &keys, "acme", "alice", "s-1")?,
                audit::monitor(t, &keys, &monitor)?,
                audit::path_history(t, &keys, "acme", "f1.txt", 0, false)?,
            ))
        })
        .expect("read");
    assert_eq!(records.len(), 10, "one copy of each record");
    assert!(
        records.windows(2).all(|w| w[0].key.ts_ns <= w[1].key.ts_ns),
        "time-ordered"
    );
    let summary = summary.expect("session row");
    assert_eq!(summary.events, 10, "session counted once");
    assert_eq!(summary.by_type.get("create"), Some(&5));
    assert_eq!(summary.by_type.get("update"), Some(&5));
    assert_eq!(summary.first_ns, records[0].key.ts_ns as u64);
    assert_eq!(summary.last_ns, records[9].key.ts_ns as u64);
    let mon = mon.expect("monitor row");
    assert_eq!(
        (mon.received, mon.max_seq, mon.tenant.as_str()),
        (10, 10, "acme")
    );
    assert_eq!(history.len(), 3, "f1.txt touched by seq 1, 5, 9");
    let dups = store
        .read(|t| audit::checksum_paths(t, &keys, "acme", &format!("sha256:{:064x}", 1), 0))
        .expect("checksum");
    assert!(!dups.is_empty(), "by_checksum index maintained");
    // "Last seen" is the latest time of a (checksum, path), within one
    // transaction and across them, whatever the delivery order.
    let same = |seq: u64| event_line(&monitor, seq, "s-2", "same.txt");
    let ts_of = |seq: u64| -> u64 {
        match &items(&keys, &[same(seq)])[0] {
            Item::Record(r) => r.ts_ns as u64,
            Item::DeadLetter(d) => panic!("{}", d.detail),
        }
    };
    let last_seen = || {
        store
            .read(|t| audit::checksum_paths(t, &keys, "acme", &format!("sha256:{:064x}", 0), 0))
            .expect("checksum")
            .into_iter()
            .find(|(path, _)| path == "same.txt")
            .map(|(_, ns)| ns)
    };
    audit::write_items(
        store,
        &keys,
        &items(&keys, &[same(33), same(39), same(36)]),
        WriteOptions::default(),
    )
    .expect("one transaction");
    assert_eq!(last_seen(), Some(ts_of(39)), "max within a transaction");
    audit::write_items(
        store,
        &keys,
        &items(&keys, &[same(30)]),
        WriteOptions::default(),
    )
    .expect("older, later");
    assert_eq!(
        last_seen(),
        Some(ts_of(39)),
        "an older event does not lower it"
    );
    audit::write_items(
        store,
        &keys,
        &items(&keys, &[same(42)]),
        WriteOptions::default(),
    )
    .expect("newer");
    assert_eq!(last_seen(), Some(ts_of(42)), "a newer event raises it");
    // Pagination by cursor resumes strictly after the last key.
    let page1 = store
        .read(|t| audit::session_records(t, &keys, "acme", "alice", "s-1", None, 4))
        .expect("page1");
    let page2 = store
        .read(|t| {
            audit::session_records(
                t,
                &keys,
                "acme",
                "alice",
                "s-1",
                Some(&page1[3].raw_key),
                100,
            )
        })
        .expect("page2");
    assert_eq!(page1.len() + page2.len(), 10);
    assert!(page2[0].raw_key > page1[3].raw_key);
    cleanup(store, &p);
}

/// A record whose key is already stored, or written earlier in the same
/// transaction, with another event is stored as one
/// `conflicting_redelivery` dead letter, however often it comes; the stored
/// record, its counters and its indexes stay as they were, and a true
/// redelivery stays a duplicate.
pub fn conflicting_redeliveries<S: Store + ?Sized>(store: &S) {
    use crate::record::reason;
    let p = prefix("conflict");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let monitor = uuid::Uuid::new_v4().to_string();
    let lines: Vec<String> = (1..=5)
        .map(|i| event_line(&monitor, i, "s-1", "a.txt"))
        .collect();
    let other = |l: &str| {
        let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
        v["path"] = "b.txt".into();
        v["checksum"] =
            "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f".into();
        v.to_string()
    };
    let counts = |w: &audit::WriteSummary| summary_counts(w, reason::CONFLICTING_REDELIVERY);
    let mut batch = items(&keys, &lines);
    batch.extend(items(&keys, &[other(&lines[1]), lines[1].clone()]));
    let first = audit::write_items(store, &keys, &batch, WriteOptions::default()).expect("first");
    assert_eq!(counts(&first), (5, 1, 1, 0, 1), "{first:?}");
    let later = items(
        &keys,
        &[other(&lines[3]), lines[3].clone(), other(&lines[1])],
    );
    let again = audit::write_items(store, &keys, &later, WriteOptions::default()).expect("again");
    assert_eq!(counts(&again), (0, 1, 1, 1, 1), "{again:?}");
    let (records, summary, mon, moved, letters) = store
        .read(|t| {
            Ok((
                audit::session_records(t, &keys, "acme", "alice", "s-1", None, 0)?,
                audit::session_summary(t, &keys, "acme", "alice", "s-1")?,
                audit::monitor(t, &keys, &monitor)?,
                audit::path_history(t, &keys, "acme", "b.txt", 0, false)?,
                audit::dead_letters(t, &keys, 0)?,
            ))
        })
        .expect("read");
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.record.event.path == "a.txt"));
    assert_eq!(summary.map(|s| s.events), Some(5));
    assert_eq!(mon.map(|m| m.received), Some(5));
    assert!(moved.is_empty(), "no index entry for a refused copy");
    assert_eq!(letters.len(), 2, "{letters:?}");
    for l in &letters {
        assert_eq!(l.letter.reason, reason::CONFLICTING_REDELIVERY);
        assert!(l.letter.raw.contains("b.txt"), "{}", l.letter.raw);
    }
    clear_keys(store, &keys);
}

/// A write's `(written, duplicates, dead_lettered, dead_letter_duplicates,
/// dead letters of reason)`.
fn summary_counts(w: &audit::WriteSummary, reason: &str) -> (u64, u64, u64, u64, u64) {
    let of = crate::record::reason::index(reason).map_or(0, |i| w.dead_lettered_by_reason[i]);
    (
        w.written,
        w.duplicates,
        w.dead_lettered,
        w.dead_letter_duplicates,
        of,
    )
}

/// A monitor belongs to the first tenant that stores an event of it (the
/// first met in a chunk when it has none): an event of it under another
/// tenant, in a later transaction, later in the same chunk or in another
/// chunk of the same transaction, is one `monitor_of_other_tenant` dead
/// letter however often it comes, and is not stored; the owner's counters
/// and tenant stay as they were.
pub fn monitors_keep_their_tenant<S: Store + ?Sized>(store: &S) {
    use crate::record::reason;
    let p = prefix("monitor_tenant");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let line = |monitor: &str, seq: u64, tenant: &str| {
        let mut v: serde_json::Value =
            serde_json::from_str(&event_line(monitor, seq, "s-m", &format!("m{seq}.txt")))
                .expect("event");
        v["tenant_id"] = tenant.into();
        v.to_string()
    };
    let counts = |w: &audit::WriteSummary| summary_counts(w, reason::MONITOR_OF_OTHER_TENANT);
    let write = |lines: &[String]| {
        audit::write_items(store, &keys, &items(&keys, lines), WriteOptions::default())
            .expect("write")
    };
    let (owned, new, grouped) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let acme: Vec<String> = (1..=3).map(|i| line(&owned, i, "acme")).collect();
    assert_eq!(counts(&write(&acme)), (3, 0, 0, 0, 0));
    // Another tenant in a later transaction, with a record of the owner.
    let forged = line(&owned, 4, "globex");
    let w = write(&[forged.clone(), line(&owned, 5, "acme")]);
    assert_eq!(counts(&w), (1, 0, 1, 0, 1), "{w:?}");
    // Delivered again, alone and next to the owner's records.
    let mut again = vec![forged.clone()];
    again.extend(acme.iter().cloned());
    assert_eq!(counts(&write(&again)), (0, 3, 0, 1, 0));
    // A new monitor: the first tenant met in the chunk owns it.
    let w = write(&[
        line(&new, 1, "globex"),
        line(&new, 2, "acme"),
        line(&new, 3, "globex"),
    ]);
    assert_eq!(counts(&w), (2, 0, 1, 0, 1), "{w:?}");
    // Two chunks in one transaction (a group commit): the second sees the
    // owner the first wrote.
    let first = items(&keys, &[line(&grouped, 1, "acme")]);
    let second = items(&keys, &[line(&grouped, 2, "globex")]);
    let (a, b) = store
        .transact(|t| {
            let a = audit::write_chunk(t, &keys, &first, &mut LateMarks::off())?;
            let b = audit::write_chunk(t, &keys, &second, &mut LateMarks::off())?;
            Ok((counts(&a), counts(&b)))
        })
        .expect("group");
    assert_eq!((a, b), ((1, 0, 0, 0, 0), (0, 0, 1, 0, 1)));
    let (rows, globex, letters) = store
        .read(|t| {
            Ok((
                [&owned, &new, &grouped]
                    .into_iter()
                    .map(|m| audit::monitor(t, &keys, m))
                    .collect::<Result<Vec<_>, _>>()?,
                audit::session_records(t, &keys, "globex", "alice", "s-m", None, 0)?,
                audit::dead_letters(t, &keys, 0)?,
            ))
        })
        .expect("read");
    let row = |i: usize| {
        rows[i]
            .as_ref()
            .map(|m| (m.tenant.clone(), m.received, m.max_seq))
    };
    assert_eq!(row(0), Some(("acme".into(), 4, 5)), "the owner's counts");
    assert_eq!(row(1), Some(("globex".into(), 2, 3)));
    assert_eq!(row(2), Some(("acme".into(), 1, 1)));
    assert!(
        globex
            .iter()
            .all(|r| r.record.event.monitor_id.to_string() == new),
        "no record of another tenant's monitor is stored: {globex:?}"
    );
    assert_eq!(globex.len(), 2);
    assert_eq!(letters.len(), 3, "{letters:?}");
    let forged_letter = letters
        .iter()
        .find(|l| l.letter.raw.contains(&owned))
        .expect("the forged event's letter");
    assert_eq!(forged_letter.letter.reason, reason::MONITOR_OF_OTHER_TENANT);
    for part in [owned.as_str(), "tenant acme", "tenant globex"] {
        assert!(
            forged_letter.letter.detail.contains(part),
            "{part}: {}",
            forged_letter.letter.detail
        );
    }
    clear_keys(store, &keys);
}

/// Events of a session arriving out of time order, redelivered in the same
/// transaction, in the same group of batches and in later transactions, are
/// each stored and counted once.
pub fn records_out_of_time_order<S: Store + ?Sized>(store: &S) {
    let p = prefix("order");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let monitor = uuid::Uuid::new_v4().to_string();
    // lines[i] has seq i + 1, and times in seq order.
    let lines: Vec<String> = (1..=7)
        .map(|seq| event_line(&monitor, seq, "s-order", "o.txt"))
        .collect();
    let pick = |seqs: &[usize]| -> Vec<Item> {
        let picked: Vec<String> = seqs.iter().map(|&i| lines[i].clone()).collect();
        items(&keys, &picked)
    };
    let write = |seqs: &[usize]| {
        let s =
            audit::write_items(store, &keys, &pick(seqs), WriteOptions::default()).expect("write");
        (s.written, s.duplicates)
    };
    assert_eq!(write(&[3, 5]), (2, 0));
    assert_eq!(
        write(&[1, 5, 6, 6, 3]),
        (2, 3),
        "older, latest again, newer"
    );
    // Two batches committed in one transaction, as the group commit does.
    let (a, b) = store
        .transact(|t| {
            let a = audit::write_chunk(t, &keys, &pick(&[2]), &mut LateMarks::off())?;
            let b = audit::write_chunk(t, &keys, &pick(&[2, 4]), &mut LateMarks::off())?;
            Ok(((a.written, a.duplicates), (b.written, b.duplicates)))
        })
        .expect("group");
    assert_eq!((a, b), ((1, 0), (1, 1)));
    assert_eq!(write(&[0, 1, 2, 3, 4, 5, 6]), (1, 6));
    let (records, summary, mon) = store
        .read(|t| {
            Ok((
                audit::session_records(t, &keys, "acme", "alice", "s-order", None, 0)?,
                audit::session_summary(t, &keys, "acme", "alice", "s-order")?,
                audit::monitor(t, &keys, &monitor)?,
            ))
        })
        .expect("read");
    assert_eq!(records.len(), 7);
    assert_eq!(summary.map(|s| s.events), Some(7));
    assert_eq!(mon.map(|m| m.received), Some(7));
    cleanup(store, &p);
}

/// A batch larger than the transaction target is committed as several
/// transactions, and every record lands once.
pub fn batches_split_into_transactions<S: Store + ?Sized>(store: &S) {
    let p = prefix("split");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let monitor = uuid::Uuid::new_v4().to_string();
    let lines: Vec<String> = (1..=200)
        .map(|i| event_line(&monitor, i, "s-2", &format!("dir/{i}.bin")))
        .collect();
    let mut batch = items(&keys, &lines);
    batch.push(validate_line(&keys, b"not json", 0));
    let opts = WriteOptions {
        target_txn_bytes: 20_000,
        ..Default::default()
    };
    let s = audit::write_items(store, &keys, &batch, opts).expect("write");
    assert!(
        s.transactions >= 5,
        "expected several transactions, got {s:?}"
    );
    assert_eq!((s.written, s.dead_lettered), (200, 1));
    let (n, mon, dl) = store
        .read(|t| {
            Ok((
                audit::count_in(t, &keys.audit_logs_session("acme", "alice", "s-2"))?,
                audit::monitor(t, &keys, &monitor)?,
                audit::dead_letters(t, &keys, 0)?,
            ))
        })
        .expect("read");
    assert_eq!(n, 200);
    assert_eq!(mon.map(|m| m.received), Some(200));
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].letter.reason, crate::record::reason::INVALID_JSON);
    clear_keys(store, &keys);
}

/// `each_monitor` reads every monitor once, whole, across several
/// transactions (more keys than one page holds).
pub fn monitors_read_in_pages<S: Store + ?Sized>(store: &S) {
    let p = prefix("monitor_pages");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    let n = 1500u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        store
            .transact(|t| {
                for i in chunk {
                    let id = format!("m{i:05}");
                    t.atomic_add(&keys.monitor_received(&id), 1)?;
                    t.atomic_max(&keys.monitor_max_seq(&id), i + 1)?;
                    t.set(&keys.monitor_tenant(&id), b"acme")?;
                }
                Ok(())
            })
            .expect("write");
    }
    let mut seen = Vec::new();
    audit::each_monitor(store, &keys, &mut |m| seen.push(m)).expect("pages");
    assert_eq!(seen.len() as u64, n, "every monitor once");
    for (i, m) in seen.iter().enumerate() {
        let i = i as u64;
        assert_eq!(m.monitor_id, format!("m{i:05}"));
        assert_eq!(
            (m.received, m.max_seq, m.tenant.as_str()),
            (1, i + 1, "acme")
        );
    }
    clear_keys(store, &keys);
}

/// New records whose day ended more than late-after before their
/// transaction add to their `("late", day, tenant)` marker in it: one per
/// day and tenant; duplicates, records of a day not yet over and writes
/// without late-after (`import`) add nothing.
pub fn late_records_are_marked<S: Store + ?Sized>(store: &S) {
    let p = prefix("late");
    let root = String::from_utf8_lossy(&p).into_owned();
    let keys = Keys::new(&root);
    // A monitor belongs to one tenant: one per tenant.
    let monitors = [
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    ];
    let line = |seq: u64, tenant: &str, ts: &str| {
        let monitor = &monitors[usize::from(tenant != "acme")];
        let mut v: serde_json::Value =
            serde_json::from_str(&event_line(monitor, seq, "s-late", &format!("f{seq}")))
                .expect("event");
        v["tenant_id"] = tenant.into();
        v["timestamp"] = ts.into();
        v.to_string()
    };
    let now = file_event::Timestamp::now().to_string();
    let marked = || {
        store
            .read(|t| crate::late::markers(t, &keys))
            .expect("markers")
            .into_iter()
            .map(|m| format!("{} {} {}", m.day, m.tenant, m.count))
            .collect::<Vec<_>>()
    };
    let late = WriteOptions {
        late_after_ns: Some(3_600_000_000_000),
        ..Default::default()
    };
    // Without late-after (import): nothing is marked.
    let restored = vec![line(1, "acme", "2026-11-19T10:00:00Z")];
    let s = audit::write_items(
        store,
        &keys,
        &items(&keys, &restored),
        WriteOptions::default(),
    )
    .expect("import");
    assert_eq!(s.written, 1);
    assert_eq!(marked(), Vec::<String>::new(), "import marks nothing");
    let lines = vec![
        line(2, "acme", "2026-11-20T10:00:00Z"),
        line(3, "acme", "2026-11-20T23:59:59.999999999Z"),
        line(4, "acme", "2026-11-21T00:00:00Z"),
        line(5, "globex", "2026-11-20T10:00:00Z"),
        line(6, "acme", &now),
    ];
    let s = audit::write_items(store, &keys, &items(&keys, &lines), late).expect("write");
    assert_eq!((s.written, s.transactions), (5, 1));
    let want = [
        "2026-11-20 acme 2",
        "2026-11-20 globex 1",
        "2026-11-21 acme 1",
    ];
    assert_eq!(marked(), want, "late new records, by day and tenant");
    // Delivered again (with the restored one): duplicates add nothing.
    let mut again = lines.clone();
    again.extend(restored);
    let s = audit::write_items(store, &keys, &items(&keys, &again), late).expect("again");
    assert_eq!((s.written, s.duplicates), (0, 6));
    assert_eq!(marked(), want, "duplicates are not late records");
    // Split into several transactions: each adds its own.
    let more: Vec<String> = (10..40)
        .map(|i| line(i, "acme", "2026-11-21T12:00:00Z"))
        .collect();
    let split = WriteOptions {
        target_txn_bytes: 4_000,
        ..late
    };
    let s = audit::write_items(store, &keys, &items(&keys, &more), split).expect("split");
    assert!(s.transactions > 1, "{s:?}");
    assert_eq!(
        marked(),
        [
            "2026-11-20 acme 2",
            "2026-11-20 globex 1",
            "2026-11-21 acme 31"
        ]
    );
    clear_keys(store, &keys);
}
