//! Which paths hold the same content (the `by_checksum` index); the history
//! of one path is in [`super::history`].
//!
//! Role `user` sees only duplicates at paths it touched itself; `admin` sees
//! the whole tenant.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::logs::{MAX_LIMIT, MAX_SCAN};
use super::{ApiError, ApiState};
use crate::audit;
use crate::keys::{Keys, PathTouch};
use crate::store::{ReadTxn, StoreError, StoreExt};
use crate::timespec::format_ns;

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
