//! Which paths hold the same content (the `by_checksum` index); the history
//! of one path is in [`super::history`].
//!
//! Role `admin` sees the whole tenant. Role `user` sees only what its own
//! records show: a path only when one of its own records at that path had
//! the content, and `last_seen` the latest such record, never another
//! user's.

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
use crate::record::AuditRecord;
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
    /// When an event last showed this content at this path (RFC 3339); for
    /// role `user`, the latest of the caller's own events.
    pub last_seen: String,
}

/// Answer of `GET /api/v5/files/duplicates`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Duplicates {
    pub checksum: String,
    pub paths: Vec<DuplicatePath>,
    /// False when the answer was cut short: more than
    /// [`MAX_DUPLICATE_PATHS`] paths hold the content, or (role `user`)
    /// checking which of them the caller's own records show read
    /// [`MAX_SCAN`] index entries and records.
    pub complete: bool,
}

/// Paths listed at most.
pub const MAX_DUPLICATE_PATHS: usize = 1000;

/// What one user's own records say about content at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnSight {
    /// The latest of the user's records at the path with the content (ns).
    Seen(u64),
    /// None of the user's records at the path has the content.
    NotSeen,
    /// The budget ran out before the answer was known.
    Unknown,
}

/// When `user`'s own records last showed content `checksum` at `path`:
/// the path's `by_path` entries newest first, and the stored record of
/// each entry of `user` (the entry names the user, the record holds the
/// path and checksum). Every entry and every record read takes one unit of
/// `budget`, which shrinks by what was read.
fn own_last_seen(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    (tenant, user): (&str, &str),
    path: &str,
    checksum: &str,
    last_seen: u64,
    budget: &mut usize,
) -> Result<OwnSight, StoreError> {
    let range = keys.by_path_range(tenant, path);
    // No entry newer than the tenant's last sight of the content has it.
    let bound = i64::try_from(last_seen)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let mut end = keys.by_path(tenant, path, bound, "");
    loop {
        if *budget == 0 {
            return Ok(OwnSight::Unknown);
        }
        // Half the budget for entries, so that their records fit in the rest.
        let want = (*budget / 2).clamp(1, MAX_LIMIT);
        let rows = txn.get_range(&range.begin, &end, want, true)?;
        *budget = budget.saturating_sub(rows.len());
        let mut own = Vec::new();
        for (k, v) in &rows {
            let touch = PathTouch::decode(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if touch.user != user {
                continue;
            }
            let key = keys
                .decode_by_path(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            own.push((
                key.ts_ns,
                keys.audit_log(tenant, user, &touch.session, key.ts_ns, &key.event_id),
            ));
        }
        let readable = own.len().min(*budget);
        *budget -= readable;
        let wanted: Vec<&[u8]> = own[..readable].iter().map(|(_, k)| k.as_slice()).collect();
        let values = if wanted.is_empty() {
            Vec::new()
        } else {
            txn.get_many(&wanted)?
        };
        for ((ts_ns, key), value) in own.iter().zip(values) {
            // An entry whose record is no longer stored shows nothing.
            let Some(value) = value else { continue };
            let record = AuditRecord::from_json(&value).map_err(|e| {
                StoreError::Corrupt(format!("record {}: {e}", crate::keys::printable(key)))
            })?;
            if record.event.path == path && record.event.checksum.as_deref() == Some(checksum) {
                return Ok(OwnSight::Seen(u64::try_from(*ts_ns).unwrap_or(0)));
            }
        }
        if readable < own.len() {
            return Ok(OwnSight::Unknown);
        }
        match rows.last() {
            Some((oldest, _)) if rows.len() == want => end = oldest.clone(),
            _ => return Ok(OwnSight::NotSeen),
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
                // Role `user`: one budget of index entries and records for
                // the whole request, however many paths hold the content.
                let mut budget = MAX_SCAN;
                for (path, mut seen) in found {
                    if let Some(u) = &only_user {
                        let who = (tenant.as_str(), u.as_str());
                        match own_last_seen(txn, keys, who, &path, &checksum, seen, &mut budget)? {
                            OwnSight::Seen(ts) => seen = ts,
                            OwnSight::NotSeen => continue,
                            OwnSight::Unknown => {
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
