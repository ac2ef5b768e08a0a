//! Export: a tenant's audit records (optionally one user, one session, a
//! time range) as NDJSON, streaming, one read transaction per page.
//!
//! Each record line is the stored record exactly as committed: a
//! `file-event/1` line with its Kubernetes fields, which `fdb-sink import`
//! (and the ingest endpoint) accept as is. Importing an export into an empty store therefore
//! reproduces the same records under the same keys.
//!
//! A tenant export (not narrowed to a user or session) ends with one
//! [`MonitorLine`] per monitor of the tenant: its delivery counters as
//! stored, whatever the time range, so that importing every file of a series
//! of daily exports restores them. Records removed by retention
//! leave them unchanged, so rebuilding them from the remaining records alone
//! would show those lines as lost; `import` restores them from these lines.
//!
//! Dead letters (lines the sink refused) are not a tenant's: a refused line
//! often names no valid tenant. [`export_dead_letters`] writes the store's
//! dead letters of a time range as a stream of its own, one
//! [`DeadLetterLine`] (`schema` [`DEAD_LETTER_SCHEMA`]) per stored dead
//! letter; `import` stores each back under its own key, as a dead letter,
//! never as an audit record.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::audit::{self, after};
use crate::keys::{decode_i64, KeyRange, Keys};
use crate::record::DeadLetter;
use crate::store::{limits, Store, StoreError, StoreExt};

/// `schema` of an export's monitor lines.
pub const MONITOR_SCHEMA: &str = "fdb-sink-monitor/1";

/// A monitor's delivery counters in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorLine {
    /// Always [`MONITOR_SCHEMA`].
    pub schema: String,
    pub monitor_id: String,
    pub tenant_id: String,
    /// Distinct events stored for the monitor.
    pub received: i64,
    /// Highest `seq` stored.
    pub highest_seq: u64,
    /// Time of the monitor's latest stored event (ns since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ns: Option<u64>,
}

impl MonitorLine {
    /// Reads a line that is a monitor line; `None` for anything else.
    pub fn parse(line: &[u8]) -> Option<MonitorLine> {
        memchr::memmem::find(line, MONITOR_SCHEMA.as_bytes())?;
        serde_json::from_slice::<MonitorLine>(line)
            .ok()
            .filter(|m| m.schema == MONITOR_SCHEMA)
    }
}

/// `schema` of the lines of a dead-letter export.
pub const DEAD_LETTER_SCHEMA: &str = "fdb-sink-dead-letter/1";

/// A stored dead letter in an export: the dead letter as `fdb-sink
/// dead-letters` prints it (its key time `ts_ns` and `id`, then the stored
/// value's fields), with `schema` first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterLine {
    /// Always [`DEAD_LETTER_SCHEMA`].
    pub schema: String,
    /// Key time (ns since the epoch).
    pub ts_ns: i64,
    /// Key id.
    pub id: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

impl DeadLetterLine {
    /// Reads a line that is a dead-letter line of an export; `None` for
    /// anything else (which `import` then validates as an event line). A
    /// line that says it is one but whose id is not 32 hex digits or whose
    /// value would not fit the store is not taken as one.
    pub fn parse(line: &[u8]) -> Option<DeadLetterLine> {
        memchr::memmem::find(line, DEAD_LETTER_SCHEMA.as_bytes())?;
        let mut l = serde_json::from_slice::<DeadLetterLine>(line).ok()?;
        let id_ok = l.id.len() == 32 && l.id.bytes().all(|b| b.is_ascii_hexdigit());
        if l.schema != DEAD_LETTER_SCHEMA
            || !id_ok
            || l.letter.reason.is_empty()
            || l.letter.to_json().len() > limits::MAX_VALUE_BYTES
        {
            return None;
        }
        l.letter.ts_ns = l.ts_ns;
        l.letter.id.clone_from(&l.id);
        Some(l)
    }
}

/// Which records to export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub tenant: String,
    pub user: Option<String>,
    pub session: Option<String>,
    /// Event time at or after (ns).
    pub since_ns: Option<i64>,
    /// Event time before (ns).
    pub until_ns: Option<i64>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    pub records: u64,
    /// Dead letters (dead-letter exports only).
    pub dead_letters: u64,
    /// Refused lines those dead letters hold (a group holds many).
    pub dead_letter_lines: u64,
    /// Monitor lines (whole-tenant exports only).
    pub monitors: u64,
    pub bytes: u64,
    /// Read transactions used (one per page).
    pub pages: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes matching records to `out`, `page` records per read transaction.
/// `progress` is called after each page with the totals so far.
pub fn export(
    store: &dyn Store,
    keys: &Keys,
    filter: &ExportFilter,
    out: &mut dyn Write,
    page: usize,
    progress: &mut dyn FnMut(&ExportReport),
) -> Result<ExportReport, ExportError> {
    let range = match (&filter.user, &filter.session) {
        (Some(u), Some(s)) => keys.audit_logs_session_between(
            &filter.tenant,
            u,
            s,
            filter.since_ns.unwrap_or(i64::MIN),
            filter.until_ns.unwrap_or(i64::MAX),
        ),
        (Some(u), None) => keys.audit_logs_user(&filter.tenant, u),
        (None, _) => keys.audit_logs_tenant(&filter.tenant),
    };
    let mut report = ExportReport::default();
    let mut begin = range.begin.clone();
    loop {
        let rows = store.read(|t| t.get_range(&begin, &range.end, page.max(1), false))?;
        let Some((last, _)) = rows.last() else { break };
        begin = after(last);
        report.pages += 1;
        for (k, v) in &rows {
            let key = keys
                .decode_audit_log(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if filter.session.as_ref().is_some_and(|s| *s != key.session)
                || filter.since_ns.is_some_and(|t| key.ts_ns < t)
                || filter.until_ns.is_some_and(|t| key.ts_ns >= t)
            {
                continue;
            }
            out.write_all(v)?;
            out.write_all(b"\n")?;
            report.records += 1;
            report.bytes += v.len() as u64 + 1;
        }
        progress(&report);
    }
    if filter.user.is_none() && filter.session.is_none() {
        let mut lines = Vec::new();
        crate::audit::each_monitor(store, keys, &mut |m| {
            if m.tenant == filter.tenant {
                lines.push(MonitorLine {
                    schema: MONITOR_SCHEMA.to_owned(),
                    monitor_id: m.monitor_id,
                    tenant_id: m.tenant,
                    received: m.received,
                    highest_seq: m.max_seq,
                    last_ns: (m.last_ns > 0).then_some(m.last_ns),
                });
            }
        })?;
        for line in lines {
            let v = serde_json::to_vec(&line).map_err(|e| StoreError::Internal(e.to_string()))?;
            out.write_all(&v)?;
            out.write_all(b"\n")?;
            report.monitors += 1;
            report.bytes += v.len() as u64 + 1;
        }
    }
    out.flush()?;
    Ok(report)
}

/// Writes the store's dead letters that the sink received in
/// `[since_ns, until_ns)` (all when `None`), in key order, one
/// [`DeadLetterLine`] each, `page` per read transaction.
///
/// The receipt time, not the key time, selects them: a refused line keyed by
/// its own timestamp (which may be days old, or forged) still lands in the
/// export of the day it arrived, and each dead letter in exactly one of a
/// series of consecutive ranges. Every stored dead letter is read to find
/// them. One whose receipt time cannot be read is exported whatever the
/// range, so that none is left out.
pub fn export_dead_letters(
    store: &dyn Store,
    keys: &Keys,
    since_ns: Option<i64>,
    until_ns: Option<i64>,
    out: &mut dyn Write,
    page: usize,
    progress: &mut dyn FnMut(&ExportReport),
) -> Result<ExportReport, ExportError> {
    let range = keys.dead_letter_all();
    let mut report = ExportReport::default();
    let mut begin = range.begin.clone();
    loop {
        let window = KeyRange {
            begin: begin.clone(),
            end: range.end.clone(),
        };
        let rows = store.read(|t| audit::dead_letters_in(t, keys, &window, page.max(1)))?;
        let Some(last) = rows.last() else { break };
        begin = after(&keys.dead_letter(last.ts_ns, &last.id));
        report.pages += 1;
        for row in rows {
            let received = crate::timespec::parse_time_ns(&row.letter.received_at).ok();
            if received.is_some_and(|t| {
                since_ns.is_some_and(|s| t < s) || until_ns.is_some_and(|u| t >= u)
            }) {
                continue;
            }
            if received.is_none() {
                tracing::warn!(
                    ts_ns = row.ts_ns,
                    id = %row.id,
                    received_at = %row.letter.received_at,
                    "dead letter with an unreadable receipt time; exported whatever the range"
                );
            }
            let lines = row.letter.line_count();
            let line = DeadLetterLine {
                schema: DEAD_LETTER_SCHEMA.to_owned(),
                ts_ns: row.ts_ns,
                id: row.id,
                letter: row.letter,
            };
            let v = serde_json::to_vec(&line).map_err(|e| StoreError::Internal(e.to_string()))?;
            out.write_all(&v)?;
            out.write_all(b"\n")?;
            report.dead_letters += 1;
            report.dead_letter_lines += lines;
            report.bytes += v.len() as u64 + 1;
        }
        progress(&report);
    }
    out.flush()?;
    Ok(report)
}

/// What [`restore_dead_letters`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RestoredDeadLetters {
    /// Dead letters stored.
    pub restored: u64,
    /// Dead letters already stored under the same key (imported before).
    pub present: u64,
    /// Transactions they were stored in.
    pub transactions: u64,
}

/// Stores the dead letters of a dead-letter export under their own keys,
/// each with the value it had, unless the key is already stored (so
/// importing twice changes nothing). Transactions hold about
/// [`limits::TARGET_TXN_BYTES`] of values each (a dead letter's is up to
/// 100 kB), and one that FoundationDB still finds too large is split in two.
pub fn restore_dead_letters(
    store: &dyn Store,
    keys: &Keys,
    lines: &[DeadLetterLine],
) -> Result<RestoredDeadLetters, StoreError> {
    let values: Vec<(Vec<u8>, Vec<u8>)> = lines
        .iter()
        .map(|l| (keys.dead_letter(l.ts_ns, &l.id), l.letter.to_json()))
        .collect();
    let mut total = RestoredDeadLetters::default();
    let mut start = 0;
    while start < values.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < values.len() && (end == start || bytes < limits::TARGET_TXN_BYTES) {
            bytes += values[end].0.len() + values[end].1.len();
            end += 1;
        }
        let r = restore_split(store, &values[start..end])?;
        total.restored += r.restored;
        total.present += r.present;
        total.transactions += r.transactions;
        start = end;
    }
    Ok(total)
}

fn restore_split(
    store: &dyn Store,
    chunk: &[(Vec<u8>, Vec<u8>)],
) -> Result<RestoredDeadLetters, StoreError> {
    let r = store.transact(|txn| {
        let mut r = RestoredDeadLetters {
            transactions: 1,
            ..Default::default()
        };
        for (k, v) in chunk {
            if txn.insert_new(k, v)? {
                r.restored += 1;
            } else {
                r.present += 1;
            }
        }
        Ok(r)
    });
    match r {
        Err(e) if e.transaction_too_large() && chunk.len() > 1 => {
            let (a, b) = chunk.split_at(chunk.len() / 2);
            let mut r = restore_split(store, a)?;
            let s = restore_split(store, b)?;
            r.restored += s.restored;
            r.present += s.present;
            r.transactions += s.transactions;
            Ok(r)
        }
        r => r,
    }
}

/// Restores monitor counters from an export, after its records were
/// imported: each counter becomes at least the exported value (never less
/// than what the store already counts), so importing twice changes nothing.
/// A line of a monitor that another tenant owns in the store is not
/// restored (logged as a warning); returns how many were not.
pub fn restore_monitors(
    store: &dyn Store,
    keys: &Keys,
    lines: &[MonitorLine],
) -> Result<usize, StoreError> {
    let mut refused = 0;
    for chunk in lines.chunks(1000) {
        let mut in_chunk = 0;
        store.transact(|txn| {
            in_chunk = 0;
            for m in chunk {
                // A monitor belongs to the first tenant that stored an event
                // of it: another tenant's line does not take it over.
                let owner_key = keys.monitor_tenant(&m.monitor_id);
                if let Some(owner) = txn.get(&owner_key)? {
                    if owner[..] != *m.tenant_id.as_bytes() {
                        tracing::warn!(
                            monitor_id = %m.monitor_id,
                            owner = %String::from_utf8_lossy(&owner),
                            tenant = %m.tenant_id,
                            "a monitor line of the import names a monitor of another tenant: not restored"
                        );
                        in_chunk += 1;
                        continue;
                    }
                } else {
                    txn.set(&owner_key, m.tenant_id.as_bytes())?;
                }
                let k = keys.monitor_received(&m.monitor_id);
                let have = txn.get(&k)?.map_or(0, |v| decode_i64(&v));
                if m.received > have {
                    txn.atomic_add(&k, m.received - have)?;
                }
                txn.atomic_max(&keys.monitor_max_seq(&m.monitor_id), m.highest_seq)?;
                if let Some(t) = m.last_ns {
                    txn.atomic_max(&keys.monitor_last_ns(&m.monitor_id), t)?;
                }
            }
            Ok(())
        })?;
        refused += in_chunk;
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter {
        crate::record::dead_letter(b"\xffnot json", "invalid_utf8", "d".into(), Some(7), 7)
    }

    /// A dead-letter line as the export writes it; with `id`, that id instead.
    fn line(id: &str) -> Vec<u8> {
        let letter = letter();
        let l = DeadLetterLine {
            schema: DEAD_LETTER_SCHEMA.to_owned(),
            ts_ns: 7,
            id: if id.is_empty() {
                letter.id.clone()
            } else {
                id.to_owned()
            },
            letter,
        };
        serde_json::to_vec(&l).expect("json")
    }

    #[test]
    fn a_dead_letter_line_reads_back_with_its_key_and_the_same_value() {
        let bytes = line("");
        let parsed = DeadLetterLine::parse(&bytes).expect("a dead-letter line");
        assert_eq!(parsed.ts_ns, 7);
        assert_eq!(parsed.letter.id, parsed.id);
        assert_eq!(
            parsed.letter.raw_bytes().as_deref(),
            Some(&b"\xffnot json"[..])
        );
        assert_eq!(
            parsed.letter.to_json(),
            letter().to_json(),
            "the same stored value"
        );
        assert_eq!(serde_json::to_vec(&parsed).expect("json"), bytes);
    }

    /// Dead letters of up to 100 kB each are restored in transactions of
    /// about 1 MB, not 500 at a time (up to 50 MB, five times what
    /// FoundationDB takes), and a second import stores nothing.
    #[test]
    fn large_dead_letters_are_restored_in_transactions_of_about_a_megabyte() {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let lines: Vec<DeadLetterLine> = (0..300)
            .map(|i| {
                let raw = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(70_000));
                let letter = crate::record::dead_letter(
                    raw.as_bytes(),
                    "invalid_json",
                    "d".into(),
                    Some(1_000 + i),
                    1_000 + i,
                );
                DeadLetterLine {
                    schema: DEAD_LETTER_SCHEMA.to_owned(),
                    ts_ns: letter.ts_ns,
                    id: letter.id.clone(),
                    letter,
                }
            })
            .collect();
        let r = restore_dead_letters(&store, &keys, &lines).expect("restore");
        assert_eq!((r.restored, r.present), (300, 0));
        // 300 × 70 kB = 21 MB: at least 19 transactions of at most ~1.07 MB.
        assert!(r.transactions >= 19, "{r:?}");
        let again = restore_dead_letters(&store, &keys, &lines).expect("again");
        assert_eq!((again.restored, again.present), (0, 300));
    }

    #[test]
    fn lines_that_are_not_dead_letter_lines_are_left_to_validation() {
        assert!(
            DeadLetterLine::parse(&line("../../etc")).is_none(),
            "bad id"
        );
        let mut other = serde_json::from_slice::<serde_json::Value>(&line("")).expect("json");
        other["schema"] = "file-event/1".into();
        other["path"] = DEAD_LETTER_SCHEMA.into();
        assert!(DeadLetterLine::parse(&serde_json::to_vec(&other).expect("json")).is_none());
        let monitor = br#"{"schema":"fdb-sink-monitor/1","monitor_id":"m","tenant_id":"t","received":1,"highest_seq":1}"#;
        assert!(DeadLetterLine::parse(monitor).is_none());
        assert!(MonitorLine::parse(&line("")).is_none());
    }
}
