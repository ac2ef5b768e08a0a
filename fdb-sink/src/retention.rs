//! Retention: removes audit records older than a cutoff, with their
//! `by_path` and `by_checksum` entries, and fixes the session summaries.
//!
//! Work is cut into bounded transactions (at most `batch_records` records
//! each). Every transaction leaves the store consistent: the records it
//! removes, their index entries and the summary adjustments commit together.
//! A run that stops half-way (crash, Ctrl-C) is therefore resumed simply by
//! running again, and running twice removes nothing more (idempotent).
//!
//! Per session: `events` and the per-type counters drop by what was removed
//! (a counter that reaches zero is cleared), `first_ns` becomes the time of
//! the oldest remaining record, and a session left without records loses its
//! whole summary. A `by_checksum` entry is removed when its last-seen time is
//! older than the cutoff (no newer record shows that content there). Dead
//! letters older than the cutoff are removed too, and so are agent rows whose
//! last heartbeat, claims whose expiry, and monitor rows whose latest event
//! is older than the cutoff (every sidecar start numbers its events under a
//! new monitor, so without this the rows, and the delivery gauge's scan of
//! them, would only grow).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::audit::{self, after};
use crate::keys::{decode_i64, decode_u64, encode_u64, Keys, SessionField};
use crate::store::{Store, StoreError, StoreExt, Txn};

/// How to run retention.
#[derive(Debug, Clone, Copy)]
pub struct RetentionOptions {
    /// Records with an event time before this (ns since the epoch) go.
    pub cutoff_ns: i64,
    /// Count what would go, change nothing.
    pub dry_run: bool,
    /// Records (or dead letters) per transaction.
    pub batch_records: usize,
}

/// What a run removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Sessions holding records older than the cutoff.
    pub sessions_affected: u64,
    /// Sessions left without any record (summary removed).
    pub sessions_removed: u64,
    pub records_removed: u64,
    pub by_path_removed: u64,
    pub by_checksum_removed: u64,
    pub dead_letters_removed: u64,
    /// Agent rows whose last heartbeat is older than the cutoff.
    pub agents_removed: u64,
    /// Claims that expired before the cutoff.
    pub claims_removed: u64,
    /// Monitor rows whose latest event is older than the cutoff.
    pub monitors_removed: u64,
    pub transactions: u64,
}

/// Session summary keys scanned per read transaction.
const SCAN_PAGE: usize = 10_000;

/// Sessions whose oldest record is older than the cutoff.
fn old_sessions(
    store: &dyn Store,
    keys: &Keys,
    cutoff_ns: i64,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let all = keys.sessions_all();
    let mut begin = all.begin.clone();
    let mut out = Vec::new();
    loop {
        let rows = store.read(|t| t.get_range(&begin, &all.end, SCAN_PAGE, false))?;
        let Some((last, _)) = rows.last() else {
            return Ok(out);
        };
        begin = after(last);
        for (k, v) in &rows {
            let f = keys
                .decode_session_field(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if f.field == SessionField::FirstNs
                && i64::try_from(decode_u64(v)).unwrap_or(i64::MAX) < cutoff_ns
            {
                out.push((f.tenant, f.user, f.session));
            }
        }
    }
}

#[derive(Default)]
struct BatchOutcome {
    records: u64,
    by_path: u64,
    by_checksum: u64,
    session_removed: bool,
}

/// True when a `by_checksum` entry (its last-seen time) is older than the
/// cutoff: no newer record shows that content at that path.
fn checksum_stale(last_seen: &[u8], cutoff_u: u64) -> bool {
    decode_u64(last_seen) < cutoff_u
}

/// Removes up to `limit` old records of one session, in `txn`.
fn remove_batch(
    txn: &mut dyn Txn,
    keys: &Keys,
    (t, u, s): (&str, &str, &str),
    cutoff_ns: i64,
    limit: usize,
) -> Result<BatchOutcome, StoreError> {
    let mut out = BatchOutcome::default();
    let range = keys.audit_logs_session_between(t, u, s, i64::MIN, cutoff_ns);
    let recs = audit::records_in(txn, keys, &range, limit, false)?;
    if recs.is_empty() {
        return Ok(out);
    }
    let cutoff_u = u64::try_from(cutoff_ns).unwrap_or(0);
    let mut by_type: HashMap<String, i64> = HashMap::new();
    for r in &recs {
        txn.clear(&r.raw_key)?;
        out.records += 1;
        *by_type
            .entry(r.record.event.event_type.as_str().to_owned())
            .or_default() += 1;
        let ev = &r.record.event;
        let mut paths = vec![ev.path.as_str()];
        if let Some(from) = ev.from.as_deref().filter(|f| *f != ev.path) {
            paths.push(from);
        }
        for p in &paths {
            let k = keys.by_path(t, p, r.key.ts_ns, &r.key.event_id);
            if txn.get(&k)?.is_some() {
                txn.clear(&k)?;
                out.by_path += 1;
            }
        }
        if let Some(c) = &ev.checksum {
            let k = keys.by_checksum(t, c, paths[0]);
            if txn.get(&k)?.is_some_and(|v| checksum_stale(&v, cutoff_u)) {
                txn.clear(&k)?;
                out.by_checksum += 1;
            }
        }
    }
    // Fix the summary, seeing this transaction's own deletions.
    let session = keys.audit_logs_session(t, u, s);
    let first_left = txn.get_range(&session.begin, &session.end, 1, false)?;
    match first_left.first() {
        None => {
            let sr = keys.session(t, u, s);
            txn.clear_range(&sr.begin, &sr.end)?;
            out.session_removed = true;
        }
        Some((k, _)) => {
            let first = keys
                .decode_audit_log(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            txn.atomic_add(&keys.session_events(t, u, s), -(out.records as i64))?;
            for (ty, n) in &by_type {
                let k = keys.session_type_count(t, u, s, ty);
                let have = txn.get(&k)?.map_or(0, |v| decode_i64(&v));
                if have <= *n {
                    txn.clear(&k)?;
                } else {
                    txn.atomic_add(&k, -n)?;
                }
            }
            txn.set(
                &keys.session_first_ns(t, u, s),
                &encode_u64(u64::try_from(first.ts_ns).unwrap_or(0)),
            )?;
        }
    }
    Ok(out)
}

/// Counts what retention would remove from one session (no writes).
/// `checksums` holds the `by_checksum` keys counted so far in this run: an
/// entry shared by several old records is removed once.
fn count_session(
    store: &dyn Store,
    keys: &Keys,
    (t, u, s): (&str, &str, &str),
    cutoff_ns: i64,
    limit: usize,
    report: &mut RetentionReport,
    checksums: &mut HashSet<Vec<u8>>,
) -> Result<(), StoreError> {
    let range = keys.audit_logs_session_between(t, u, s, i64::MIN, cutoff_ns);
    let cutoff_u = u64::try_from(cutoff_ns).unwrap_or(0);
    let mut begin = range.begin.clone();
    loop {
        let r = crate::keys::KeyRange {
            begin: begin.clone(),
            end: range.end.clone(),
        };
        let (recs, stale) = store.read(|txn| {
            let recs = audit::records_in(txn, keys, &r, limit, false)?;
            // The entries the removal would clear: last seen before the cutoff.
            let mut stale = Vec::new();
            for r in &recs {
                let Some(c) = &r.record.event.checksum else {
                    continue;
                };
                let k = keys.by_checksum(t, c, &r.record.event.path);
                if txn.get(&k)?.is_some_and(|v| checksum_stale(&v, cutoff_u)) {
                    stale.push(k);
                }
            }
            Ok((recs, stale))
        })?;
        let Some(last) = recs.last() else { break };
        begin = after(&last.raw_key);
        for r in &recs {
            report.records_removed += 1;
            let ev = &r.record.event;
            report.by_path_removed +=
                1 + u64::from(ev.from.as_ref().is_some_and(|f| *f != ev.path));
        }
        for k in stale {
            if checksums.insert(k) {
                report.by_checksum_removed += 1;
            }
        }
    }
    let session = keys.audit_logs_session(t, u, s);
    let newer = store.read(|txn| {
        txn.get_range(&range.end, &session.end, 1, false)
            .map(|v| !v.is_empty())
    })?;
    if !newer {
        report.sessions_removed += 1;
    }
    Ok(())
}

/// Runs retention once. `progress` is called after every transaction.
pub fn run(
    store: &dyn Store,
    keys: &Keys,
    opts: RetentionOptions,
    progress: &mut dyn FnMut(&RetentionReport),
) -> Result<RetentionReport, StoreError> {
    let limit = opts.batch_records.max(1);
    let mut report = RetentionReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut checksums = HashSet::new();
    for (t, u, s) in old_sessions(store, keys, opts.cutoff_ns)? {
        report.sessions_affected += 1;
        let id = (t.as_str(), u.as_str(), s.as_str());
        if opts.dry_run {
            count_session(
                store,
                keys,
                id,
                opts.cutoff_ns,
                limit,
                &mut report,
                &mut checksums,
            )?;
            progress(&report);
            continue;
        }
        loop {
            let b = store.transact(|txn| remove_batch(txn, keys, id, opts.cutoff_ns, limit))?;
            if b.records == 0 {
                break;
            }
            report.transactions += 1;
            report.records_removed += b.records;
            report.by_path_removed += b.by_path;
            report.by_checksum_removed += b.by_checksum;
            report.sessions_removed += u64::from(b.session_removed);
            progress(&report);
        }
    }
    // Dead letters.
    let dl = keys.dead_letter_between(i64::MIN, opts.cutoff_ns);
    let mut begin = dl.begin.clone();
    loop {
        let rows = store.read(|t| t.get_range(&begin, &dl.end, limit, false))?;
        let Some((last, _)) = rows.last() else { break };
        let end = after(last);
        if !opts.dry_run {
            let b = begin.clone();
            store.transact(|txn| txn.clear_range(&b, &end))?;
            report.transactions += 1;
        }
        report.dead_letters_removed += rows.len() as u64;
        begin = end;
        progress(&report);
    }
    // Agent rows and claims long past their heartbeat or expiry.
    for (range, what) in [(keys.agents_all(), "agent"), (keys.claims_all(), "claim")] {
        let mut begin = range.begin.clone();
        loop {
            let rows = store.read(|t| t.get_range(&begin, &range.end, limit, false))?;
            let Some((last, _)) = rows.last() else { break };
            begin = after(last);
            let stale: Vec<Vec<u8>> = rows
                .into_iter()
                .filter(|(_, v)| stale_row(what, v, opts.cutoff_ns))
                .map(|(k, _)| k)
                .collect();
            if stale.is_empty() {
                continue;
            }
            let n = stale.len() as u64;
            if !opts.dry_run {
                store.transact(|txn| {
                    for k in &stale {
                        txn.clear(k)?;
                    }
                    Ok(())
                })?;
                report.transactions += 1;
            }
            if what == "agent" {
                report.agents_removed += n;
            } else {
                report.claims_removed += n;
            }
            progress(&report);
        }
    }
    // Monitor rows of monitors silent since before the cutoff (rows written
    // before `last_ns` was kept have none and stay).
    let cutoff_u = u64::try_from(opts.cutoff_ns).unwrap_or(0);
    let mut stale = Vec::new();
    audit::each_monitor(store, keys, &mut |m| {
        if m.last_ns > 0 && m.last_ns < cutoff_u {
            stale.push(m.monitor_id);
        }
    })?;
    for chunk in stale.chunks(limit) {
        if !opts.dry_run {
            let removed = store.transact(|txn| {
                let mut removed = 0;
                for id in chunk {
                    // Read again in this transaction: a monitor that has
                    // just sent an event keeps its row (and on FoundationDB
                    // the read makes a concurrent ingest conflict).
                    let last = txn.get(&keys.monitor_last_ns(id))?;
                    if last.is_some_and(|v| decode_u64(&v) < cutoff_u) {
                        let r = keys.monitor(id);
                        txn.clear_range(&r.begin, &r.end)?;
                        removed += 1;
                    }
                }
                Ok(removed)
            })?;
            report.transactions += 1;
            report.monitors_removed += removed;
        } else {
            report.monitors_removed += chunk.len() as u64;
        }
        progress(&report);
    }
    Ok(report)
}

/// True when an agent's last heartbeat, or a claim's expiry, is older than
/// the cutoff (unreadable rows are left alone).
fn stale_row(what: &str, value: &[u8], cutoff_ns: i64) -> bool {
    #[derive(serde::Deserialize)]
    struct Times {
        received_ns: Option<i64>,
        expires_ns: Option<i64>,
    }
    let Ok(t) = serde_json::from_slice::<Times>(value) else {
        return false;
    };
    let at = if what == "agent" {
        t.received_ns
    } else {
        t.expires_ns
    };
    at.is_some_and(|ns| ns < cutoff_ns)
}

/// The retention loop inside `serve`: once at start, then every `every`.
pub async fn periodic(
    store: Arc<dyn Store>,
    keys: Keys,
    older_than: Duration,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let s = store.clone();
        let k = keys.clone();
        let r = tokio::task::spawn_blocking(move || {
            let opts = RetentionOptions {
                cutoff_ns: crate::timespec::ns_ago(older_than),
                dry_run: false,
                batch_records: 500,
            };
            run(s.as_ref(), &k, opts, &mut |_| {})
        })
        .await;
        match r {
            Ok(Ok(rep)) => tracing::info!(
                sessions_affected = rep.sessions_affected,
                sessions_removed = rep.sessions_removed,
                records_removed = rep.records_removed,
                by_path_removed = rep.by_path_removed,
                by_checksum_removed = rep.by_checksum_removed,
                dead_letters_removed = rep.dead_letters_removed,
                agents_removed = rep.agents_removed,
                claims_removed = rep.claims_removed,
                monitors_removed = rep.monitors_removed,
                transactions = rep.transactions,
                "retention run finished"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention run failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn line(ts: &str, session: &str, path: &str, checksum: &str) -> Vec<u8> {
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": "0190b5a0-0000-7000-8000-000000000001",
            "seq": 1,
            "timestamp": ts,
            "event_type": "update",
            "kind": "file",
            "path": path,
            "checksum": checksum,
            "tenant_id": "t",
            "user_id": "u",
            "session_id": session,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn removes_old_records_their_indexes_and_fixes_summaries() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let cs = format!("sha256:{:064x}", 1);
        let lines = [
            line("2020-01-01T00:00:00Z", "old", "a", &cs),
            line("2020-01-02T00:00:00Z", "mixed", "b", &cs),
            line("2020-01-03T00:00:00Z", "mixed", "b", &cs),
            line("2026-01-01T00:00:00Z", "mixed", "c", &cs),
        ];
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l, 0))
            .collect();
        audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let cutoff = crate::timespec::parse_time_ns("2025-01-01T00:00:00Z").expect("t");
        let opts = RetentionOptions {
            cutoff_ns: cutoff,
            dry_run: true,
            batch_records: 1,
        };
        let dry = run(&store, &keys, opts, &mut |_| {}).expect("dry");
        assert_eq!((dry.records_removed, dry.sessions_removed), (3, 1));
        let wet = run(
            &store,
            &keys,
            RetentionOptions {
                dry_run: false,
                ..opts
            },
            &mut |_| {},
        )
        .expect("run");
        assert_eq!(
            (
                wet.records_removed,
                wet.sessions_removed,
                wet.by_path_removed,
                wet.by_checksum_removed
            ),
            (3, 1, 3, 2)
        );
        assert_eq!(wet.transactions, 3, "one record per transaction");
        let (sessions, paths) = store
            .read(|t| {
                Ok((
                    audit::sessions_in(t, &keys, &keys.sessions_all())?,
                    audit::checksum_paths(t, &keys, "t", &cs, 0)?,
                ))
            })
            .expect("read");
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!((s.session.as_str(), s.events), ("mixed", 1));
        assert_eq!(s.by_type.get("update"), Some(&1));
        assert_eq!(
            s.first_ns,
            crate::timespec::parse_time_ns("2026-01-01T00:00:00Z").expect("t") as u64
        );
        assert_eq!(
            paths.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        let again = run(
            &store,
            &keys,
            RetentionOptions {
                dry_run: false,
                ..opts
            },
            &mut |_| {},
        )
        .expect("again");
        assert_eq!(again.records_removed, 0, "idempotent");
    }

    #[test]
    fn removes_stale_agents_and_long_expired_claims() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let now = crate::timespec::now_ns();
        let day = 86_400_000_000_000i64;
        let v = |field: &str, ns: i64| serde_json::json!({ field: ns }).to_string();
        let rows = [
            (keys.agent("t", "old"), v("received_ns", now - 100 * day)),
            (keys.agent("t", "new"), v("received_ns", now)),
            (keys.claim("t", "a"), v("expires_ns", now - 100 * day)),
            (keys.claim("t", "b"), v("expires_ns", now + day)),
            (keys.claim("t", "c"), "not json".to_owned()),
        ];
        store
            .transact(|t| {
                for (k, v) in &rows {
                    t.set(k, v.as_bytes())?;
                }
                Ok(())
            })
            .expect("seed");
        let opts = RetentionOptions {
            cutoff_ns: now - 90 * day,
            dry_run: false,
            batch_records: 10,
        };
        let r = run(&store, &keys, opts, &mut |_| {}).expect("run");
        assert_eq!((r.agents_removed, r.claims_removed), (1, 1));
        let left = |range: crate::keys::KeyRange| {
            store
                .read(|t| t.get_range(&range.begin, &range.end, 0, false))
                .expect("read")
                .len()
        };
        assert_eq!(left(keys.agents_all()), 1);
        assert_eq!(left(keys.claims_all()), 2, "unreadable rows are left alone");
    }

    #[test]
    fn an_interrupted_run_leaves_consistent_summaries_and_resumes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let lines: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let day = if i < 15 { 1 + i % 10 } else { 5 + i };
                let ts = format!("2020-01-{day:02}T00:00:00Z");
                line(&ts, &format!("s{}", i % 3), &format!("p{i}"), "sha256:aa")
            })
            .collect();
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l, 0))
            .collect();
        let w = audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        assert_eq!((w.written, w.dead_lettered), (20, 0));
        let opts = RetentionOptions {
            cutoff_ns: crate::timespec::parse_time_ns("2020-01-15T00:00:00Z").expect("t"),
            dry_run: false,
            batch_records: 2,
        };
        // Stop (as a crash would) after the third committed transaction.
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut n = 0;
            run(&store, &keys, opts, &mut |_| {
                n += 1;
                assert!(n < 3, "interrupted");
            })
        }));
        assert!(stopped.is_err());
        let consistent = |store: &EmbeddedStore| {
            store
                .read(|t| {
                    for s in audit::sessions_in(t, &keys, &keys.sessions_all())? {
                        let recs = audit::session_records(t, &keys, "t", "u", &s.session, None, 0)?;
                        assert_eq!(s.events as usize, recs.len(), "{}", s.session);
                        assert_eq!(s.first_ns as i64, recs[0].key.ts_ns, "{}", s.session);
                    }
                    Ok(())
                })
                .expect("read");
        };
        consistent(&store);
        let rest = run(&store, &keys, opts, &mut |_| {}).expect("resume");
        // The first run removed session s0's 5 old records (2 + 2 + 1).
        assert_eq!(rest.records_removed, 10, "the second run finishes the work");
        consistent(&store);
        let old = store
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_all(), 0, false))
            .expect("read")
            .into_iter()
            .filter(|r| r.key.ts_ns < opts.cutoff_ns)
            .count();
        assert_eq!(old, 0);
    }
}
