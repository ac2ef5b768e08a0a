//! File claims: an agent claims a set of paths for a while, all or none.
//!
//! One serializable store transaction reads every requested
//! `("claims", tenant, path)` row and writes them only if none is held by
//! another live agent. On FoundationDB, two racing transactions that read the
//! same rows conflict and one is retried (and then sees the other's claim);
//! the embedded store runs write transactions one at a time. So two agents
//! can never both win a path.
//!
//! A claim blocks others until `ttl_seconds` pass, or until its holder is
//! `dead` (no heartbeat within `--agent-ttl`) or reported `Stopped`. A
//! session re-claiming its own paths extends them. A session that is `dead`
//! or `Stopped` cannot claim (400): its claims would block no one, so a
//! granted claim would be a false promise.
//!
//! A user's unexpired claims, and agent rows, are capped; the check runs in
//! the same transaction ([`super::usage`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::agents::{
    agent_row, agent_rows, check_agent_type, check_session, AgentRow, AgentStatus,
};
use super::auth::Caller;
use super::error::Holder;
use super::owner::{authorize, Access};
use super::usage;
use super::{ApiError, ApiState};
use crate::keys::Keys;
use crate::store::{ReadTxn, StoreError, StoreExt};
use crate::timespec::{format_ns, now_ns};

/// Paths per request at most.
pub const MAX_PATHS: usize = 1000;
/// Longest claim.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// `POST /api/v5/agents/claims` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub session_id: String,
    pub agent_type: String,
    pub paths: Vec<String>,
    pub ttl_seconds: u64,
}

/// `DELETE /api/v5/agents/claims` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub session_id: String,
    pub paths: Vec<String>,
}

/// The stored `("claims", tenant, path)` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRow {
    pub session_id: String,
    pub user_id: String,
    pub agent_type: String,
    pub claimed_ns: i64,
    pub expires_ns: i64,
}

/// Answer to a granted claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Granted {
    pub session_id: String,
    pub paths: Vec<String>,
    pub expires_at: String,
}

/// Answer to a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Released {
    /// Paths this session held, now free.
    pub released: Vec<String>,
    /// Paths this session did not hold (free, expired or someone else's).
    pub not_held: Vec<String>,
}

/// The claim rows of `paths`, in order.
fn claim_rows(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    paths: &[String],
) -> Result<Vec<Option<ClaimRow>>, StoreError> {
    // Read together: one round trip on FoundationDB, not one per path.
    let row_keys: Vec<Vec<u8>> = paths.iter().map(|p| keys.claim(tenant, p)).collect();
    super::agents::json_rows(txn, &row_keys, "claim row")
}

fn check_paths(paths: &[String]) -> Result<Vec<String>, ApiError> {
    if paths.is_empty() || paths.len() > MAX_PATHS {
        return Err(ApiError::bad_request(format!(
            "paths must list 1 to {MAX_PATHS} paths"
        )));
    }
    if let Some(p) = paths.iter().find(|p| p.is_empty() || p.len() > 4096) {
        return Err(ApiError::bad_request(format!(
            "path {} must be 1 to 4096 bytes",
            super::error::shown(p)
        )));
    }
    for p in paths {
        // One spelling per file: two spellings could be held by two agents.
        super::paths::check("path", p)?;
    }
    // Sorted and deduplicated: the same set always touches rows in the same order.
    Ok(paths
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

/// Estimated FoundationDB bytes of a claim of `paths` by `owner`'s
/// `session` at its worst (every path replaces someone's counted claim
/// whose holder is looked up), with a claim row of `value_len` bytes and an
/// agent row of `agent_len` ([`super::txn_size`]).
pub fn claim_cost(
    keys: &Keys,
    tenant: &str,
    owner: &str,
    session: &str,
    paths: &[String],
    value_len: usize,
    agent_len: usize,
) -> usize {
    use super::txn_size::{add, clear, read, set};
    let agent = keys.agent(tenant, session).len();
    // A holder's agent row (session ids are at most 128 bytes).
    let holder = keys.agent(tenant, &"-".repeat(128)).len();
    // The session's row and index entry, the counters of the owner and of
    // the replaced rows' users, the owner check.
    let fixed = read(agent)
        + set(agent, agent_len)
        + 2 * clear(agent + owner.len() + 16)
        + 8 * add(keys.api_usage(tenant, owner, "claims").len() + 128);
    paths.iter().fold(fixed, |n, p| {
        let row = keys.claim(tenant, p).len();
        let entry = keys.claim_index(tenant, owner, 0, p).len();
        // Another user's entry may name a longer user id.
        let old_entry = entry + 128;
        n + read(row)
            + read(holder)
            + read(old_entry)
            + clear(old_entry)
            + set(row, value_len)
            + set(entry, 0)
    })
}

/// Estimated FoundationDB bytes of a release of `paths` ([`claim_cost`]).
pub fn release_cost(keys: &Keys, tenant: &str, session: &str, paths: &[String]) -> usize {
    use super::txn_size::{add, clear, read, set};
    let agent = keys.agent(tenant, session).len();
    let fixed = read(agent) + set(agent, crate::store::limits::MAX_VALUE_BYTES) + 4 * add(300);
    paths.iter().fold(fixed, |n, p| {
        let row = keys.claim(tenant, p).len();
        let entry = keys.claim_index(tenant, &"-".repeat(128), 0, p).len();
        n + read(row) + clear(row) + read(entry) + clear(entry)
    })
}

fn too_large(what: &str, paths: usize, cost: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "this {what} of {paths} paths would take about {cost} bytes in one store transaction, \
         over the API's limit of {} (FoundationDB refuses transactions over 10 MB): send \
         fewer or shorter paths per request",
        super::txn_size::MAX_REQUEST_BYTES
    ))
}

/// Claims `paths` for `req.session_id` inside `txn`; the conflict error when
/// another live agent holds any of them (nothing written then).
pub fn claim_in(
    txn: &mut dyn crate::store::Txn,
    keys: &Keys,
    caller: &Caller,
    req: &ClaimRequest,
    paths: &[String],
    limits: &usage::Limits,
) -> Result<Result<Granted, ApiError>, StoreError> {
    let mut deltas = usage::Deltas::default();
    let out = claim_counted(txn, keys, caller, req, paths, limits, &mut deltas)?;
    deltas.apply(txn, keys, &caller.tenant)?;
    Ok(out)
}

fn claim_counted(
    txn: &mut dyn crate::store::Txn,
    keys: &Keys,
    caller: &Caller,
    req: &ClaimRequest,
    paths: &[String],
    limits: &usage::Limits,
    deltas: &mut usage::Deltas,
) -> Result<Result<Granted, ApiError>, StoreError> {
    let agent_ttl = limits.agent_ttl;
    let now = now_ns();
    let own = agent_row(txn, keys, &caller.tenant, &req.session_id)?;
    let owner = own.as_ref().map(|o| o.user_id.as_str());
    let access = match authorize(txn, keys, caller, &req.session_id, owner)? {
        Ok(access) => access,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(a) = own.as_ref().filter(|a| !a.holds_claims(now, agent_ttl)) {
        let why = if a.status == AgentStatus::Stopped {
            "reported status Stopped".to_owned()
        } else {
            format!(
                "is dead (no heartbeat within --agent-ttl, {}s)",
                agent_ttl.as_secs()
            )
        };
        return Ok(Err(ApiError::bad_request(format!(
            "session {:?} {why}: its claims would block no one; send a heartbeat with \
             status Active first",
            req.session_id
        ))));
    }
    let ttl_ns = i64::try_from(req.ttl_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    let row = ClaimRow {
        session_id: req.session_id.clone(),
        user_id: access.owner.clone(),
        agent_type: req.agent_type.clone(),
        claimed_ns: now,
        expires_ns: now.saturating_add(ttl_ns),
    };
    let value = serde_json::to_vec(&row).map_err(|e| StoreError::Internal(e.to_string()))?;
    // The whole claim must fit in one transaction, whatever the rows found.
    let agent_len = match &own {
        Some(a) => serde_json::to_vec(a).map_or(0, |v| v.len()),
        None => 0,
    } + 512;
    let cost = claim_cost(
        keys,
        &caller.tenant,
        &access.owner,
        &req.session_id,
        paths,
        value.len(),
        agent_len,
    );
    if cost > super::txn_size::MAX_REQUEST_BYTES {
        return Ok(Err(too_large("claim", paths.len(), cost)));
    }
    let mut holders = Vec::new();
    // The current rows of the paths, replaced if the claim is granted.
    let mut replaced: Vec<(&str, ClaimRow)> = Vec::new();
    let rows = claim_rows(txn, keys, &caller.tenant, paths)?;
    // Whether each holding session still blocks: its agent row (up to about
    // 100 kB) is read once, however many of the paths it holds, and all of
    // them together. A holder without a row blocks no one: rows are removed
    // only once their claims block no one (evicted) or long after
    // (retention).
    let mut holding: Vec<String> = rows
        .iter()
        .flatten()
        .filter(|c| c.session_id != req.session_id && c.expires_ns > now)
        .map(|c| c.session_id.clone())
        .collect();
    holding.sort_unstable();
    holding.dedup();
    let agents = agent_rows(txn, keys, &caller.tenant, &holding)?;
    let alive: std::collections::HashMap<String, bool> = holding
        .into_iter()
        .zip(agents)
        .map(|(s, a)| (s, a.is_some_and(|a| a.holds_claims(now, agent_ttl))))
        .collect();
    for (p, row) in paths.iter().zip(rows) {
        let Some(c) = row else {
            continue;
        };
        if c.session_id == req.session_id || c.expires_ns <= now {
            replaced.push((p.as_str(), c));
            continue;
        }
        if alive.get(&c.session_id).copied().unwrap_or(false) {
            holders.push(Holder {
                path: p.clone(),
                session_id: c.session_id,
                agent_type: c.agent_type,
                expires_at: format_ns(c.expires_ns),
            });
        } else {
            replaced.push((p.as_str(), c));
        }
    }
    if !holders.is_empty() {
        let first = &holders[0];
        let message = format!(
            "{} of {} paths are held by other agents, e.g. {} by session {:?} ({}) until {}",
            holders.len(),
            paths.len(),
            super::error::shown(&first.path),
            first.session_id,
            first.agent_type,
            first.expires_at
        );
        return Ok(Err(ApiError::ClaimConflict { message, holders }));
    }
    // The caps are checked before anything but cleaning is written.
    let replaced_refs: Vec<(&str, &ClaimRow)> = replaced.iter().map(|(p, c)| (*p, c)).collect();
    let clean_budget =
        super::txn_size::MAX_CLEAN_BYTES.min(super::txn_size::TXN_BUDGET.saturating_sub(cost));
    let counted = match usage::admit_claims(
        txn,
        keys,
        &caller.tenant,
        &access.owner,
        limits,
        now,
        paths.len(),
        &replaced_refs,
        clean_budget,
        deltas,
    )? {
        Ok(counted) => counted,
        Err(e) => return Ok(Err(e)),
    };
    // Then the session's agent row: a new session may be over its owner's
    // cap of agent rows. It records the claim's expiry (`until_ns`).
    let mut agent = match &own {
        None => AgentRow::claim_only(&req.session_id, &access.owner, &req.agent_type, now),
        Some(a) => {
            let mut a = a.clone();
            a.user_id.clone_from(&access.owner);
            a
        }
    };
    agent.claims_until_ns = Some(row.expires_ns);
    let unchanged = own.as_ref().is_some_and(|o| {
        o.user_id == agent.user_id
            && o.until_ns.is_some()
            && o.claims_until_ns.is_some_and(|t| t >= row.expires_ns)
    });
    if !unchanged {
        if let Err(e) =
            usage::put_agent(txn, keys, &caller.tenant, own.as_ref(), agent, limits, now)?
        {
            return Ok(Err(e));
        }
    }
    for ((p, old), counted) in replaced.iter().zip(counted) {
        if counted {
            usage::drop_claim(txn, keys, &caller.tenant, p, old, deltas)?;
        }
    }
    for p in paths {
        txn.set(&keys.claim(&caller.tenant, p), &value)?;
        usage::record_claim(txn, keys, &caller.tenant, p, &row, deltas)?;
    }
    Ok(Ok(Granted {
        session_id: req.session_id.clone(),
        paths: paths.to_vec(),
        expires_at: format_ns(row.expires_ns),
    }))
}

/// Rewrites the session's agent row with its new owner (the rest of the row,
/// heartbeat included, is kept; the row moves to the new owner's count).
fn take_over(
    txn: &mut dyn crate::store::Txn,
    keys: &Keys,
    tenant: &str,
    row: &AgentRow,
    access: &Access,
    limits: &usage::Limits,
) -> Result<(), StoreError> {
    let mut new = row.clone();
    new.user_id.clone_from(&access.owner);
    // An existing row is never refused by the cap.
    match usage::put_agent(txn, keys, tenant, Some(row), new, limits, now_ns())? {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Internal(format!("take-over refused: {e}"))),
    }
}

/// `POST /api/v5/agents/claims`.
pub async fn claim(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<ClaimRequest>, JsonRejection>,
) -> Result<Json<Granted>, ApiError> {
    let Json(req) = body?;
    check_session(&req.session_id)?;
    check_agent_type(&req.agent_type)?;
    if req.ttl_seconds == 0 || req.ttl_seconds > MAX_TTL_SECONDS {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be 1 to {MAX_TTL_SECONDS}"
        )));
    }
    let paths = check_paths(&req.paths)?;
    let limits = state.limits;
    let granted = state
        .blocking(move |store, keys| {
            store.transact(|txn| claim_in(txn, keys, &caller, &req, &paths, &limits))?
        })
        .await?;
    Ok(Json(granted))
}

/// `DELETE /api/v5/agents/claims`.
pub async fn release(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<Json<Released>, ApiError> {
    let Json(req) = body?;
    check_session(&req.session_id)?;
    let paths = check_paths(&req.paths)?;
    let limits = state.limits;
    let cost = release_cost(&state.keys, &caller.tenant, &req.session_id, &paths);
    if cost > super::txn_size::MAX_REQUEST_BYTES {
        return Err(too_large("release", paths.len(), cost));
    }
    let out = state
        .blocking(move |store, keys| {
            store.transact(|txn| {
                let own = agent_row(txn, keys, &caller.tenant, &req.session_id)?;
                let owner = own.as_ref().map(|o| o.user_id.as_str());
                let access = match authorize(txn, keys, &caller, &req.session_id, owner)? {
                    Ok(access) => access,
                    Err(e) => return Ok(Err(e)),
                };
                if let Some(row) = own.filter(|_| access.taken_over) {
                    take_over(txn, keys, &caller.tenant, &row, &access, &limits)?;
                }
                let mut held: Vec<(&str, ClaimRow)> = Vec::new();
                let mut not_held = Vec::new();
                let mut deltas = usage::Deltas::default();
                let rows = claim_rows(txn, keys, &caller.tenant, &paths)?;
                for (p, row) in paths.iter().zip(rows) {
                    match row {
                        Some(c) if c.session_id == req.session_id => held.push((p.as_str(), c)),
                        _ => not_held.push(p.clone()),
                    }
                }
                let held_refs: Vec<(&str, &ClaimRow)> = held.iter().map(|(p, c)| (*p, c)).collect();
                usage::forget_claims(txn, keys, &caller.tenant, &held_refs, &mut deltas)?;
                let mut released = Vec::new();
                for (p, _) in &held {
                    txn.clear(&keys.claim(&caller.tenant, p))?;
                    released.push((*p).to_owned());
                }
                deltas.apply(txn, keys, &caller.tenant)?;
                Ok(Ok(Released { released, not_held }))
            })?
        })
        .await?;
    Ok(Json(out))
}
