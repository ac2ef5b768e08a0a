//! Audit record queries: a session's records, or a user's (or, for admins,
//! the tenant's) records in a time range; time-ordered, filtered, paginated.
//!
//! Order: by event time, then event id (then user and session, which only
//! break ties between identical ids). A cursor is the key of the last record
//! a page looked at; the next page starts strictly after it, so records that
//! arrive while a client pages appear on a later page exactly once, as long
//! as their time is after the cursor's. (A record delivered late with an
//! older time than the cursor is not revisited; re-query with `start`.)

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::cursor::{Cursors, Sealer};
use super::{sse, ApiError, ApiState};
use crate::audit::{self, StoredRecord};
use crate::keys::{AuditLogKey, Keys};
use crate::record::AuditRecord;
use crate::store::{RangeReq, ReadTxn, StoreError};
use crate::timespec::parse_time_ns;

/// Records per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page; a larger `limit` is capped to it.
pub const MAX_LIMIT: usize = 1000;
/// Records a single request examines at most (filters may reject many).
pub const MAX_SCAN: usize = 20_000;

/// Query parameters of both log routes.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Whose records (defaults to the caller; role `user` may not name another).
    pub user_id: Option<String>,
    /// Earliest event time, RFC 3339, inclusive.
    pub start: Option<String>,
    /// Latest event time, RFC 3339, exclusive.
    pub end: Option<String>,
    /// Comma-separated event types to keep.
    pub event_type: Option<String>,
    /// Keep records whose path (or move source) starts with this.
    pub path_prefix: Option<String>,
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Stream records as Server-Sent Events, new ones as they arrive.
    #[serde(default)]
    pub follow: bool,
}

/// Which records a query reads.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: String,
    /// `None`: every user of the tenant (admins only).
    pub user: Option<String>,
    /// `None`: every session of the user(s).
    pub session: Option<String>,
    /// The query's filters as its cursors are sealed for them
    /// ([`Filter::cursor_part`]), so that a cursor is taken back only with
    /// the filters it was given with.
    pub filter_part: String,
}

/// Which of the scope's records a query keeps.
#[derive(Debug, Clone)]
pub struct Filter {
    pub start_ns: i64,
    pub end_ns: i64,
    pub event_types: Option<Vec<String>>,
    pub path_prefix: Option<String>,
}

impl Filter {
    pub fn from_params(p: &LogParams) -> Result<Self, ApiError> {
        let t = |s: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
            s.as_deref()
                .map(|v| {
                    parse_time_ns(v).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
                })
                .transpose()
        };
        let start_ns = t(&p.start, "start")?.unwrap_or(i64::MIN);
        let end_ns = t(&p.end, "end")?.unwrap_or(i64::MAX);
        if start_ns > end_ns {
            return Err(ApiError::bad_request("start is after end"));
        }
        let event_types = match p.event_type.as_deref() {
            None | Some("") => None,
            Some(list) => {
                let types: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                for ty in &types {
                    if !file_event::EventType::ALL.iter().any(|e| e.as_str() == ty) {
                        return Err(ApiError::bad_request(format!(
                            "unknown event_type {}: expected create, update, delete, move or access",
                            super::error::shown(ty)
                        )));
                    }
                }
                Some(types)
            }
        };
        Ok(Filter {
            start_ns,
            end_ns,
            event_types,
            path_prefix: p.path_prefix.clone().filter(|s| !s.is_empty()),
        })
    }

    /// The filters as cursors are sealed for them: the time range, the
    /// event types (in any order) and the path prefix. JSON, so that no text
    /// of a parameter can pass for another.
    pub fn cursor_part(&self) -> String {
        let types = self.event_types.as_ref().map(|t| {
            let mut t = t.clone();
            t.sort();
            t.dedup();
            t
        });
        serde_json::json!([self.start_ns, self.end_ns, types, self.path_prefix]).to_string()
    }

    pub fn matches(&self, r: &AuditRecord) -> bool {
        if let Some(types) = &self.event_types {
            if !types.iter().any(|t| t == r.event.event_type.as_str()) {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            let from_matches = r
                .event
                .from
                .as_deref()
                .is_some_and(|f| f.starts_with(prefix.as_str()));
            if !(r.event.path.starts_with(prefix.as_str()) || from_matches) {
                return false;
            }
        }
        true
    }
}

/// A page of records.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub records: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The query a records cursor is sealed for (see [`super::cursor`]): the
/// scope and the filters, so that a cursor is only taken back by the same
/// listing.
pub fn cursor_query(scope: &Scope) -> String {
    super::cursor::query(
        "logs/2",
        &[
            Some(&scope.tenant),
            scope.user.as_deref(),
            scope.session.as_deref(),
            Some(&scope.filter_part),
        ],
    )
}

/// What the cursors of an earlier release were sealed for: the scope only.
fn legacy_cursor_query(scope: &Scope) -> String {
    super::cursor::query(
        "logs",
        &[
            Some(&scope.tenant),
            scope.user.as_deref(),
            scope.session.as_deref(),
        ],
    )
}

/// Opens a cursor and checks that it lies in `scope`.
pub fn decode_cursor(
    sealer: &Sealer,
    keys: &Keys,
    scope: &Scope,
    cursor: &str,
) -> Result<AuditLogKey, ApiError> {
    let bad = || ApiError::BadCursor("cursor was not produced by this query".into());
    let raw = match sealer.open(&cursor_query(scope), cursor) {
        Ok(raw) => raw,
        // The cursors of earlier releases, still taken here so that pages
        // and follow streams (Last-Event-ID) continue across an upgrade:
        // sealed for the scope alone, or a plain record key (before
        // cursors were sealed). They name a position in the caller's own
        // scope (checked below), nothing else.
        Err(e) => match sealer.open(&legacy_cursor_query(scope), cursor) {
            Ok(raw) => raw,
            Err(_) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor.trim())
                .ok()
                .filter(|raw| keys.decode_audit_log(raw).is_ok())
                .ok_or(e)?,
        },
    };
    let key = keys.decode_audit_log(&raw).map_err(|_| bad())?;
    let in_scope = key.tenant == scope.tenant
        && scope.user.as_ref().is_none_or(|u| *u == key.user)
        && scope.session.as_ref().is_none_or(|s| *s == key.session);
    if in_scope {
        Ok(key)
    } else {
        Err(bad())
    }
}

/// The position of a record in the query order.
fn position(k: &AuditLogKey) -> (i64, &str, &str, &str) {
    (k.ts_ns, &k.event_id, &k.user, &k.session)
}

/// A session of the scope, with the time of its first and last records
/// (from its summary, written in the same transactions as its records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpan {
    pub user: String,
    pub session: String,
    pub first_ns: i64,
    pub last_ns: i64,
}

/// The sessions of `scope` that may hold records in the filter's time
/// range, ordered by their first record's time.
pub fn resolve_sessions(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    scope: &Scope,
    filter: &Filter,
) -> Result<Vec<SessionSpan>, StoreError> {
    if let (Some(u), Some(s)) = (&scope.user, &scope.session) {
        // One session: its range of records is read directly.
        return Ok(vec![SessionSpan {
            user: u.clone(),
            session: s.clone(),
            first_ns: i64::MIN,
            last_ns: i64::MAX,
        }]);
    }
    let range = match &scope.user {
        Some(u) => keys.sessions_user(&scope.tenant, u),
        None => keys.sessions_tenant(&scope.tenant),
    };
    let mut spans: Vec<SessionSpan> = audit::sessions_in(txn, keys, &range)?
        .into_iter()
        .filter(|s| scope.session.as_ref().is_none_or(|want| *want == s.session))
        .filter(|s| s.events > 0)
        .map(|s| SessionSpan {
            first_ns: i64::try_from(s.first_ns).unwrap_or(i64::MAX),
            last_ns: i64::try_from(s.last_ns).unwrap_or(i64::MAX),
            user: s.user,
            session: s.session,
        })
        .filter(|s| s.last_ns >= filter.start_ns && s.first_ns < filter.end_ns)
        .collect();
    spans.sort_by(|a, b| (a.first_ns, &a.user, &a.session).cmp(&(b.first_ns, &b.user, &b.session)));
    Ok(spans)
}

/// The next `n` records of the sessions strictly after `after`, in order.
///
/// A k-way merge in rounds over the sessions that can hold records after
/// the position: those whose last record is not before it. They join the
/// merge in the order of their first record's time, once the position (or
/// the records a round read) reaches that time, so that a page reads the
/// sessions it spans, not every session of the tenant (on FoundationDB each
/// read is a round trip, and a transaction lives at most 5 s). Each round
/// reads a share of `n` from every session in the merge, all sessions
/// together (one round trip however many are merged), and keeps the merged
/// records up to the smallest "last record read" among sessions that had
/// more (beyond it, such a session may hold records not read yet). Sessions
/// with nothing after the position leave the merge.
fn fetch_after(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    sessions: &[SessionSpan],
    filter: &Filter,
    after: Option<&AuditLogKey>,
    n: usize,
) -> Result<Vec<StoredRecord>, StoreError> {
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut pos = after.cloned();
    // The time the merge has reached: no record before it is wanted.
    let reached = |pos: &Option<AuditLogKey>| {
        pos.as_ref()
            .map_or(filter.start_ns, |k| k.ts_ns.max(filter.start_ns))
    };
    let mut waiting: std::collections::VecDeque<&SessionSpan> = sessions
        .iter()
        .filter(|s| s.last_ns >= reached(&pos))
        .collect();
    let mut live: Vec<&SessionSpan> = Vec::new();
    while out.len() < n {
        let want = n - out.len();
        admit(&mut waiting, &mut live, reached(&pos));
        if live.is_empty() {
            // Nothing begun by the position holds more: the sessions that
            // begin next (their first records come next).
            let Some(first) = waiting.front().map(|s| s.first_ns) else {
                break;
            };
            admit(&mut waiting, &mut live, first);
        }
        let per = (want / live.len()).max(16);
        // The ranges of the sessions in the merge, read together (one round
        // trip on FoundationDB).
        let mut ranges = Vec::new();
        for &span in &live {
            let (u, s) = (&span.user, &span.session);
            let mut range =
                keys.audit_logs_session_between(tenant, u, s, filter.start_ns, filter.end_ns);
            if let Some(c) = &pos {
                let from = keys.audit_log(tenant, u, s, c.ts_ns, &c.event_id);
                if from > range.begin {
                    range.begin = from;
                }
            }
            if range.begin < range.end {
                ranges.push((span, range));
            }
        }
        // One extra: the record equal to the position may come back.
        let reqs: Vec<RangeReq<'_>> = ranges
            .iter()
            .map(|(_, r)| RangeReq::new(&r.begin, &r.end, per + 1, false))
            .collect();
        let read = if reqs.is_empty() {
            Vec::new()
        } else {
            txn.get_ranges(&reqs)?
        };
        let mut batch = Vec::new();
        let mut bound: Option<AuditLogKey> = None;
        let mut still_live = Vec::new();
        for ((span, _), rows) in ranges.iter().zip(read) {
            let mut recs = rows
                .into_iter()
                .map(|(k, v)| stored_record(keys, k, &v))
                .collect::<Result<Vec<_>, _>>()?;
            let full = recs.len() > per;
            if let Some(c) = &pos {
                recs.retain(|r| position(&r.key) > position(c));
            }
            if full {
                if let Some(last) = recs.last() {
                    if bound
                        .as_ref()
                        .is_none_or(|b| position(&last.key) < position(b))
                    {
                        bound = Some(last.key.clone());
                    }
                }
            }
            // Nothing after the position: nothing later either (the
            // position only grows). Otherwise read it again next round,
            // as the bound may have left some of its records out.
            if !recs.is_empty() {
                still_live.push(*span);
            }
            batch.extend(recs);
        }
        batch.sort_by(|a, b| position(&a.key).cmp(&position(&b.key)));
        if let Some(b) = &bound {
            batch.retain(|r| position(&r.key) <= position(b));
        }
        batch.truncate(want);
        live = still_live;
        let Some(last_ns) = batch.last().map(|r| r.key.ts_ns) else {
            continue;
        };
        // Sessions that begin by the last record kept may hold records
        // among them: the records before the first of them are final; the
        // sessions join the merge for the next round.
        if let Some(next_first) = waiting.front().map(|s| s.first_ns) {
            if next_first <= last_ns {
                batch.retain(|r| r.key.ts_ns < next_first);
                admit(&mut waiting, &mut live, last_ns);
            }
        }
        if let Some(last) = batch.last() {
            pos = Some(last.key.clone());
        }
        out.extend(batch);
    }
    Ok(out)
}

/// A stored record from its key and value, as [`audit::records_in`] reads
/// it.
fn stored_record(keys: &Keys, raw_key: Vec<u8>, value: &[u8]) -> Result<StoredRecord, StoreError> {
    let key = keys
        .decode_audit_log(&raw_key)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let record = AuditRecord::from_json(value).map_err(|e| {
        StoreError::Corrupt(format!("record {}: {e}", crate::keys::printable(&raw_key)))
    })?;
    Ok(StoredRecord {
        key,
        record,
        raw_key,
    })
}

/// Moves the waiting sessions whose first record is at or before `ns` into
/// the merge (`waiting` is ordered by first record).
fn admit<'a>(
    waiting: &mut std::collections::VecDeque<&'a SessionSpan>,
    live: &mut Vec<&'a SessionSpan>,
    ns: i64,
) {
    while let Some(s) = waiting.front().copied().filter(|s| s.first_ns <= ns) {
        waiting.pop_front();
        live.push(s);
    }
}

/// What [`page`] found.
#[derive(Debug, Default)]
pub struct PageResult {
    /// Matching records, in order.
    pub records: Vec<StoredRecord>,
    /// The cursor to continue from; `None` when nothing more is stored now.
    pub next_cursor: Option<Vec<u8>>,
    /// The last record examined, matching or not (where a poll resumes).
    pub last_examined: Option<AuditLogKey>,
}

/// One page: up to `limit` matching records after `after`.
pub fn page(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    scope: &Scope,
    filter: &Filter,
    after: Option<&AuditLogKey>,
    limit: usize,
) -> Result<PageResult, StoreError> {
    let sessions = resolve_sessions(txn, keys, scope, filter)?;
    let mut out = Vec::new();
    let mut pos = after.cloned();
    let mut last_raw: Option<Vec<u8>> = None;
    let mut scanned = 0usize;
    let chunk = limit.clamp(100, MAX_LIMIT);
    loop {
        let recs = fetch_after(
            txn,
            keys,
            &scope.tenant,
            &sessions,
            filter,
            pos.as_ref(),
            chunk,
        )?;
        if recs.is_empty() {
            return Ok(PageResult {
                records: out,
                next_cursor: None,
                last_examined: pos,
            });
        }
        for r in recs {
            scanned += 1;
            pos = Some(r.key.clone());
            last_raw = Some(r.raw_key.clone());
            if filter.matches(&r.record) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        if out.len() >= limit || scanned >= MAX_SCAN {
            let more = !fetch_after(txn, keys, &scope.tenant, &sessions, filter, pos.as_ref(), 1)?
                .is_empty();
            return Ok(PageResult {
                records: out,
                next_cursor: if more { last_raw } else { None },
                last_examined: pos,
            });
        }
    }
}

/// True when the scope's session has records (under the scope's user, or
/// under any user of the tenant when the scope names none).
fn session_exists(txn: &mut dyn ReadTxn, keys: &Keys, scope: &Scope) -> Result<bool, StoreError> {
    let Some(session) = &scope.session else {
        return Ok(true);
    };
    match &scope.user {
        Some(u) => Ok(
            audit::session_summary(txn, keys, &scope.tenant, u, session)?
                .is_some_and(|s| s.events > 0),
        ),
        None => {
            let all = Filter {
                start_ns: i64::MIN,
                end_ns: i64::MAX,
                event_types: None,
                path_prefix: None,
            };
            Ok(!resolve_sessions(txn, keys, scope, &all)?.is_empty())
        }
    }
}

/// A record as the API shows it: the stored record itself (a `file-event/1`
/// line with its Kubernetes fields), its fields in the order of the wire
/// format and of `export` (`schema` first).
pub fn record_json(r: &StoredRecord) -> &crate::record::AuditRecord {
    &r.record
}

/// Runs a page or a follow stream for `scope`.
async fn respond(
    state: Arc<ApiState>,
    scope: Scope,
    params: LogParams,
    headers: &HeaderMap,
    must_exist: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::from_params(&params)?;
    let scope = Scope {
        filter_part: filter.cursor_part(),
        ..scope
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    if limit == 0 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    // SSE clients reconnect with Last-Event-ID, which is a cursor. An
    // empty one, like an empty `cursor=`, is the start.
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|_| params.follow);
    let sealer = Cursors::sealer(&state).await?;
    let after = super::cursor::given(last_event_id)
        .or(super::cursor::given(params.cursor.as_deref()))
        .map(|c| decode_cursor(&sealer, &state.keys, &scope, c))
        .transpose()?;
    if params.follow {
        let slot = state.streams.acquire(&scope.tenant)?;
        return Ok(sse::follow(slot, state, sealer, scope, filter, after).into_response());
    }
    let query = cursor_query(&scope);
    let s = scope.clone();
    let (recs, next, exists) = state
        .blocking(move |store, keys| {
            Ok(crate::store::StoreExt::read(store, |txn| {
                let exists = !must_exist || session_exists(txn, keys, &s)?;
                let p = page(txn, keys, &s, &filter, after.as_ref(), limit)?;
                let (recs, next) = (p.records, p.next_cursor);
                Ok((recs, next, exists))
            })?)
        })
        .await?;
    if !exists {
        return Err(ApiError::NotFound(format!(
            "session {:?} not found",
            scope.session.unwrap_or_default()
        )));
    }
    Ok(Json(Page {
        records: recs.iter().map(record_json).collect(),
        next_cursor: next.map(|k| sealer.seal(&query, &k)).transpose()?,
    })
    .into_response())
}

/// `GET /api/v5/agents/{session_id}/logs`.
pub async fn session_logs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    session: Result<Path<String>, PathRejection>,
    params: Result<Query<LogParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(session) = session?;
    if !crate::record::valid_id(&session) {
        return Err(ApiError::bad_request(
            "the session id in the path is not a valid id (1-128 characters of A-Z a-z 0-9 . _ : @ -)",
        ));
    }
    let Query(params) = params?;
    let user = caller.user_scope(params.user_id.as_deref())?;
    let scope = Scope {
        tenant: caller.tenant.clone(),
        user,
        session: Some(session),
        filter_part: String::new(),
    };
    respond(state, scope, params, &headers, true).await
}

/// `GET /api/v5/agents/logs?user_id=&start=&end=`.
pub async fn user_logs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<LogParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let user = caller.user_scope(params.user_id.as_deref())?;
    let scope = Scope {
        tenant: caller.tenant.clone(),
        user,
        session: None,
        filter_part: String::new(),
    };
    respond(state, scope, params, &headers, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoreExt;

    /// Validates `lines` and writes them in one call.
    fn write_lines(store: &EmbeddedStore, keys: &Keys, lines: &[String]) {
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(store, keys, &items, Default::default()).expect("write");
    }

    /// No time, type or path restriction.
    fn all_time() -> Filter {
        Filter {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            event_types: None,
            path_prefix: None,
        }
    }

    /// Paging through skewed sessions with any page size yields exactly the
    /// records in (time, id) order.
    #[test]
    fn pages_merge_sessions_in_order_for_any_page_size() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        // s-a: 300 early records; s-b: 40 spread out; s-c: 5 late; s-d: ties with s-a.
        let mut lines = Vec::new();
        let mut add = |session: &str, secs: u64| {
            lines.push(
                serde_json::json!({
                    "schema": "file-event/1",
                    "event_id": uuid::Uuid::now_v7().to_string(),
                    "monitor_id": "0190b5a0-0000-7000-8000-000000000001",
                    "seq": lines.len() + 1,
                    "timestamp": format!("2026-11-26T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60),
                    "event_type": "update", "kind": "file", "path": "p",
                    "tenant_id": "t", "user_id": "u", "session_id": session,
                })
                .to_string(),
            );
        };
        for i in 0..300 {
            add("s-a", i);
        }
        for i in 0..40 {
            add("s-b", i * 97);
        }
        for i in 0..5 {
            add("s-c", 50_000 + i);
        }
        for i in 0..20 {
            add("s-d", i * 3);
        }
        write_lines(&store, &keys, &lines);
        let mut want = store
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_user("t", "u"), 0, false))
            .expect("read");
        want.sort_by(|a, b| position(&a.key).cmp(&position(&b.key)));
        let want: Vec<String> = want.into_iter().map(|r| r.key.event_id).collect();
        assert_eq!(want.len(), 365);
        let scope = Scope {
            tenant: "t".into(),
            user: Some("u".into()),
            session: None,
            filter_part: String::new(),
        };
        let filter = all_time();
        for limit in [1, 7, 16, 50, 333, 1000] {
            let mut got = Vec::new();
            let mut after: Option<AuditLogKey> = None;
            loop {
                let p = store
                    .read(|t| page(t, &keys, &scope, &filter, after.as_ref(), limit))
                    .expect("page");
                assert!(p.records.len() <= limit);
                got.extend(p.records.iter().map(|r| r.key.event_id.clone()));
                match p.next_cursor {
                    Some(raw) => after = Some(keys.decode_audit_log(&raw).expect("cursor")),
                    None => break,
                }
            }
            assert_eq!(got, want, "limit {limit}");
        }
    }

    use crate::api::counting::CountingReads;

    /// A tenant-wide page reads the sessions it spans, not every session of
    /// the tenant, and paging (also within a time window) still yields
    /// exactly the records in order: 600 sessions of 3-7 records, one
    /// starting every 40 s and lasting up to 10 minutes (so they overlap),
    /// some with records at the same second.
    #[test]
    fn tenant_pages_read_the_sessions_they_span() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let mut lines = Vec::new();
        let mut rng = 0x2545_f491_u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for i in 0..600u64 {
            let (user, session) = (format!("u{}", i % 7), format!("s{i:04}"));
            for _ in 0..3 + next(5) {
                let secs = i * 40 + next(600);
                lines.push(event_line(
                    &user,
                    &session,
                    lines.len() + 1,
                    secs * 1_000_000_000,
                    "update",
                ));
            }
        }
        write_lines(&store, &keys, &lines);
        let mut all = store
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_tenant("t"), 0, false))
            .expect("read");
        all.sort_by(|a, b| position(&a.key).cmp(&position(&b.key)));
        let scope = Scope {
            tenant: "t".into(),
            user: None,
            session: None,
            filter_part: String::new(),
        };
        let base_ns = all[0].key.ts_ns - all[0].key.ts_ns % 86_400_000_000_000;
        let windows = [
            (i64::MIN, i64::MAX),
            (base_ns + 3_000_000_000_000, base_ns + 9_000_000_000_000),
        ];
        for (start_ns, end_ns) in windows {
            let filter = Filter {
                start_ns,
                end_ns,
                event_types: None,
                path_prefix: None,
            };
            let want: Vec<&str> = all
                .iter()
                .filter(|r| r.key.ts_ns >= start_ns && r.key.ts_ns < end_ns)
                .map(|r| r.key.event_id.as_str())
                .collect();
            for limit in [40, 100, 1000] {
                let mut got: Vec<String> = Vec::new();
                let mut after: Option<AuditLogKey> = None;
                let mut pages = 0;
                let mut worst = 0;
                loop {
                    let (p, ranges) = store
                        .read(|t| {
                            let mut c = CountingReads::new(t);
                            let p = page(&mut c, &keys, &scope, &filter, after.as_ref(), limit)?;
                            Ok((p, c.ranges))
                        })
                        .expect("page");
                    pages += 1;
                    worst = worst.max(ranges);
                    got.extend(p.records.iter().map(|r| r.key.event_id.clone()));
                    match p.next_cursor {
                        Some(raw) => after = Some(keys.decode_audit_log(&raw).expect("cursor")),
                        None => break,
                    }
                }
                assert_eq!(got, want, "window {start_ns}..{end_ns}, limit {limit}");
                // A page reads at least 100 records (fewer only at the
                // end), which span about 100 / 5 sessions, plus the 15 or
                // so that overlap any moment; reading every session would
                // be 600 or more.
                let bound = 4 * (limit.max(100).min(want.len()) / 5 + 15) + 40;
                assert!(
                    worst <= bound,
                    "limit {limit}: a page made {worst} range reads (bound {bound}, {pages} pages)"
                );
            }
        }
        // The page a follow stream polls for, after the newest record: the
        // sessions list and the sessions still running then.
        let last = all.last().map(|r| r.key.clone());
        let filter = all_time();
        let (p, ranges) = store
            .read(|t| {
                let mut c = CountingReads::new(t);
                let p = page(&mut c, &keys, &scope, &filter, last.as_ref(), 100)?;
                Ok((p, c.ranges))
            })
            .expect("page");
        assert!(p.records.is_empty() && p.next_cursor.is_none());
        assert!(ranges <= 10, "an empty poll made {ranges} range reads");
    }

    /// A `file-event/1` line of tenant `t`, `ns` after 2026-11-26T00:00Z.
    fn event_line(user: &str, session: &str, seq: usize, ns: u64, ty: &str) -> String {
        let secs = ns / 1_000_000_000;
        let frac = ns % 1_000_000_000;
        serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": "0190b5a0-0000-7000-8000-000000000003",
            "seq": seq,
            "timestamp": format!("2026-11-26T{:02}:{:02}:{:02}.{:09}Z", secs / 3600, secs / 60 % 60, secs % 60, frac),
            "event_type": ty, "kind": "file", "path": format!("p/{ty}"),
            "tenant_id": "t", "user_id": user, "session_id": session,
        })
        .to_string()
    }

    /// Random sessions (ties at one nanosecond, spreads from 5 ns to an
    /// hour, some cut by retention), random page sizes, windows, users and
    /// type filters: the pages give exactly the sorted matching records.
    /// `FUZZ_ITERS` and `FUZZ_SEED` run more or other cases.
    #[test]
    fn random_sessions_page_exactly_as_a_sorted_list() {
        for mut case in crate::api::counting::fuzz_cases(4) {
            let (seed0, it) = (case.seed, case.it);
            let mut next = |m: u64| case.below(m);
            let dir = tempfile::tempdir().expect("dir");
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let keys = Keys::default();
            let nsess = 1 + next(40);
            let k = next(5) as usize;
            let spread = [5u64, 50, 1_000, 1_000_000_000, 3_600_000_000_000][k];
            let mut lines = Vec::new();
            for i in 0..nsess {
                let user = format!("u{}", next(3));
                let session = format!("s{i:03}");
                let k = next(3) as usize;
                let nrec = 1 + next([3u64, 10, 60][k]);
                let base = next(spread);
                let len = 1 + next(spread);
                for _ in 0..nrec {
                    let ns = base + next(len);
                    let k = if next(10) == 0 {
                        0
                    } else {
                        1 + next(2) as usize
                    };
                    let ty = ["create", "update", "delete"][k];
                    lines.push(event_line(&user, &session, lines.len() + 1, ns, ty));
                }
            }
            let items: Vec<_> = lines
                .iter()
                .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
                .collect();
            // Write in a few chunks (several transactions).
            for c in items.chunks(1 + next(items.len() as u64) as usize) {
                crate::audit::write_items(&store, &keys, c, Default::default()).expect("write");
            }
            let read_all = || {
                let mut all = store
                    .read(|t| audit::records_in(t, &keys, &keys.audit_logs_tenant("t"), 0, false))
                    .expect("read");
                all.sort_by(|a, b| position(&a.key).cmp(&position(&b.key)));
                all
            };
            let mut all = read_all();
            let t0 = all[0].key.ts_ns;
            let tmax = all.last().expect("records").key.ts_ns;
            if next(3) == 0 {
                // retention removes early records
                let cutoff = t0 + (next((tmax - t0) as u64 + 1) as i64);
                let opts = crate::retention::RetentionOptions {
                    cutoff_ns: cutoff,
                    dry_run: false,
                    batch_records: 1 + next(5) as usize,
                    allow_removing_all: true,
                };
                crate::retention::run(&store, &keys, opts, &mut |_| {}).expect("retention");
                all = read_all();
                if all.is_empty() {
                    continue;
                }
            }
            for _ in 0..6 {
                let user = if next(3) == 0 {
                    Some(format!("u{}", next(3)))
                } else {
                    None
                };
                let scope = Scope {
                    tenant: "t".into(),
                    user: user.clone(),
                    session: None,
                    filter_part: String::new(),
                };
                let (start_ns, end_ns) = match next(3) {
                    0 => (i64::MIN, i64::MAX),
                    _ => {
                        let a = t0 - 2 + next((tmax - t0) as u64 + 4) as i64;
                        let b = t0 - 2 + next((tmax - t0) as u64 + 4) as i64;
                        (a.min(b), a.max(b) + next(2) as i64)
                    }
                };
                let event_types = if next(4) == 0 {
                    Some(vec!["create".to_string()])
                } else {
                    None
                };
                let filter = Filter {
                    start_ns,
                    end_ns,
                    event_types,
                    path_prefix: None,
                };
                let want: Vec<String> = all
                    .iter()
                    .filter(|r| r.key.ts_ns >= start_ns && r.key.ts_ns < end_ns)
                    .filter(|r| user.as_ref().is_none_or(|u| *u == r.key.user))
                    .filter(|r| filter.matches(&r.record))
                    .map(|r| format!("{}/{}/{}", r.key.session, r.key.ts_ns, r.key.event_id))
                    .collect();
                let k = next(3) as usize;
                let limit = 1 + next([3u64, 20, 200][k]) as usize;
                let mut got: Vec<String> = Vec::new();
                let mut after: Option<AuditLogKey> = None;
                let mut pages = 0;
                loop {
                    let p = store
                        .read(|t| page(t, &keys, &scope, &filter, after.as_ref(), limit))
                        .expect("page");
                    pages += 1;
                    assert!(pages < 100_000, "no progress");
                    assert!(p.records.len() <= limit);
                    got.extend(
                        p.records.iter().map(|r| {
                            format!("{}/{}/{}", r.key.session, r.key.ts_ns, r.key.event_id)
                        }),
                    );
                    match p.next_cursor {
                        Some(raw) => after = Some(keys.decode_audit_log(&raw).expect("cursor")),
                        None => break,
                    }
                }
                if got != want {
                    let miss: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
                    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
                    panic!("seed {seed0} it {it}: nsess {nsess} spread {spread} limit {limit} window {start_ns}..{end_ns} user {user:?} types {:?}: got {} want {}; missing {miss:?} extra {extra:?}", filter.event_types, got.len(), want.len());
                }
            }
        }
    }

    /// Sessions one after another (one agent session after the other, the
    /// common case): a page reads the sessions it spans, not the next
    /// thousand.
    #[test]
    fn pages_over_sessions_one_after_another_read_the_sessions_they_span() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let (nsess, per) = (600u64, 10u64);
        let mut lines = Vec::new();
        for i in 0..nsess {
            for j in 0..per {
                let ns = (i * per + j) * 1_000_000;
                lines.push(event_line(
                    "u",
                    &format!("s{i:05}"),
                    lines.len() + 1,
                    ns,
                    "update",
                ));
            }
        }
        write_lines(&store, &keys, &lines);
        let scope = Scope {
            tenant: "t".into(),
            user: None,
            session: None,
            filter_part: String::new(),
        };
        let filter = all_time();
        for limit in [1usize, 100, 1000] {
            let (p, ranges) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let p = page(&mut c, &keys, &scope, &filter, None, limit)?;
                    Ok((p, c.ranges))
                })
                .expect("page");
            assert_eq!(p.records.len(), limit);
            // A page reads at least 100 records: 10 sessions per 100.
            let bound = 3 * limit.max(100) / 10 + 20;
            assert!(
                ranges <= bound,
                "limit {limit}: {ranges} range reads (bound {bound})"
            );
        }
    }

    /// Sessions that all run at once join the merge together: a page reads
    /// them in one batched range read per merge round, not one range read
    /// per session, and still yields the records in order.
    #[test]
    fn sessions_merged_at_once_are_read_together() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        // 300 sessions of 4 records, interleaved within the same minutes.
        let (nsess, per) = (300u64, 4u64);
        let mut lines = Vec::new();
        for j in 0..per {
            for i in 0..nsess {
                let ns = (j * nsess + i) * 1_000_000 + 1_000_000_000;
                let session = format!("s{i:04}");
                lines.push(event_line("u", &session, lines.len() + 1, ns, "update"));
            }
        }
        write_lines(&store, &keys, &lines);
        let mut all = store
            .read(|t| audit::records_in(t, &keys, &keys.audit_logs_tenant("t"), 0, false))
            .expect("read");
        all.sort_by(|a, b| position(&a.key).cmp(&position(&b.key)));
        let want: Vec<String> = all.iter().map(|r| r.key.event_id.clone()).collect();
        let scope = Scope {
            tenant: "t".into(),
            user: None,
            session: None,
            filter_part: String::new(),
        };
        let filter = all_time();
        let mut got = Vec::new();
        let mut after: Option<AuditLogKey> = None;
        let mut worst = 0;
        loop {
            let (p, calls) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let p = page(&mut c, &keys, &scope, &filter, after.as_ref(), 500)?;
                    Ok((p, c.calls()))
                })
                .expect("page");
            worst = worst.max(calls);
            got.extend(p.records.iter().map(|r| r.key.event_id.clone()));
            match p.next_cursor {
                Some(raw) => after = Some(keys.decode_audit_log(&raw).expect("cursor")),
                None => break,
            }
        }
        assert_eq!(got, want);
        // The sessions list, a few merge rounds and the look-ahead for more;
        // one range read per session would be 300 or more.
        assert!(worst <= 12, "a page of 500 made {worst} read calls");
    }
}
