//! Per-user caps on what the agent-coordination API stores:
//! `--api-max-agents-per-user` agent rows and `--api-max-claims-per-user`
//! live claims.
//!
//! Counting is per user (the session's owner, who is the one its rows are
//! charged to), not per tenant, so that one user's runaway agent cannot lock
//! the user's colleagues out. Counting must not scan: each user has an index
//! and a counter, kept in step by every write of an agent or claim row, in
//! the same transaction:
//!
//! - `("agent_index", tenant, user, until_ns, session)` per agent row, where
//!   `until_ns` (also stored in the row) is the latest of the last heartbeat
//!   and the expiry of the session's latest claim: once `--agent-ttl` has
//!   passed after it, the session is `dead` or `stopped` and none of its
//!   claims is live, so nothing depends on the row but the listing of a
//!   dead agent.
//! - `("claim_index", tenant, user, expires_ns, path)` per claim row.
//! - `("api_usage", tenant, user, "agents" | "claims")`: the number of the
//!   user's entries in each index.
//!
//! A request that would add a row reads the counter (on FoundationDB a read
//! conflict: two racing requests of one user serialise, and the second sees
//! the first's count; the embedded store runs writes one at a time) and,
//! before refusing, cleans as it goes: a claim first removes up to
//! [`CLEAN_BATCH`] of the user's expired claims (their rows and entries),
//! and a new session at the cap evicts the user's oldest agent rows that no
//! longer matter (above), oldest first. Only what is live counts, then: a
//! user is refused (429 `limit_exceeded`) only while the cap is filled by
//! unexpired claims, or by agent rows of sessions that are alive, or were
//! within `--agent-ttl`, or hold unexpired claims.
//!
//! Rows written before the indexes existed have none: a heartbeat or claim
//! indexes them then (counted, never refused), and retention removes the
//! others. An index entry whose row was removed by retention or belongs to
//! someone else by now is dropped when cleaning reaches it.

use std::time::Duration;

use super::agents::AgentRow;
use super::claims::{ClaimRow, MAX_TTL_SECONDS};
use super::ApiError;
use crate::keys::{decode_i64, Keys};
use crate::store::{StoreError, Txn};

/// Default `--api-max-agents-per-user`.
pub const DEFAULT_MAX_AGENTS: u32 = 1000;
/// Default `--api-max-claims-per-user`.
pub const DEFAULT_MAX_CLAIMS: u32 = 10_000;
/// Expired claims one claim request removes at most (per round; see
/// [`admit_claims`]): as many as a request may add, so cleaning keeps pace.
pub const CLEAN_BATCH: usize = super::claims::MAX_PATHS;
/// Agent rows one new session evicts at most.
pub const EVICT_BATCH: usize = 16;

const AGENTS: &str = "agents";
const CLAIMS: &str = "claims";

/// The caps and the liveness window they depend on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_agents: u64,
    pub max_claims: u64,
    pub agent_ttl: Duration,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn count(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    kind: &str,
) -> Result<i64, StoreError> {
    Ok(txn
        .get(&keys.api_usage(tenant, user, kind))?
        .map_or(0, |v| decode_i64(&v)))
}

fn add(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    kind: &str,
    delta: i64,
) -> Result<(), StoreError> {
    txn.atomic_add(&keys.api_usage(tenant, user, kind), delta)
}

/// Seconds until `at_ns` (at least 1).
fn secs_until(at_ns: i64, now: i64) -> u64 {
    let left = at_ns.saturating_sub(now).max(0);
    u64::try_from(left.saturating_add(999_999_999) / 1_000_000_000)
        .unwrap_or(u64::MAX)
        .max(1)
}

fn limit_error(kind: &'static str, max: u64, message: String, retry_after: u64) -> ApiError {
    ApiError::LimitExceeded {
        limit: kind,
        max,
        message,
        retry_after,
    }
}

// ---- agent rows -------------------------------------------------------------

/// Writes a session's agent row (`old` as read in this transaction), keeping
/// its owner's `agent_index` entry and count in step. `new.until_ns` may
/// carry the expiry of a claim just granted; it becomes the latest of that,
/// the old row's and the new heartbeat's time. A new session over its
/// owner's cap is refused (`Ok(Err(_))`, the row not written), and so is a
/// row over the store's value limit.
pub fn put_agent(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    old: Option<&AgentRow>,
    mut new: AgentRow,
    limits: &Limits,
    now: i64,
) -> Result<Result<AgentRow, ApiError>, StoreError> {
    // A row written before the index has no `until_ns`: its claims may run
    // up to the longest TTL after its last heartbeat.
    let max_claim = ns(Duration::from_secs(MAX_TTL_SECONDS));
    let base = old.map_or(0, |o| {
        o.until_ns
            .unwrap_or_else(|| o.received_ns.saturating_add(max_claim))
    });
    let until = new.until_ns.unwrap_or(0).max(base).max(new.received_ns);
    new.until_ns = Some(until);
    let value = serde_json::to_vec(&new).map_err(|e| StoreError::Internal(e.to_string()))?;
    if value.len() > crate::store::limits::MAX_VALUE_BYTES {
        return Ok(Err(ApiError::bad_request(format!(
            "the heartbeat takes {} bytes stored, over the limit of {} \
             (list fewer files_claimed)",
            value.len(),
            crate::store::limits::MAX_VALUE_BYTES
        ))));
    }
    let session = new.session_id.as_str();
    let user = new.user_id.as_str();
    match old.map(|o| (o.user_id.as_str(), o.until_ns)) {
        None => {
            if let Err(e) = admit_agent(txn, keys, tenant, user, limits, now)? {
                return Ok(Err(e));
            }
            add(txn, keys, tenant, user, AGENTS, 1)?;
            txn.set(&keys.agent_index(tenant, user, until, session), b"")?;
        }
        Some((old_user, Some(t))) => {
            if t != until || old_user != user {
                txn.clear(&keys.agent_index(tenant, old_user, t, session))?;
                txn.set(&keys.agent_index(tenant, user, until, session), b"")?;
            }
            if old_user != user {
                add(txn, keys, tenant, old_user, AGENTS, -1)?;
                add(txn, keys, tenant, user, AGENTS, 1)?;
            }
        }
        Some((_, None)) => {
            add(txn, keys, tenant, user, AGENTS, 1)?;
            txn.set(&keys.agent_index(tenant, user, until, session), b"")?;
        }
    }
    txn.set(&keys.agent(tenant, session), &value)?;
    Ok(Ok(new))
}

/// Room for one more agent row of `user`: evicts the user's oldest rows
/// that no longer matter when at the cap, else refuses.
fn admit_agent(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    limits: &Limits,
    now: i64,
) -> Result<Result<(), ApiError>, StoreError> {
    let max = i64::try_from(limits.max_agents).unwrap_or(i64::MAX);
    let mut n = count(txn, keys, tenant, user, AGENTS)?;
    if n < max {
        return Ok(Ok(()));
    }
    let ttl = ns(limits.agent_ttl);
    let want = usize::try_from(n - max + 1)
        .unwrap_or(usize::MAX)
        .min(EVICT_BATCH);
    let r = keys.agent_index_before(tenant, user, now.saturating_sub(ttl));
    for (key, _) in txn.get_range(&r.begin, &r.end, want, false)? {
        let (until, session) = keys
            .decode_agent_index(&key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = super::agents::agent_row(txn, keys, tenant, &session)?;
        if row.is_some_and(|r| r.user_id == user && r.until_ns == Some(until)) {
            txn.clear(&keys.agent(tenant, &session))?;
            tracing::debug!(tenant, user, session, "agent row evicted for a new session");
        }
        txn.clear(&key)?;
        add(txn, keys, tenant, user, AGENTS, -1)?;
        n -= 1;
    }
    if n < max {
        return Ok(Ok(()));
    }
    // The oldest row frees its place `--agent-ttl` after its `until_ns`
    // (unless it is renewed meanwhile).
    let all = keys.agent_index_user(tenant, user);
    let retry = match txn.get_range(&all.begin, &all.end, 1, false)?.first() {
        Some((k, _)) => {
            let (until, _) = keys
                .decode_agent_index(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            secs_until(until.saturating_add(ttl), now)
        }
        None => 1,
    };
    Ok(Err(limit_error(
        "agents_per_user",
        limits.max_agents,
        format!(
            "user {user:?} already has {n} agent sessions that still count (a heartbeat \
             within --agent-ttl, {}s, or a claim not yet expired), the limit of \
             --api-max-agents-per-user ({}); reuse a session, or retry once one has had \
             neither for --agent-ttl",
            limits.agent_ttl.as_secs(),
            limits.max_agents
        ),
        retry,
    )))
}

// ---- claims -----------------------------------------------------------------

/// Removes up to `budget` of `user`'s claims expired at `now` (their rows,
/// when still theirs, and their entries); true when more are left.
fn clean_claims(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    now: i64,
    budget: usize,
) -> Result<bool, StoreError> {
    // Expired means `expires_ns <= now`, as for a conflict.
    let r = keys.claim_index_before(tenant, user, now.saturating_add(1));
    let entries = txn.get_range(&r.begin, &r.end, budget + 1, false)?;
    let more = entries.len() > budget;
    let mut decoded = Vec::with_capacity(budget.min(entries.len()));
    for (key, _) in entries.into_iter().take(budget) {
        let (expires, path) = keys
            .decode_claim_index(&key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        decoded.push((key, expires, keys.claim(tenant, &path)));
    }
    let row_keys: Vec<&[u8]> = decoded.iter().map(|(_, _, k)| k.as_slice()).collect();
    let rows = txn.get_many(&row_keys)?;
    for ((key, expires, row_key), row) in decoded.iter().zip(rows) {
        let theirs = row
            .and_then(|v| serde_json::from_slice::<ClaimRow>(&v).ok())
            .is_some_and(|c| c.user_id == user && c.expires_ns == *expires);
        if theirs {
            txn.clear(row_key)?;
        }
        txn.clear(key)?;
    }
    if !decoded.is_empty() {
        add(txn, keys, tenant, user, CLAIMS, -(decoded.len() as i64))?;
    }
    Ok(more)
}

/// Checks that `user` may hold the claims of `paths`, whose current rows
/// are `replaced` (a row of the user's that is counted and replaced frees
/// its place), cleaning the user's expired claims first. Writes nothing but
/// the cleaning.
#[allow(clippy::too_many_arguments)]
pub fn admit_claims(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    limits: &Limits,
    now: i64,
    paths: usize,
    replaced: &[(&str, &ClaimRow)],
) -> Result<Result<(), ApiError>, StoreError> {
    let max = i64::try_from(limits.max_claims).unwrap_or(i64::MAX);
    loop {
        let more = clean_claims(txn, keys, tenant, user, now, CLEAN_BATCH)?;
        let n = count(txn, keys, tenant, user, CLAIMS)?;
        let mut freed = 0usize;
        for (path, row) in replaced.iter().filter(|(_, r)| r.user_id == user) {
            let entry = keys.claim_index(tenant, user, row.expires_ns, path);
            if txn.get(&entry)?.is_some() {
                freed += 1;
            }
        }
        let adding = i64::try_from(paths.saturating_sub(freed)).unwrap_or(i64::MAX);
        if n.saturating_add(adding) <= max {
            return Ok(Ok(()));
        }
        // Keep cleaning while expired claims are what fills the cap, as far
        // as one transaction's budget allows.
        if more && txn.written_bytes() < crate::store::limits::TARGET_TXN_BYTES {
            continue;
        }
        let all = keys.claim_index_user(tenant, user);
        let retry = match txn.get_range(&all.begin, &all.end, 1, false)?.first() {
            Some((k, _)) => {
                let (expires, _) = keys
                    .decode_claim_index(k)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                secs_until(expires, now)
            }
            None => 1,
        };
        return Ok(Err(limit_error(
            "claims_per_user",
            limits.max_claims,
            format!(
                "user {user:?} holds {n} live claims; {adding} more would pass the limit of \
                 --api-max-claims-per-user ({}): release claims no longer needed, or retry \
                 once some expire",
                limits.max_claims
            ),
            retry,
        )));
    }
}

/// Drops the index entry and count of claim row `old` of `path` (about to
/// be overwritten or cleared); true when it was counted.
pub fn forget_claim(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    old: &ClaimRow,
) -> Result<bool, StoreError> {
    let entry = keys.claim_index(tenant, &old.user_id, old.expires_ns, path);
    // Read, so that a concurrent clean of the same entry conflicts.
    if txn.get(&entry)?.is_none() {
        return Ok(false);
    }
    txn.clear(&entry)?;
    add(txn, keys, tenant, &old.user_id, CLAIMS, -1)?;
    Ok(true)
}

/// Records claim row `row` of `path` (just written) in its user's index.
pub fn record_claim(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    row: &ClaimRow,
) -> Result<(), StoreError> {
    txn.set(
        &keys.claim_index(tenant, &row.user_id, row.expires_ns, path),
        b"",
    )?;
    add(txn, keys, tenant, &row.user_id, CLAIMS, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::{Caller, Role};
    use crate::api::claims::{claim_in, ClaimRequest};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoreExt;

    fn claim(
        store: &EmbeddedStore,
        keys: &Keys,
        limits: &Limits,
        paths: &[&str],
        ttl_seconds: u64,
    ) -> Result<(), ApiError> {
        let caller = Caller {
            tenant: "t".into(),
            user: "alice".into(),
            role: Role::User,
        };
        let req = ClaimRequest {
            session_id: "s".into(),
            agent_type: "x".into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ttl_seconds,
        };
        store
            .transact(|txn| claim_in(txn, keys, &caller, &req, &req.paths, limits))
            .expect("store")
            .map(|_| ())
    }

    fn claims_counted(store: &EmbeddedStore, keys: &Keys) -> (i64, usize) {
        store
            .read(|t| {
                let n = t
                    .get(&keys.api_usage("t", "alice", CLAIMS))?
                    .map_or(0, |v| decode_i64(&v));
                let r = keys.claim_index_user("t", "alice");
                Ok((n, t.get_range(&r.begin, &r.end, 0, false)?.len()))
            })
            .expect("read")
    }

    /// Claim rows removed behind the API's back (retention) leave entries
    /// that are dropped once expired: they never hold a place for good,
    /// and the count always equals the entries.
    #[test]
    fn entries_of_rows_removed_by_retention_are_dropped_once_expired() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let keys = Keys::default();
        let limits = Limits {
            max_agents: 10,
            max_claims: 2,
            agent_ttl: Duration::from_secs(60),
        };
        claim(&store, &keys, &limits, &["a", "b"], 1).expect("granted");
        assert_eq!(claims_counted(&store, &keys), (2, 2));
        store
            .transact(|t| {
                t.clear(&keys.claim("t", "a"))?;
                t.clear(&keys.claim("t", "b"))
            })
            .expect("retention");
        assert!(matches!(
            claim(&store, &keys, &limits, &["c"], 60),
            Err(ApiError::LimitExceeded {
                limit: "claims_per_user",
                max: 2,
                ..
            })
        ));
        std::thread::sleep(Duration::from_millis(1100));
        claim(&store, &keys, &limits, &["c", "d"], 60).expect("room once expired");
        assert_eq!(claims_counted(&store, &keys), (2, 2));
        // Renewing counts once.
        claim(&store, &keys, &limits, &["c", "d"], 60).expect("renewed");
        assert_eq!(claims_counted(&store, &keys), (2, 2));
    }
}
