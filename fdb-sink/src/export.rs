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

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::audit::after;
use crate::keys::{decode_i64, Keys};
use crate::store::{Store, StoreError, StoreExt};

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

/// Restores monitor counters from an export, after its records were
/// imported: each counter becomes at least the exported value (never less
/// than what the store already counts), so importing twice changes nothing.
pub fn restore_monitors(
    store: &dyn Store,
    keys: &Keys,
    lines: &[MonitorLine],
) -> Result<(), StoreError> {
    for chunk in lines.chunks(1000) {
        store.transact(|txn| {
            for m in chunk {
                let k = keys.monitor_received(&m.monitor_id);
                let have = txn.get(&k)?.map_or(0, |v| decode_i64(&v));
                if m.received > have {
                    txn.atomic_add(&k, m.received - have)?;
                }
                txn.atomic_max(&keys.monitor_max_seq(&m.monitor_id), m.highest_seq)?;
                if let Some(t) = m.last_ns {
                    txn.atomic_max(&keys.monitor_last_ns(&m.monitor_id), t)?;
                }
                txn.set(&keys.monitor_tenant(&m.monitor_id), m.tenant_id.as_bytes())?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
