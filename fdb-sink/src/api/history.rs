//! File history: every touch of one path, oldest first, read from the
//! `by_path` index, with the fields of each touch's stored record.
//!
//! Ingest indexes an event under its `path` and, for a move, under its
//! `from` too, so a move shows in the history of both names; `from`/`to` say
//! which way it went. Index keys hold the readable path text, in which every
//! byte sequence that is not UTF-8 reads as U+FFFD: `path_b64=` names the
//! exact bytes and keeps only the touches whose record carries them.
//!
//! With `include_ancestors=true` the moves and deletes of every parent
//! directory are merged in by time, each under the directory's path: a
//! directory move is one `move` of the directory, and a directory deleted or
//! moved out of the workspace is one `delete` of the directory, not one per
//! file inside it. A move of a parent away from its name, or its delete, ends
//! the file's existence at the queried path; the file's return there shows
//! as a touch of its own (a `create`: the monitor reports one for every entry
//! of a directory moved in) or as a move of a parent to its name. A parent's
//! own `create` is not merged: it does not bring the file back.
//!
//! Order: event time, then event id, then indexed path. A cursor is the
//! `by_path` key of the last entry a page examined; the next page starts
//! strictly after it. It is sealed for the whole query (path or exact bytes,
//! `include_ancestors`, time range, event types, and the caller when it
//! sees only its own touches): given to any other query it is `bad_cursor`,
//! never the start of that query's history partway.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::cursor::{self, Cursors, Sealer};
use super::logs::{Filter, LogParams, Page, DEFAULT_LIMIT, MAX_LIMIT, MAX_SCAN};
use super::{paths, ApiError, ApiState};
use crate::audit;
use crate::keys::{ByPathKey, Keys, PathTouch, BY_PATH};
use crate::record::AuditRecord;
use crate::store::{RangeReq, ReadTxn, StoreError};
use crate::timespec::format_ns;

/// Stored records one request reads at most (one per touch returned, or per
/// index entry examined when `path_b64` needs the record to decide).
pub const MAX_RECORD_READS: usize = MAX_LIMIT;

/// Parent directories `include_ancestors=true` follows at most.
pub const MAX_ANCESTORS: usize = 64;

/// Query of `GET /api/v5/files/history`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// The path as file events spell it (its readable text).
    pub path: Option<String>,
    /// The exact bytes of the path, standard base64 (as in `path_b64` of
    /// the records); the alternative to `path`.
    pub path_b64: Option<String>,
    /// Earliest event time, RFC 3339, inclusive.
    pub start: Option<String>,
    /// Latest event time, RFC 3339, exclusive.
    pub end: Option<String>,
    /// Comma-separated event types to keep.
    pub event_type: Option<String>,
    /// Also the moves and deletes of every parent directory.
    #[serde(default)]
    pub include_ancestors: bool,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One touch of a file: the index entry, plus the fields of the stored
/// record (absent with `record_missing` when retention removed the record
/// but not yet its index entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    /// The path this entry is indexed under: the queried path, the source or
    /// destination of a move, or (with `include_ancestors`) the parent
    /// directory that was moved or deleted.
    pub path: String,
    pub timestamp: String,
    pub ts_ns: i64,
    pub event_id: String,
    pub event_type: String,
    pub user_id: String,
    pub session_id: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Exact bytes of `path`, standard base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_b64: Option<String>,
    /// Source of a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_b64: Option<String>,
    /// Destination of a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// True when the monitor found the change by rescanning (a change made
    /// while it was down, or lost kernel events) rather than observing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescan: Option<bool>,
    /// True when the index entry's record is no longer stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_missing: bool,
}

/// One indexed path a history reads.
#[derive(Debug, Clone)]
pub struct Source {
    /// The index key text.
    pub path: String,
    /// With `path_b64`: the exact bytes a record must carry for this path.
    pub exact: Option<Vec<u8>>,
    /// A parent directory: only its moves and deletes count.
    pub ancestor: bool,
}

/// What a history reads and keeps.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub tenant: String,
    /// The path first, then its ancestors (with `include_ancestors`).
    pub sources: Vec<Source>,
    /// Role `user`: only this user's touches.
    pub only_user: Option<String>,
    pub filter: Filter,
    /// `include_ancestors=true` was asked (a path without parents has no
    /// ancestor sources, but its cursors still belong to that query).
    pub ancestors_asked: bool,
}

impl HistoryQuery {
    /// Builds the query from the parameters, or the 400 that explains what
    /// is wrong with them.
    pub fn from_params(
        tenant: &str,
        only_user: Option<String>,
        p: &HistoryParams,
    ) -> Result<Self, ApiError> {
        let (text, exact) = match (&p.path, &p.path_b64) {
            (Some(path), None) => {
                paths::check("path", path)?;
                (path.clone(), None)
            }
            (None, Some(b64)) => {
                let bytes = decode_b64(b64)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                paths::check("path_b64", &text)?;
                (text, Some(bytes))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of path (the path as file events spell it) and \
                     path_b64 (its exact bytes, base64)",
                ))
            }
        };
        let filter = Filter::from_params(&LogParams {
            start: p.start.clone(),
            end: p.end.clone(),
            event_type: p.event_type.clone(),
            ..LogParams::default()
        })?;
        let mut sources = vec![Source {
            path: text,
            exact: exact.clone(),
            ancestor: false,
        }];
        if p.include_ancestors {
            let ancestors = ancestors(&sources[0].path, exact.as_deref());
            if ancestors.len() > MAX_ANCESTORS {
                return Err(ApiError::bad_request(format!(
                    "include_ancestors follows at most {MAX_ANCESTORS} parent directories; \
                     this path has {}",
                    ancestors.len()
                )));
            }
            sources.extend(ancestors);
        }
        Ok(HistoryQuery {
            tenant: tenant.to_owned(),
            sources,
            only_user,
            filter,
            ancestors_asked: p.include_ancestors,
        })
    }

    /// True when `key` (a decoded cursor) lies in this query.
    fn owns(&self, key: &ByPathKey) -> bool {
        key.tenant == self.tenant && self.sources.iter().any(|s| s.path == key.path)
    }

    /// The query this history's cursors are sealed for: the tenant, the
    /// caller when it sees only its own touches, the path (its exact bytes
    /// with `path_b64`), whether ancestors are merged, and the filters.
    pub fn cursor_query(&self) -> String {
        let path = &self.sources[0];
        let what = serde_json::json!({
            "path": path.path,
            "path_b64": path
                .exact
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            "include_ancestors": self.ancestors_asked,
            "filter": self.filter.cursor_part(),
        });
        cursor::query(
            HISTORY_CURSOR,
            &[
                Some(&self.tenant),
                self.only_user.as_deref(),
                Some(&what.to_string()),
            ],
        )
    }

    /// The position a cursor names, when it was sealed for this query; a
    /// cursor of an earlier release (sealed for the tenant and caller only)
    /// is taken when it names an entry of this query's paths.
    fn open_cursor(&self, sealer: &Sealer, keys: &Keys, c: &str) -> Result<ByPathKey, ApiError> {
        let bad = || ApiError::BadCursor("cursor was not produced by this query".into());
        if let Ok(raw) = sealer.open(&self.cursor_query(), c) {
            return keys
                .decode_by_path(&raw)
                .ok()
                .filter(|k| k.tenant == self.tenant)
                .ok_or_else(bad);
        }
        let legacy = cursor::query("history", &[Some(&self.tenant), self.only_user.as_deref()]);
        keys.decode_by_path(&sealer.open(&legacy, c)?)
            .ok()
            .filter(|k| self.owns(k))
            .ok_or_else(bad)
    }
}

/// The route name history cursors are sealed for (with the whole query;
/// `history` alone was the tenant and caller only).
const HISTORY_CURSOR: &str = "history/2";

/// Standard base64, padded or not (URL-safe letters and a `+` that became a
/// space in the query string are accepted too).
fn decode_b64(s: &str) -> Result<Vec<u8>, ApiError> {
    let cleaned: String = s
        .trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '+',
            '_' => '/',
            c => c,
        })
        .filter(|c| *c != '=')
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cleaned)
        .map_err(|e| ApiError::bad_request(format!("path_b64 is not base64: {e}")))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("path_b64 must not be empty"));
    }
    Ok(bytes)
}

/// The parent directories of `path`, outermost first (`a/b/c` → `a`, `a/b`);
/// with `exact`, each with its exact bytes.
fn ancestors(path: &str, exact: Option<&[u8]>) -> Vec<Source> {
    match exact {
        None => path
            .match_indices('/')
            .map(|(i, _)| Source {
                path: path[..i].to_owned(),
                exact: None,
                ancestor: true,
            })
            .collect(),
        Some(bytes) => bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| Source {
                path: String::from_utf8_lossy(&bytes[..i]).into_owned(),
                exact: Some(bytes[..i].to_vec()),
                ancestor: true,
            })
            .collect(),
    }
}

/// The position of an index entry in the history order.
type Pos = (i64, String, String);

fn pos_of(k: &ByPathKey) -> Pos {
    (k.ts_ns, k.event_id.clone(), k.path.clone())
}

/// An index entry read from one source.
struct Entry {
    raw: Vec<u8>,
    key: ByPathKey,
    touch: PathTouch,
    source: usize,
}

/// Reads the next entries of every source after `pos`, merged in order:
/// each source gives at most `per` entries, and merged entries are kept up to
/// the smallest "last entry read" of the sources that had more. Also whether
/// a source had more: when none had, no entry follows these. The sources'
/// ranges are read together (one round trip on FoundationDB).
fn next_entries(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    q: &HistoryQuery,
    pos: Option<&Pos>,
    per: usize,
) -> Result<(Vec<Entry>, bool), StoreError> {
    let mut ranges: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, src) in q.sources.iter().enumerate() {
        let range = keys.by_path_range(&q.tenant, &src.path);
        let root = keys.root();
        let mut begin = range.begin.clone();
        let mut end = range.end.clone();
        if q.filter.start_ns != i64::MIN {
            begin = begin.max(root.pack(&(BY_PATH, &q.tenant, &src.path, q.filter.start_ns)));
        }
        if q.filter.end_ns != i64::MAX {
            end = end.min(root.pack(&(BY_PATH, &q.tenant, &src.path, q.filter.end_ns)));
        }
        if let Some((ts, id, path)) = pos {
            let at = keys.by_path(&q.tenant, &src.path, *ts, id);
            // The entry of the same event under a later path comes after
            // the position; under this or an earlier path, it was seen.
            let from = if src.path > *path {
                at
            } else {
                audit::after(&at)
            };
            begin = begin.max(from);
        }
        if begin < end {
            ranges.push((i, begin, end));
        }
    }
    let reqs: Vec<RangeReq<'_>> = ranges
        .iter()
        .map(|(_, begin, end)| RangeReq::new(begin, end, per, false))
        .collect();
    let read = if reqs.is_empty() {
        Vec::new()
    } else {
        txn.get_ranges(&reqs)?
    };
    let mut batch = Vec::new();
    let mut bound: Option<Pos> = None;
    for ((i, _, _), rows) in ranges.iter().zip(read) {
        let full = rows.len() >= per;
        for (k, v) in rows {
            let key = keys
                .decode_by_path(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let touch = PathTouch::decode(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            batch.push(Entry {
                raw: k,
                key,
                touch,
                source: *i,
            });
        }
        if full {
            if let Some(last) = batch.last() {
                let p = pos_of(&last.key);
                if bound.as_ref().is_none_or(|b| p < *b) {
                    bound = Some(p);
                }
            }
        }
    }
    batch.sort_by_key(|e| pos_of(&e.key));
    let more = bound.is_some();
    if let Some(b) = bound {
        batch.retain(|e| pos_of(&e.key) <= b);
    }
    Ok((batch, more))
}

/// Event types of a parent directory that change whether the file exists at
/// its path: a `move` takes it to another name (or brings one to it), a
/// `delete` removes the whole subtree (deleted, or moved out of the
/// workspace).
const ANCESTOR_TYPES: [&str; 2] = ["move", "delete"];

/// Whether the index entry passes the filters that need no record.
fn keep_entry(q: &HistoryQuery, e: &Entry) -> bool {
    let src = &q.sources[e.source];
    if src.ancestor && !ANCESTOR_TYPES.contains(&e.touch.event_type.as_str()) {
        return false;
    }
    if q.only_user.as_ref().is_some_and(|u| *u != e.touch.user) {
        return false;
    }
    q.filter
        .event_types
        .as_ref()
        .is_none_or(|types| types.contains(&e.touch.event_type))
}

/// The stored records of index entries (`None` for one no longer stored),
/// in order, read together: one round trip on FoundationDB.
fn records_of(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    entries: &[&Entry],
) -> Result<Vec<Option<AuditRecord>>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let record_keys: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            keys.audit_log(
                &e.key.tenant,
                &e.touch.user,
                &e.touch.session,
                e.key.ts_ns,
                &e.key.event_id,
            )
        })
        .collect();
    let refs: Vec<&[u8]> = record_keys.iter().map(Vec::as_slice).collect();
    txn.get_many(&refs)?
        .into_iter()
        .map(|v| {
            v.map(|v| {
                AuditRecord::from_json(&v)
                    .map_err(|err| StoreError::Corrupt(format!("audit record: {err}")))
            })
            .transpose()
        })
        .collect()
}

/// The exact bytes of a move's source.
fn from_bytes(r: &AuditRecord) -> Option<Vec<u8>> {
    r.event.from.as_ref().map(|text| {
        file_event::EncodedPath {
            text: text.clone(),
            b64: r.event.from_b64.clone(),
        }
        .to_bytes()
    })
}

/// Which end of the record this entry's path is: `true` for the source of a
/// move. With exact bytes, the end that carries them; otherwise the source
/// only when the indexed text is not the record's path.
fn is_source(r: &AuditRecord, indexed: &str, exact: Option<&[u8]>) -> bool {
    match exact {
        Some(want) => r.event.path_bytes() != want && from_bytes(r).as_deref() == Some(want),
        None => r.event.path != indexed && r.event.from.as_deref() == Some(indexed),
    }
}

/// True when the record carries `want` as its path or move source.
fn carries(r: &AuditRecord, want: &[u8]) -> bool {
    r.event.path_bytes() == want || from_bytes(r).as_deref() == Some(want)
}

fn touch(e: &Entry, record: Option<&AuditRecord>, exact: Option<&[u8]>) -> Touch {
    let mut t = Touch {
        path: e.key.path.clone(),
        timestamp: format_ns(e.key.ts_ns),
        ts_ns: e.key.ts_ns,
        event_id: e.key.event_id.clone(),
        event_type: e.touch.event_type.clone(),
        user_id: e.touch.user.clone(),
        session_id: e.touch.session.clone(),
        kind: None,
        path_b64: None,
        from: None,
        from_b64: None,
        to: None,
        to_b64: None,
        size: None,
        checksum: None,
        rescan: None,
        record_missing: record.is_none(),
    };
    if let Some(r) = record {
        let ev = &r.event;
        t.kind = Some(ev.kind.as_str().to_owned());
        t.path_b64 = if is_source(r, &e.key.path, exact) {
            ev.from_b64.clone()
        } else {
            ev.path_b64.clone()
        };
        t.from = ev.from.clone();
        t.from_b64 = ev.from_b64.clone();
        t.to = ev.to.clone();
        t.to_b64 = ev.to_b64.clone();
        t.size = ev.size;
        t.checksum = ev.checksum.clone();
        t.rescan = Some(ev.rescan);
    }
    t
}

/// One page: up to `limit` touches after the cursor position `after` (a
/// decoded `by_path` key), and the raw key to continue from.
///
/// The records of the kept index entries are read in batches: as many as
/// the page still needs (with `path_b64`, where a record may not carry the
/// bytes, twice the previous batch when that is more), within the page's
/// budgets, so that a page costs a few round trips whatever its size.
pub fn history_page(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    q: &HistoryQuery,
    after: Option<&ByPathKey>,
    limit: usize,
) -> Result<(Vec<Touch>, Option<Vec<u8>>), StoreError> {
    let mut pos: Option<Pos> = after.map(pos_of);
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut reads = 0usize;
    let per = limit.clamp(100, MAX_LIMIT);
    let by_bytes = q.sources.iter().any(|s| s.exact.is_some());
    let mut batch = 0usize;
    loop {
        let (entries, more_after) = next_entries(txn, keys, q, pos.as_ref(), per)?;
        let mut i = 0;
        while i < entries.len() {
            // The entries up to the `want`-th kept one (or to the scan
            // budget) and their records, read together.
            let need = limit.saturating_sub(out.len());
            let want = if by_bytes { need.max(2 * batch) } else { need };
            let want = want.clamp(1, MAX_RECORD_READS.saturating_sub(reads).max(1));
            let mut kept = Vec::new();
            let mut end = i;
            let mut seen = scanned;
            while end < entries.len() && kept.len() < want && seen < MAX_SCAN {
                seen += 1;
                if keep_entry(q, &entries[end]) {
                    kept.push(&entries[end]);
                }
                end += 1;
            }
            batch = kept.len();
            let mut records = records_of(txn, keys, &kept)?.into_iter();
            for (j, e) in entries.iter().enumerate().take(end).skip(i) {
                scanned += 1;
                pos = Some(pos_of(&e.key));
                let exact = q.sources[e.source].exact.as_deref();
                if keep_entry(q, e) {
                    reads += 1;
                    let record = records.next().flatten();
                    // An entry whose record is gone cannot be checked
                    // against the exact bytes: it is shown, marked
                    // `record_missing`.
                    let wanted = match (exact, &record) {
                        (Some(want), Some(r)) => carries(r, want),
                        _ => true,
                    };
                    if wanted {
                        out.push(touch(e, record.as_ref(), exact));
                    }
                }
                if out.len() >= limit || scanned >= MAX_SCAN || reads >= MAX_RECORD_READS {
                    // Entries read after this one are more; else look.
                    let more = j + 1 < entries.len()
                        || (more_after
                            && !next_entries(txn, keys, q, pos.as_ref(), 1)?.0.is_empty());
                    return Ok((out, more.then(|| e.raw.clone())));
                }
            }
            i = end;
        }
        if !more_after {
            return Ok((out, None));
        }
    }
}

/// `GET /api/v5/files/history?path=` (or `path_b64=`).
pub async fn history(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Page<Touch>>, ApiError> {
    let Query(p) = params?;
    let only_user = (!caller.is_admin()).then(|| caller.user.clone());
    let q = HistoryQuery::from_params(&caller.tenant, only_user, &p)?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    if limit == 0 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    // Sealed for the caller as well: a user's scan passes over other
    // users' touches, whose keys its cursor may name.
    let query = q.cursor_query();
    let sealer = Cursors::sealer(&state).await?;
    let after = cursor::given(p.cursor.as_deref())
        .map(|c| q.open_cursor(&sealer, &state.keys, c))
        .transpose()?;
    let (records, next) = state
        .blocking(move |store, keys| {
            Ok(crate::store::StoreExt::read(store, |txn| {
                history_page(txn, keys, &q, after.as_ref(), limit)
            })?)
        })
        .await?;
    Ok(Json(Page {
        records,
        next_cursor: next.map(|k| sealer.seal(&query, &k)).transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_outermost_first_and_keep_exact_bytes() {
        let a: Vec<String> = ancestors("a/b/c.txt", None)
            .into_iter()
            .map(|s| s.path)
            .collect();
        assert_eq!(a, ["a", "a/b"]);
        assert!(ancestors("c.txt", None).is_empty());
        let bytes = b"d\xe9/x\xe8.txt";
        let a = ancestors("d\u{fffd}/x\u{fffd}.txt", Some(bytes));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].path, "d\u{fffd}");
        assert_eq!(a[0].exact.as_deref(), Some(&b"d\xe9"[..]));
    }

    /// Paging a file's history merged with its directory's moves and
    /// deletes, with any page size, yields every kept touch once, in order.
    #[test]
    fn merged_pages_are_complete_and_ordered_for_any_page_size() {
        use crate::store::embedded::EmbeddedStore;
        use crate::store::StoreExt;
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let mut lines = Vec::new();
        let mut add = |secs: u64, event_type: &str, kind: &str, path: &str, from: Option<&str>| {
            let mut v = serde_json::json!({
                "schema": "file-event/1",
                "event_id": uuid::Uuid::now_v7().to_string(),
                "monitor_id": "0190b5a0-0000-7000-8000-000000000001",
                "seq": lines.len() + 1,
                "timestamp": format!("2026-11-26T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60),
                "event_type": event_type, "kind": kind, "path": path,
                "tenant_id": "t", "user_id": "u", "session_id": "s",
            });
            if let Some(f) = from {
                v["from"] = serde_json::json!(f);
                v["to"] = serde_json::json!(path);
            }
            lines.push(v.to_string());
        };
        // 300 updates of d/f, 150 moves of d (in and out), 60 deletes of
        // d, 100 other touches of d, many at the same second as the file's.
        for i in 0..300 {
            add(i * 2, "update", "file", "d/f", None);
        }
        for i in 0..150 {
            let (from, to) = if i % 2 == 0 { ("d", "e") } else { ("e", "d") };
            add(i * 4 + 1, "move", "dir", to, Some(from));
        }
        for i in 0..60 {
            add(i * 10, "delete", "dir", "d", None);
        }
        for i in 0..100 {
            add(i * 6, "update", "dir", "d", None);
        }
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let params = HistoryParams {
            path: Some("d/f".into()),
            include_ancestors: true,
            ..HistoryParams::default()
        };
        let q = HistoryQuery::from_params("t", None, &params).expect("query");
        let all = store
            .read(|t| history_page(t, &keys, &q, None, 1000))
            .expect("all");
        assert!(all.1.is_none());
        let got: Vec<(i64, String)> = all
            .0
            .iter()
            .map(|t| (t.ts_ns, t.event_id.clone()))
            .collect();
        assert_eq!(
            got.len(),
            510,
            "file updates, directory moves and deletes only"
        );
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
        for limit in [1, 7, 100, 333] {
            let mut paged = Vec::new();
            let mut after: Option<ByPathKey> = None;
            loop {
                let (page, next) = store
                    .read(|t| history_page(t, &keys, &q, after.as_ref(), limit))
                    .expect("page");
                assert!(page.len() <= limit);
                paged.extend(page.into_iter().map(|t| (t.ts_ns, t.event_id)));
                match next {
                    Some(raw) => after = Some(keys.decode_by_path(&raw).expect("cursor")),
                    None => break,
                }
            }
            assert_eq!(paged, got, "limit {limit}");
        }
    }

    /// One `file-event/1` line of tenant `t`, user `u`, session `s`, `secs`
    /// seconds into 2026-11-26, at `path` (with its exact bytes when given).
    fn line(seq: usize, secs: u64, path: &str, path_b64: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "schema": "file-event/1",
            "event_id": uuid::Uuid::now_v7().to_string(),
            "monitor_id": "0190b5a0-0000-7000-8000-000000000001",
            "seq": seq,
            "timestamp": format!("2026-11-26T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60),
            "event_type": "update", "kind": "file", "path": path,
            "tenant_id": "t", "user_id": "u", "session_id": "s",
        });
        if let Some(b64) = path_b64 {
            v["path_b64"] = serde_json::json!(b64);
        }
        v.to_string()
    }

    /// A page of touches reads their records together: a page of 500 costs
    /// one index read, one batched record read and the look-ahead for more,
    /// not one read per touch. With `path_b64`, where a record decides
    /// whether its touch is kept, the record reads stay few too.
    #[test]
    fn a_page_reads_its_records_together() {
        use crate::api::counting::CountingReads;
        use crate::store::embedded::EmbeddedStore;
        use crate::store::StoreExt;
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        // 600 touches of f; 400 of a name whose bytes are not UTF-8, every
        // fourth of them with other bytes of the same readable text.
        let mut lines: Vec<String> = (0..600).map(|i| line(i + 1, i as u64, "f", None)).collect();
        for i in 0..400 {
            let b64 = if i % 4 == 0 {
                "Y2Fm6C50eHQ="
            } else {
                "Y2Fm6S50eHQ="
            };
            lines.push(line(lines.len() + 1, i, "caf\u{fffd}.txt", Some(b64)));
        }
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let page = |params: &HistoryParams, after: Option<&ByPathKey>, limit: usize| {
            let q = HistoryQuery::from_params("t", None, params).expect("query");
            store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let page = history_page(&mut c, &keys, &q, after, limit)?;
                    Ok((page, c.calls()))
                })
                .expect("page")
        };
        let plain = HistoryParams {
            path: Some("f".into()),
            ..HistoryParams::default()
        };
        let ((touches, next), calls) = page(&plain, None, 500);
        assert_eq!(touches.len(), 500);
        assert!(touches
            .iter()
            .all(|t| !t.record_missing && t.kind.is_some()));
        assert!(calls <= 3, "a page of 500 made {calls} read calls");
        let after = keys.decode_by_path(&next.expect("more")).expect("cursor");
        let ((rest, next), calls) = page(&plain, Some(&after), 500);
        assert_eq!(rest.len(), 100);
        assert!(next.is_none());
        assert!(calls <= 2, "the last page made {calls} read calls");

        let exact = HistoryParams {
            path_b64: Some("Y2Fm6C50eHQ=".into()),
            ..HistoryParams::default()
        };
        let mut got = 0;
        let mut after: Option<ByPathKey> = None;
        loop {
            let ((touches, next), calls) = page(&exact, after.as_ref(), 40);
            assert!(touches
                .iter()
                .all(|t| t.path_b64.as_deref() == Some("Y2Fm6C50eHQ=")));
            got += touches.len();
            assert!(
                calls <= 8,
                "a page of 40 by exact bytes made {calls} read calls"
            );
            match next {
                Some(raw) => after = Some(keys.decode_by_path(&raw).expect("cursor")),
                None => break,
            }
        }
        assert_eq!(got, 100);
    }

    /// With `include_ancestors`, a page reads the ranges of the path and of
    /// all its parent directories together: one batched range read per
    /// merge round, not one per directory.
    #[test]
    fn ancestors_are_read_together() {
        use crate::api::counting::CountingReads;
        use crate::store::embedded::EmbeddedStore;
        use crate::store::StoreExt;
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        // A file 60 directories deep, updated 150 times; every tenth
        // directory was moved into place once.
        let dirs: Vec<String> = (1..=60)
            .map(|n| {
                (0..n)
                    .map(|i| format!("d{i}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        let file = format!("{}/f.txt", dirs[59]);
        let mut lines: Vec<String> = (0..150)
            .map(|i| line(i + 1, 100 + i as u64, &file, None))
            .collect();
        for (i, d) in dirs.iter().enumerate().step_by(10) {
            let mut v: serde_json::Value =
                serde_json::from_str(&line(lines.len() + 1, 50 + i as u64, d, None)).expect("json");
            v["event_type"] = "move".into();
            v["kind"] = "dir".into();
            v["from"] = format!("{d}.old").into();
            v["to"] = d.as_str().into();
            lines.push(v.to_string());
        }
        let items: Vec<_> = lines
            .iter()
            .map(|l| crate::record::validate_line(&keys, l.as_bytes(), 0))
            .collect();
        crate::audit::write_items(&store, &keys, &items, Default::default()).expect("write");
        let params = HistoryParams {
            path: Some(file.clone()),
            include_ancestors: true,
            ..HistoryParams::default()
        };
        let q = HistoryQuery::from_params("t", None, &params).expect("query");
        assert_eq!(q.sources.len(), 61);
        let mut got = Vec::new();
        let mut after: Option<ByPathKey> = None;
        let mut worst = 0;
        loop {
            let ((page, next), calls) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let page = history_page(&mut c, &keys, &q, after.as_ref(), 100)?;
                    Ok((page, c.calls()))
                })
                .expect("page");
            worst = worst.max(calls);
            got.extend(page.into_iter().map(|t| (t.ts_ns, t.event_type)));
            match next {
                Some(raw) => after = Some(keys.decode_by_path(&raw).expect("cursor")),
                None => break,
            }
        }
        assert_eq!(got.len(), 156, "150 updates and 6 directory moves");
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        assert_eq!(got.iter().filter(|(_, ty)| ty == "move").count(), 6);
        // Index entries, records and the look-ahead for more; one range
        // read per directory would be 61 or more.
        assert!(worst <= 6, "a page of 100 made {worst} read calls");
    }

    #[test]
    fn base64_in_any_common_spelling() {
        for s in ["Y2Fm6S50eHQ=", "Y2Fm6S50eHQ", " Y2Fm6S50eHQ= "] {
            assert_eq!(decode_b64(s).expect(s), b"caf\xe9.txt");
        }
        assert_eq!(
            decode_b64("-_8").expect("url-safe"),
            decode_b64("+/8").expect("std")
        );
        assert!(decode_b64("!!").is_err());
        assert!(decode_b64("").is_err());
    }
}
