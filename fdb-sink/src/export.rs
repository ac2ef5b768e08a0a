//! Export: a tenant's audit records (optionally one user, one session, a
//! time range) as NDJSON, streaming, one read transaction per page.
//!
//! Each line is the stored record exactly as committed: a `file-event/1`
//! line with its Kubernetes fields, which `fdb-sink import` (and the ingest
//! endpoint) accept as is. Importing an export into an empty store therefore
//! reproduces the same records under the same keys.

use std::io::Write;

use serde::Serialize;

use crate::audit::after;
use crate::keys::Keys;
use crate::store::{Store, StoreError, StoreExt};

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
    out.flush()?;
    Ok(report)
}
