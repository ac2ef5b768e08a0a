//! `GET /api/v5/agents`: the tenant's agents (role `user`: its own) with
//! liveness, one page at a time.
//!
//! Agent rows are keyed `("agents", tenant, session)` and hold the last
//! heartbeat, `files_claimed` included (up to the store's value limit,
//! about 100 kB). A page reads the tenant's rows in key order and stops at
//! whichever comes first: `limit` listed agents, [`MAX_SCAN_ROWS`] rows
//! read, or [`MAX_PAGE_BYTES`] of rows read (rows the caller may not see,
//! and rows of sessions that never sent a heartbeat, count too). So one
//! request stays within a store transaction's budget however many rows the
//! tenant holds, and a page may hold fewer than `limit` agents (even none)
//! while `next_cursor` is set. A cursor is the key of the last row a page
//! read; the next page starts strictly after it, and a cursor of another
//! tenant or caller is `bad_cursor`; an empty `cursor=` is the first page.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::agents::{AgentRow, AgentView};
use super::auth::Caller;
use super::cursor::{self, Cursors, Sealer};
use super::{ApiError, ApiState};
use crate::keys::Keys;
use crate::store::{ReadTxn, StoreError, StoreExt};
use crate::timespec::now_ns;

/// Agents per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page; a larger `limit` is capped to it.
pub const MAX_LIMIT: usize = 1000;
/// Agent rows one page reads at most (listed or not).
pub const MAX_SCAN_ROWS: usize = 10_000;
/// Bytes of agent rows one page reads at most (listed or not); the page
/// ends after the row that reaches it, so every page makes progress.
pub const MAX_PAGE_BYTES: usize = 1_000_000;
/// Rows the first range read asks for: a few full-size rows, and the
/// fewest any read asks for.
const CHUNK_ROWS: usize = 8;
/// Rows one range read asks for at most.
const MAX_CHUNK_ROWS: usize = 256;

/// Query parameters of `GET /api/v5/agents`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Agents per page (default [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`]).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Answer of `GET /api/v5/agents`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
    /// Where the next page starts; `null` when no rows are left.
    pub next_cursor: Option<String>,
}

/// Opens a cursor of `tenant`'s agent listing (sealed for `query`) into
/// the key to resume strictly after.
fn decode_cursor(
    sealer: &Sealer,
    query: &str,
    keys: &Keys,
    tenant: &str,
    cursor: &str,
) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::BadCursor("cursor was not produced by this query".into());
    let raw = sealer.open(query, cursor)?;
    let (t, _) = keys.decode_agent(&raw).map_err(|_| bad())?;
    if t == tenant {
        Ok(raw)
    } else {
        Err(bad())
    }
}

/// One page of rows as read.
struct RowPage {
    rows: Vec<AgentRow>,
    /// The last key read when rows are left after it.
    next: Option<Vec<u8>>,
}

/// Reads up to `limit` rows that `keep` accepts, strictly after `after`,
/// within the page budgets. Each range read asks for twice the rows of the
/// one before, as far as rows the size of the largest read so far fit in
/// the bytes left (and at least [`CHUNK_ROWS`], at most
/// [`MAX_CHUNK_ROWS`]): a page of small rows costs a few round trips.
fn read_page(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    after: Option<&[u8]>,
    limit: usize,
    keep: &dyn Fn(&AgentRow) -> bool,
) -> Result<RowPage, StoreError> {
    let range = keys.agents_tenant(tenant);
    let mut begin = match after {
        // The first key after `k` in byte order.
        Some(k) => [k, &[0u8]].concat(),
        None => range.begin.clone(),
    };
    let (mut scanned, mut bytes, mut largest) = (0usize, 0usize, 0usize);
    let mut rows = Vec::new();
    let mut ask = CHUNK_ROWS;
    loop {
        let chunk = txn.get_range(&begin, &range.end, ask, false)?;
        let full = chunk.len() == ask;
        let n = chunk.len();
        for (i, (key, value)) in chunk.into_iter().enumerate() {
            scanned += 1;
            bytes += key.len() + value.len();
            largest = largest.max(key.len() + value.len());
            let row: AgentRow = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("agent row: {e}")))?;
            if keep(&row) {
                rows.push(row);
            }
            let done = rows.len() >= limit || scanned >= MAX_SCAN_ROWS || bytes >= MAX_PAGE_BYTES;
            if done {
                let more = i + 1 < n
                    || (full
                        && !txn
                            .get_range(&[key.as_slice(), &[0u8]].concat(), &range.end, 1, false)?
                            .is_empty());
                return Ok(RowPage {
                    rows,
                    next: more.then_some(key),
                });
            }
            begin = [key.as_slice(), &[0u8]].concat();
        }
        if !full {
            return Ok(RowPage { rows, next: None });
        }
        let fit = MAX_PAGE_BYTES.saturating_sub(bytes) / largest.max(1);
        ask = (2 * ask)
            .min(fit)
            .clamp(CHUNK_ROWS, MAX_CHUNK_ROWS)
            .min(MAX_SCAN_ROWS.saturating_sub(scanned).max(1));
    }
}

/// `GET /api/v5/agents`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<AgentList>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    if limit == 0 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    // Sealed for the caller: a user's listing passes over other users'
    // rows, whose keys (session ids) its cursor may name.
    let only_user = (!caller.is_admin()).then_some(caller.user.as_str());
    let query = cursor::query("agents", &[Some(&caller.tenant), only_user]);
    let sealer = Cursors::sealer(&state).await?;
    let after = cursor::given(params.cursor.as_deref())
        .map(|c| decode_cursor(&sealer, &query, &state.keys, &caller.tenant, c))
        .transpose()?;
    let ttl = state.agent_ttl;
    let page = state
        .blocking(move |store, keys| {
            let keep =
                |row: &AgentRow| row.heartbeat && (caller.is_admin() || row.user_id == caller.user);
            Ok(store
                .read(|txn| read_page(txn, keys, &caller.tenant, after.as_deref(), limit, &keep))?)
        })
        .await?;
    let now = now_ns();
    Ok(Json(AgentList {
        agents: page
            .rows
            .into_iter()
            .map(|r| AgentView::of(r, now, ttl))
            .collect(),
        next_cursor: page.next.map(|k| sealer.seal(&query, &k)).transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agents::AgentStatus;
    use crate::store::embedded::EmbeddedStore;

    fn row(session: &str, user: &str, files: usize) -> AgentRow {
        AgentRow {
            session_id: session.into(),
            user_id: user.into(),
            agent_type: "t".into(),
            status: AgentStatus::Active,
            last_heartbeat: None,
            files_claimed: (0..files).map(|i| format!("src/{i:040}.rs")).collect(),
            received_ns: 0,
            heartbeat: true,
            until_ns: None,
            claims_until_ns: None,
        }
    }

    /// Every row once, in order, for page sizes at and around the read
    /// chunk, and `next` only while rows are left.
    #[test]
    fn pages_cover_every_row_once_whatever_the_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let n = 3 * CHUNK_ROWS;
        store
            .transact(|txn| {
                for i in 0..n {
                    let user = if i % 3 == 0 { "bob" } else { "alice" };
                    let r = row(&format!("s-{i:03}"), user, 0);
                    let v =
                        serde_json::to_vec(&r).map_err(|e| StoreError::Internal(e.to_string()))?;
                    txn.set(&keys.agent("t", &r.session_id), &v)?;
                }
                // Another tenant's rows are never read.
                txn.set(&keys.agent("u", "s-x"), b"not json")
            })
            .expect("write");
        let all = |_: &AgentRow| true;
        let alices = |r: &AgentRow| r.user_id == "alice";
        for (keep, want) in [
            (&all as &dyn Fn(&AgentRow) -> bool, n),
            (&alices, n - n / 3),
        ] {
            for limit in [1, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, n, n + 1] {
                let (mut got, mut after, mut pages) = (Vec::new(), None::<Vec<u8>>, 0);
                loop {
                    let p = store
                        .read(|t| read_page(t, &keys, "t", after.as_deref(), limit, keep))
                        .expect("page");
                    assert!(p.rows.len() <= limit);
                    got.extend(p.rows.into_iter().map(|r| r.session_id));
                    pages += 1;
                    match p.next {
                        Some(k) => after = Some(k),
                        None => break,
                    }
                }
                assert_eq!(got.len(), want, "limit {limit}");
                let mut sorted = got.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted, got, "limit {limit}");
                assert!(pages <= n / limit + 2, "limit {limit}: {pages} pages");
            }
        }
    }

    /// A page of small rows grows its range reads: a page of 1000 agents,
    /// or one that passes over 3000 rows for a user's few, costs a few
    /// dozen reads at most, not one per 8 rows.
    #[test]
    fn a_page_of_small_rows_costs_few_reads() {
        use crate::api::counting::CountingReads;
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        store
            .transact(|txn| {
                for i in 0..3000 {
                    let user = if i % 10 == 0 { "bob" } else { "alice" };
                    let r = row(&format!("s-{i:04}"), user, 2);
                    let v =
                        serde_json::to_vec(&r).map_err(|e| StoreError::Internal(e.to_string()))?;
                    txn.set(&keys.agent("t", &r.session_id), &v)?;
                }
                Ok(())
            })
            .expect("write");
        let all = |_: &AgentRow| true;
        let bobs = |r: &AgentRow| r.user_id == "bob";
        for (keep, want, bound) in [
            (&all as &dyn Fn(&AgentRow) -> bool, 1000, 12),
            (&bobs, 300, 20),
        ] {
            let (p, calls) = store
                .read(|t| {
                    let mut c = CountingReads::new(t);
                    let p = read_page(&mut c, &keys, "t", None, MAX_LIMIT, keep)?;
                    Ok((p, c.calls()))
                })
                .expect("page");
            assert_eq!(p.rows.len(), want);
            assert!(calls <= bound, "{want} agents made {calls} read calls");
        }
    }

    /// Large rows: a page stops after the row that reaches the byte budget.
    #[test]
    fn a_page_stops_at_its_byte_budget() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let keys = Keys::default();
        let big = row("s", "alice", 1500);
        let size = serde_json::to_vec(&big).expect("json").len();
        let n = MAX_PAGE_BYTES / size + 5;
        store
            .transact(|txn| {
                for i in 0..n {
                    let mut r = big.clone();
                    r.session_id = format!("s-{i:03}");
                    let v =
                        serde_json::to_vec(&r).map_err(|e| StoreError::Internal(e.to_string()))?;
                    txn.set(&keys.agent("t", &r.session_id), &v)?;
                }
                Ok(())
            })
            .expect("write");
        let p = store
            .read(|t| read_page(t, &keys, "t", None, MAX_LIMIT, &|_| true))
            .expect("page");
        let per_row = size + keys.agent("t", "s-000").len();
        assert_eq!(p.rows.len(), MAX_PAGE_BYTES.div_ceil(per_row));
        assert!(p.next.is_some());
    }
}
