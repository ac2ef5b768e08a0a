//! File queries: who touched a path (the `by_path` index) and which paths
//! hold the same content (the `by_checksum` index).
//!
//! Role `user` sees only its own touches, and only duplicates at paths it
//! touched itself; `admin` sees the whole tenant.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::logs::{encode_cursor, Page, DEFAULT_LIMIT, MAX_LIMIT, MAX_SCAN};
use super::{ApiError, ApiState};
use crate::audit;
use crate::keys::{Keys, PathTouch};
use crate::store::{ReadTxn, StoreError, StoreExt};
use crate::timespec::format_ns;

/// Query of `GET /api/v5/files/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    pub path: String,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One touch of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub path: String,
    pub timestamp: String,
    pub ts_ns: i64,
    pub event_id: String,
    pub event_type: String,
    pub user_id: String,
    pub session_id: String,
}

/// Touches of `path` after `after` (a raw `by_path` key), oldest first.
pub fn history_page(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    only_user: Option<&str>,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Touch>, Option<Vec<u8>>), StoreError> {
    let range = keys.by_path_range(tenant, path);
    let mut begin = match after {
        Some(a) => audit::after(a).max(range.begin.clone()),
        None => range.begin.clone(),
    };
    let mut out = Vec::new();
    let mut scanned = 0;
    loop {
        let rows = txn.get_range(&begin, &range.end, limit.clamp(100, MAX_LIMIT), false)?;
        if rows.is_empty() {
            return Ok((out, None));
        }
        let mut last = Vec::new();
        for (k, v) in rows {
            scanned += 1;
            let key = keys
                .decode_by_path(&k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let touch = PathTouch::decode(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            last = k;
            if only_user.is_none_or(|u| u == touch.user) {
                out.push(Touch {
                    path: key.path,
                    timestamp: format_ns(key.ts_ns),
                    ts_ns: key.ts_ns,
                    event_id: key.event_id,
                    event_type: touch.event_type,
                    user_id: touch.user,
                    session_id: touch.session,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        begin = audit::after(&last);
        if out.len() >= limit || scanned >= MAX_SCAN {
            let more = !txn.get_range(&begin, &range.end, 1, false)?.is_empty();
            return Ok((out, more.then_some(last)));
        }
    }
}

/// `GET /api/v5/files/history?path=`.
pub async fn history(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Page<Touch>>, ApiError> {
    let Query(p) = params?;
    if p.path.is_empty() {
        return Err(ApiError::bad_request("path must not be empty"));
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    if limit == 0 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    let after = match &p.cursor {
        Some(c) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c.trim())
                .ok()
                .filter(|raw| {
                    state
                        .keys
                        .decode_by_path(raw)
                        .is_ok_and(|k| k.tenant == caller.tenant && k.path == p.path)
                })
                .ok_or_else(|| {
                    ApiError::BadCursor("cursor was not produced by this query".into())
                })?;
            Some(raw)
        }
        None => None,
    };
    let only_user = (!caller.is_admin()).then(|| caller.user.clone());
    let tenant = caller.tenant.clone();
    let (records, next) = state
        .blocking(move |store, keys| {
            Ok(store.read(|txn| {
                history_page(
                    txn,
                    keys,
                    &tenant,
                    &p.path,
                    only_user.as_deref(),
                    after.as_deref(),
                    limit,
                )
            })?)
        })
        .await?;
    Ok(Json(Page {
        records,
        next_cursor: next.as_deref().map(encode_cursor),
    }))
}

/// Query of `GET /api/v5/files/duplicates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicatesParams {
    pub checksum: String,
}

/// A path that held the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicatePath {
    pub path: String,
    /// When an event last showed this content at this path (RFC 3339).
    pub last_seen: String,
}

/// Answer of `GET /api/v5/files/duplicates`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Duplicates {
    pub checksum: String,
    pub paths: Vec<DuplicatePath>,
    /// False when the answer was cut short: more than
    /// [`MAX_DUPLICATE_PATHS`] paths hold the content, or (role `user`)
    /// checking which of them the caller touched examined [`MAX_SCAN`]
    /// index entries.
    pub complete: bool,
}

/// Paths listed at most.
pub const MAX_DUPLICATE_PATHS: usize = 1000;

/// Whether `user` touched `path`, reading at most `budget` `by_path`
/// entries (the budget shrinks by what was read); `None` when the budget
/// ran out before the answer was known.
fn touched_by(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    user: &str,
    budget: &mut usize,
) -> Result<Option<bool>, StoreError> {
    let range = keys.by_path_range(tenant, path);
    let mut begin = range.begin.clone();
    loop {
        if *budget == 0 {
            return Ok(None);
        }
        let rows = txn.get_range(&begin, &range.end, (*budget).min(MAX_LIMIT), false)?;
        let Some((last, _)) = rows.last() else {
            return Ok(Some(false));
        };
        begin = audit::after(last);
        for (_, v) in &rows {
            *budget = budget.saturating_sub(1);
            let touch = PathTouch::decode(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if touch.user == user {
                return Ok(Some(true));
            }
        }
    }
}

/// `GET /api/v5/files/duplicates?checksum=`.
pub async fn duplicates(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<DuplicatesParams>, QueryRejection>,
) -> Result<Json<Duplicates>, ApiError> {
    let Query(p) = params?;
    if p.checksum.is_empty() {
        return Err(ApiError::bad_request("checksum must not be empty"));
    }
    let checksum = p.checksum.clone();
    let tenant = caller.tenant.clone();
    let only_user = (!caller.is_admin()).then(|| caller.user.clone());
    let (paths, complete) = state
        .blocking(move |store, keys| {
            Ok(store.read(|txn| {
                let mut out = Vec::new();
                let mut found =
                    audit::checksum_paths(txn, keys, &tenant, &checksum, MAX_DUPLICATE_PATHS + 1)?;
                let mut complete = found.len() <= MAX_DUPLICATE_PATHS;
                found.truncate(MAX_DUPLICATE_PATHS);
                // Role `user`: one budget of index entries for the whole
                // request, however many paths hold the content.
                let mut budget = MAX_SCAN;
                for (path, seen) in found {
                    if let Some(u) = &only_user {
                        match touched_by(txn, keys, &tenant, &path, u, &mut budget)? {
                            Some(true) => {}
                            Some(false) => continue,
                            None => {
                                complete = false;
                                break;
                            }
                        }
                    }
                    out.push(DuplicatePath {
                        path,
                        last_seen: format_ns(i64::try_from(seen).unwrap_or(i64::MAX)),
                    });
                }
                Ok((out, complete))
            })?)
        })
        .await?;
    Ok(Json(Duplicates {
        checksum: p.checksum,
        paths,
        complete,
    }))
}
