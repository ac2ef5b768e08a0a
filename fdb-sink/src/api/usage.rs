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
//!   `until_ns` (also stored in the row) is the later of the last heartbeat
//!   and the latest expiry of the session's claims (`claims_until_ns`):
//!   once `--agent-ttl` has passed after it, the session is `dead` and none
//!   of its claims is live, so nothing depends on the row but the listing
//!   of a dead agent. A session that reported `Stopped` sits at 0: its
//!   claims block no one, so it counts no longer and is evicted first. A
//!   claim whose holder has no row blocks no one either.
//! - `("claim_index", tenant, user, expires_ns, path)` per claim row.
//! - `("api_usage", tenant, user, "agents" | "claims")`: the number of the
//!   user's entries in each index.
//!
//! A request that would add a row reads the counter (on FoundationDB a read
//! conflict: two racing requests of one user serialise, and the second sees
//! the first's count; the embedded store runs writes one at a time) and,
//! before refusing, cleans as it goes: a claim first removes up to
//! [`CLEAN_BATCH`] of the user's expired claims (their rows and entries),
//! as many as fit in the transaction by FoundationDB's count
//! ([`super::txn_size`]),
//! and a new session at the cap evicts the user's oldest agent rows that no
//! longer matter (above), oldest first. Only what is live counts, then: a
//! user is refused (429 `limit_exceeded`) only while the cap is filled by
//! unexpired claims, or by agent rows of sessions that have not reported
//! `Stopped` and are alive, or were within `--agent-ttl`, or hold unexpired
//! claims. The counters change by one atomic add per user and transaction.
//!
//! Rows written before the indexes existed have none: a heartbeat or claim
//! indexes them then (counted, never refused), and retention removes the
//! others. An index entry whose row was removed by retention or belongs to
//! someone else by now is dropped when cleaning reaches it.

use std::time::Duration;

use super::agents::{AgentRow, AgentStatus};
use super::claims::ClaimRow;
use super::{txn_size, ApiError};
use crate::keys::{decode_i64, Keys};
use crate::store::{StoreError, Txn};
use crate::timespec::format_ns;

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

// ---- counter changes -------------------------------------------------------

/// Changes to the users' claim counters, applied with one atomic add per
/// user when the transaction's work is done ([`Deltas::apply`]): each add is
/// a mutation and a write conflict range on FoundationDB.
#[derive(Debug, Default)]
pub struct Deltas(std::collections::BTreeMap<String, i64>);

impl Deltas {
    /// Adds `delta` to `user`'s claim count.
    pub fn claims(&mut self, user: &str, delta: i64) {
        *self.0.entry(user.to_owned()).or_default() += delta;
    }

    /// What is pending for `user`.
    fn pending(&self, user: &str) -> i64 {
        self.0.get(user).copied().unwrap_or(0)
    }

    /// Writes the changes: one add per user whose count changed.
    pub fn apply(self, txn: &mut dyn Txn, keys: &Keys, tenant: &str) -> Result<(), StoreError> {
        for (user, delta) in self.0 {
            if delta != 0 {
                add(txn, keys, tenant, &user, CLAIMS, delta)?;
            }
        }
        Ok(())
    }
}

// ---- agent rows -------------------------------------------------------------

/// Writes a session's agent row (`old` as read in this transaction), keeping
/// its owner's `agent_index` entry and count in step. `new.claims_until_ns`
/// may carry the expiry of a claim just granted; it becomes the latest of
/// that and the old row's. The row's place (`until_ns`) is the later of that
/// and the heartbeat's time, or 0 for a session that reported `Stopped`:
/// its claims block no one, so its row no longer counts and is the first
/// evicted. A new session over its owner's cap is refused (`Ok(Err(_))`,
/// the row not written), and so is a row over the store's value limit.
pub fn put_agent(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    old: Option<&AgentRow>,
    mut new: AgentRow,
    limits: &Limits,
    now: i64,
) -> Result<Result<AgentRow, ApiError>, StoreError> {
    let claims_until = new
        .claims_until_ns
        .unwrap_or(0)
        .max(old.map_or(0, |o| o.claims_until(now)));
    new.claims_until_ns = Some(claims_until);
    let until = if new.heartbeat && new.status == AgentStatus::Stopped {
        0
    } else {
        claims_until.max(new.received_ns)
    };
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
            let evicted = match admit_agent(txn, keys, tenant, user, limits, now)? {
                Ok(evicted) => evicted,
                Err(e) => return Ok(Err(e)),
            };
            add(txn, keys, tenant, user, AGENTS, 1 - evicted)?;
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
/// that no longer matter when at the cap (the number evicted; the caller
/// adds to the count), else refuses, naming why the first row to free its
/// place still counts.
fn admit_agent(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    limits: &Limits,
    now: i64,
) -> Result<Result<i64, ApiError>, StoreError> {
    let max = i64::try_from(limits.max_agents).unwrap_or(i64::MAX);
    let mut n = count(txn, keys, tenant, user, AGENTS)?;
    if n < max {
        return Ok(Ok(0));
    }
    let ttl = ns(limits.agent_ttl);
    let want = usize::try_from(n - max + 1)
        .unwrap_or(usize::MAX)
        .min(EVICT_BATCH);
    let r = keys.agent_index_before(tenant, user, now.saturating_sub(ttl));
    let mut evicted = 0;
    let entries = txn
        .get_range(&r.begin, &r.end, want, false)?
        .into_iter()
        .map(|(key, _)| {
            let (until, session) = keys
                .decode_agent_index(&key)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((key, until, session))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // The rows of the entries, read together. A row is cleared only when it
    // holds the entry's place, and a session's row holds one place: reading
    // them before clearing any finds what reading each in turn would.
    let sessions: Vec<String> = entries.iter().map(|(_, _, s)| s.clone()).collect();
    let rows = super::agents::agent_rows(txn, keys, tenant, &sessions)?;
    for ((key, until, session), row) in entries.into_iter().zip(rows) {
        if row.is_some_and(|r| r.user_id == user && r.until_ns == Some(until)) {
            txn.clear(&keys.agent(tenant, &session))?;
            tracing::debug!(tenant, user, session, "agent row evicted for a new session");
        }
        txn.clear(&key)?;
        evicted += 1;
        n -= 1;
    }
    if n < max {
        return Ok(Ok(evicted));
    }
    if evicted > 0 {
        // Not refused before the count is right: the evictions commit with
        // the refusal.
        add(txn, keys, tenant, user, AGENTS, -evicted)?;
    }
    // The oldest row frees its place `--agent-ttl` after its `until_ns`
    // (unless it is renewed meanwhile).
    let all = keys.agent_index_user(tenant, user);
    let (retry, why) = match txn.get_range(&all.begin, &all.end, 1, false)?.first() {
        Some((k, _)) => {
            let (until, session) = keys
                .decode_agent_index(k)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row = super::agents::agent_row(txn, keys, tenant, &session)?;
            let frees = until.saturating_add(ttl);
            let reason = match row {
                Some(r) if r.heartbeat && until <= r.received_ns => format!(
                    "sent its last heartbeat {}s ago",
                    now.saturating_sub(r.received_ns).max(0) / 1_000_000_000
                ),
                Some(r) if r.heartbeat => format!(
                    "may hold claims until {} (a heartbeat with status Stopped ends that)",
                    format_ns(r.claims_until(now))
                ),
                _ => format!("holds claims until {}", format_ns(until)),
            };
            (
                secs_until(frees, now),
                format!(
                    "; the first to stop counting, session {session:?}, {reason} and counts \
                     until {}",
                    format_ns(frees)
                ),
            )
        }
        None => (1, String::new()),
    };
    Ok(Err(limit_error(
        "agents_per_user",
        limits.max_agents,
        format!(
            "user {user:?} already has {n} agent sessions that still count, the limit of \
             --api-max-agents-per-user ({}): a session counts until --agent-ttl ({}s) after \
             the later of its last heartbeat and its latest claim's expiry, or until it \
             reports status Stopped{why}; reuse a session, stop one, or retry later",
            limits.max_agents,
            limits.agent_ttl.as_secs(),
        ),
        retry,
    )))
}

// ---- claims -----------------------------------------------------------------

/// What one round of cleaning did.
struct Cleaned {
    /// Claims removed.
    removed: i64,
    /// Estimated FoundationDB bytes spent ([`super::txn_size`]).
    spent: usize,
    /// True when expired claims are left.
    more: bool,
}

/// Removes `user`'s claims expired at `now` (their rows, when still theirs,
/// and their entries), at most [`CLEAN_BATCH`] and as many as `budget`
/// estimated bytes allow (at least one). The caller adds to the count.
fn clean_claims(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    now: i64,
    budget: usize,
) -> Result<Cleaned, StoreError> {
    // Expired means `expires_ns <= now`, as for a conflict.
    let r = keys.claim_index_before(tenant, user, now.saturating_add(1));
    let entries = txn.get_range(&r.begin, &r.end, CLEAN_BATCH + 1, false)?;
    let mut spent = txn_size::read_range(r.begin.len(), r.end.len());
    let mut decoded = Vec::with_capacity(CLEAN_BATCH.min(entries.len()));
    let mut more = false;
    for (key, _) in entries {
        let (expires, path) = keys
            .decode_claim_index(&key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row_key = keys.claim(tenant, &path);
        let cost = clean_cost(row_key.len(), key.len());
        if decoded.len() == CLEAN_BATCH || (!decoded.is_empty() && spent + cost > budget) {
            more = true;
            break;
        }
        spent += cost;
        decoded.push((key, expires, row_key));
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
    Ok(Cleaned {
        removed: decoded.len() as i64,
        spent,
        more,
    })
}

/// Estimated FoundationDB bytes of removing one expired claim: its row read
/// and cleared, its entry cleared.
pub fn clean_cost(row_key_len: usize, entry_len: usize) -> usize {
    txn_size::read(row_key_len) + txn_size::clear(row_key_len) + txn_size::clear(entry_len)
}

/// Checks that `user` may hold the claims of `paths`, whose current rows
/// are `replaced` (a row that is counted and replaced frees its place),
/// cleaning the user's expired claims first with at most `clean_budget`
/// estimated bytes. Writes nothing but the cleaning (its count change goes
/// to `deltas`). Granted: for each of `replaced`, whether its index entry
/// is there (counted); the caller removes those.
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
    clean_budget: usize,
    deltas: &mut Deltas,
) -> Result<Result<Vec<bool>, ApiError>, StoreError> {
    let max = i64::try_from(limits.max_claims).unwrap_or(i64::MAX);
    // At most this many of `paths` replace a counted claim of the user.
    let mine = replaced.iter().filter(|(_, r)| r.user_id == user).count();
    let stored = count(txn, keys, tenant, user, CLAIMS)?;
    let mut left = clean_budget;
    let mut more;
    loop {
        let c = clean_claims(txn, keys, tenant, user, now, left)?;
        deltas.claims(user, -c.removed);
        left = left.saturating_sub(c.spent);
        more = c.more;
        let n = stored + deltas.pending(user);
        let adding = i64::try_from(paths.saturating_sub(mine)).unwrap_or(i64::MAX);
        // Keep cleaning while expired claims are what fills the cap, as far
        // as the transaction's budget allows.
        if n.saturating_add(adding) <= max || !more || left == 0 {
            break;
        }
    }
    // Each entry read once: the read also makes a concurrent clean of the
    // same entry conflict on FoundationDB.
    let entries: Vec<Vec<u8>> = replaced
        .iter()
        .map(|(p, r)| keys.claim_index(tenant, &r.user_id, r.expires_ns, p))
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let counted = txn.exist_many(&refs)?;
    let freed = replaced
        .iter()
        .zip(&counted)
        .filter(|((_, r), c)| **c && r.user_id == user)
        .count();
    let n = stored + deltas.pending(user);
    let adding = i64::try_from(paths.saturating_sub(freed)).unwrap_or(i64::MAX);
    if n.saturating_add(adding) <= max {
        return Ok(Ok(counted));
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
    let message = if more {
        format!(
            "user {user:?} holds {n} claims, some of them expired and still being removed \
             (each claim removes as many as fit in one transaction); {adding} more would pass \
             the limit of --api-max-claims-per-user ({}): retry",
            limits.max_claims
        )
    } else {
        format!(
            "user {user:?} holds {n} live claims; {adding} more would pass the limit of \
             --api-max-claims-per-user ({}): release claims no longer needed, or retry \
             once some expire",
            limits.max_claims
        )
    };
    Ok(Err(limit_error(
        "claims_per_user",
        limits.max_claims,
        message,
        retry,
    )))
}

/// Drops the index entries of claim rows (path, old row: about to be
/// cleared) that are there, reading them first, together (so that a
/// concurrent clean of the same entry conflicts); their count changes go
/// to `deltas`.
pub fn forget_claims(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    claims: &[(&str, &ClaimRow)],
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    let entries: Vec<Vec<u8>> = claims
        .iter()
        .map(|(path, old)| keys.claim_index(tenant, &old.user_id, old.expires_ns, path))
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let present = txn.exist_many(&refs)?;
    for ((path, old), there) in claims.iter().zip(present) {
        if there {
            drop_claim(txn, keys, tenant, path, old, deltas)?;
        }
    }
    Ok(())
}

/// Drops the index entry of claim row `old` of `path`, known to be there.
pub fn drop_claim(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    old: &ClaimRow,
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    txn.clear(&keys.claim_index(tenant, &old.user_id, old.expires_ns, path))?;
    deltas.claims(&old.user_id, -1);
    Ok(())
}

/// Records claim row `row` of `path` (just written) in its user's index.
pub fn record_claim(
    txn: &mut dyn Txn,
    keys: &Keys,
    tenant: &str,
    path: &str,
    row: &ClaimRow,
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    txn.set(
        &keys.claim_index(tenant, &row.user_id, row.expires_ns, path),
        b"",
    )?;
    deltas.claims(&row.user_id, 1);
    Ok(())
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
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        metered_claim(store, keys, limits, &paths, ttl_seconds).0
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

    /// A new embedded store, the keys, and limits of `max_claims` claims
    /// (10 agents, a 60 s agent TTL); the directory lives as long as the
    /// first element.
    fn fixture(max_claims: u64) -> (tempfile::TempDir, EmbeddedStore, Keys, Limits) {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let limits = Limits {
            max_agents: 10,
            max_claims,
            agent_ttl: Duration::from_secs(60),
        };
        (dir, store, Keys::default(), limits)
    }

    /// Claim rows removed behind the API's back (retention) leave entries
    /// that are dropped once expired: they never hold a place for good,
    /// and the count always equals the entries.
    #[test]
    fn entries_of_rows_removed_by_retention_are_dropped_once_expired() {
        let (_dir, store, keys, limits) = fixture(2);
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

    /// A new session over its user's cap evicts the rows that no longer
    /// count with one read of all their rows, not one read per row.
    #[test]
    fn eviction_reads_the_evicted_rows_together() {
        use crate::api::agents::{AgentRow, AgentStatus};
        use crate::api::counting::CountingReads;
        let (_dir, store, keys, mut limits) = fixture(10);
        limits.max_agents = 100;
        let now = crate::timespec::now_ns();
        let row = |session: String, received_ns: i64| AgentRow {
            session_id: session,
            user_id: "alice".into(),
            agent_type: "x".into(),
            status: AgentStatus::Active,
            last_heartbeat: None,
            files_claimed: Vec::new(),
            received_ns,
            heartbeat: true,
            until_ns: None,
            claims_until_ns: None,
        };
        // 40 sessions that sent their last heartbeat an hour ago.
        let old = now - 3_600_000_000_000;
        store
            .transact(|txn| {
                for i in 0..40 {
                    let r = row(format!("s{i:02}"), old + i);
                    if let Err(e) = put_agent(txn, &keys, "t", None, r, &limits, old + i)? {
                        return Err(StoreError::Internal(e.to_string()));
                    }
                }
                Ok(())
            })
            .expect("rows");
        // At a cap of 25, a new session evicts 16 of them.
        limits.max_agents = 25;
        let calls = store
            .transact(|txn| {
                let mut c = CountingReads::new(txn);
                let r = put_agent(
                    &mut c,
                    &keys,
                    "t",
                    None,
                    row("new".into(), now),
                    &limits,
                    now,
                )?;
                if let Err(e) = r {
                    return Err(StoreError::Internal(e.to_string()));
                }
                Ok(c.calls())
            })
            .expect("admitted");
        let left = store
            .read(|t| {
                let r = keys.agents_tenant("t");
                Ok(t.get_range(&r.begin, &r.end, 0, false)?.len())
            })
            .expect("read");
        assert_eq!(left, 40 - EVICT_BATCH + 1, "16 evicted, one added");
        assert!(
            calls <= 4,
            "evicting {EVICT_BATCH} rows made {calls} read calls"
        );
    }

    use crate::api::txn_size as size;

    /// Tallies a transaction's size as FoundationDB counts it, from the
    /// operations it runs: mutations and read and write conflict ranges
    /// (each operation priced as [`size`] prices it).
    struct Metered<'a> {
        txn: &'a mut dyn Txn,
        bytes: usize,
    }

    impl crate::store::ReadTxn for Metered<'_> {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.bytes += size::read(key.len());
            self.txn.get(key)
        }
        fn get_range(
            &mut self,
            begin: &[u8],
            end: &[u8],
            limit: usize,
            reverse: bool,
        ) -> Result<Vec<crate::store::Kv>, StoreError> {
            self.bytes += size::read_range(begin.len(), end.len());
            self.txn.get_range(begin, end, limit, reverse)
        }
    }

    impl Txn for Metered<'_> {
        fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.bytes += size::set(key.len(), value.len());
            self.txn.set(key, value)
        }
        fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.bytes += size::clear(key.len());
            self.txn.clear(key)
        }
        fn clear_range(&mut self, begin: &[u8], end: &[u8]) -> Result<(), StoreError> {
            self.bytes += 2 * (begin.len() + end.len());
            self.txn.clear_range(begin, end)
        }
        fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
            self.bytes += size::add(key.len());
            self.txn.atomic_add(key, delta)
        }
        fn atomic_max(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.bytes += size::add(key.len());
            self.txn.atomic_max(key, value)
        }
        fn atomic_min(&mut self, key: &[u8], value: u64) -> Result<(), StoreError> {
            self.bytes += size::add(key.len());
            self.txn.atomic_min(key, value)
        }
        fn written_bytes(&self) -> usize {
            self.txn.written_bytes()
        }
    }

    /// Session "s" of user "alice" claims `paths` in tenant "t"; returns the
    /// answer and the transaction's size by FoundationDB's count.
    fn metered_claim(
        store: &EmbeddedStore,
        keys: &Keys,
        limits: &Limits,
        paths: &[String],
        ttl_seconds: u64,
    ) -> (Result<(), ApiError>, usize) {
        let caller = Caller {
            tenant: "t".into(),
            user: "alice".into(),
            role: Role::User,
        };
        let req = ClaimRequest {
            session_id: "s".into(),
            agent_type: "x".into(),
            paths: paths.to_vec(),
            ttl_seconds,
        };
        let mut bytes = 0;
        let out = store
            .transact(|txn| {
                let mut m = Metered { txn, bytes: 0 };
                let out = claim_in(&mut m, keys, &caller, &req, &req.paths, limits);
                bytes = m.bytes;
                out
            })
            .expect("store");
        (out.map(|_| ()), bytes)
    }

    fn long_paths(from: usize, n: usize, len: usize) -> Vec<String> {
        (from..from + n)
            .map(|i| format!("{}{i:06}", "d/".repeat(len / 2 - 3)))
            .collect()
    }

    /// Cleaning 1000 expired claims of 1.2 kB paths weighs over 10 MB by
    /// FoundationDB's count: a claim cleans only as many as fit, so its
    /// transaction stays under the limit, and the next claims clean the rest.
    #[test]
    fn cleaning_fits_in_a_foundationdb_transaction() {
        let (_dir, store, keys, limits) = fixture(10_000);
        for batch in 0..5 {
            let (r, bytes) = metered_claim(
                &store,
                &keys,
                &limits,
                &long_paths(batch * 200, 200, 1200),
                2,
            );
            r.expect("granted");
            assert!(bytes < crate::store::limits::MAX_TXN_BYTES, "{bytes}");
        }
        assert_eq!(claims_counted(&store, &keys), (1000, 1000));
        std::thread::sleep(Duration::from_millis(2100));
        let mut rounds = 0;
        loop {
            let (r, bytes) = metered_claim(&store, &keys, &limits, &["x".to_owned()], 60);
            r.expect("granted");
            assert!(
                bytes < crate::store::limits::MAX_TXN_BYTES,
                "round {rounds}: {bytes} bytes"
            );
            rounds += 1;
            if claims_counted(&store, &keys) == (1, 1) {
                break;
            }
            assert!(rounds < 10, "{:?}", claims_counted(&store, &keys));
        }
        assert!(rounds > 1, "cleaned in one transaction");
    }

    /// A claim too large for one FoundationDB transaction is refused with
    /// 413 before anything is written; the largest accepted one, renewed,
    /// fits.
    #[test]
    fn a_claim_too_large_for_one_transaction_is_refused() {
        let (_dir, store, keys, limits) = fixture(10_000);
        let (r, _) = metered_claim(&store, &keys, &limits, &long_paths(0, 1000, 4000), 60);
        match r {
            Err(e @ ApiError::PayloadTooLarge(_)) => {
                assert!(e.to_string().contains("fewer or shorter paths"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(claims_counted(&store, &keys), (0, 0), "nothing written");
        let mut n = 1000;
        let paths = loop {
            let paths = long_paths(0, n, 4000);
            let cost = crate::api::claims::claim_cost(&keys, "t", "alice", "s", &paths, 200, 512);
            if cost <= txn_size::MAX_REQUEST_BYTES {
                break paths;
            }
            n -= 1;
        };
        assert!(n >= 50, "{n}");
        // What was claimed in one request can be released in one.
        let release = crate::api::claims::release_cost(&keys, "t", "s", &paths);
        assert!(release <= txn_size::MAX_REQUEST_BYTES, "{release}");
        for _ in 0..2 {
            let (r, bytes) = metered_claim(&store, &keys, &limits, &paths, 60);
            r.expect("granted");
            assert!(bytes <= txn_size::MAX_REQUEST_BYTES, "{bytes}");
        }
        // As docs/api.md says: 1000 paths of 230 bytes, or 100 of 3 kB,
        // fit; each path weighs about 14 times its length plus 1.7 kB.
        let cost = |n, len| {
            crate::api::claims::claim_cost(
                &keys,
                "t",
                "alice",
                "s",
                &long_paths(0, n, len),
                200,
                512,
            )
        };
        assert!(
            cost(1000, 230) <= txn_size::MAX_REQUEST_BYTES,
            "{}",
            cost(1000, 230)
        );
        assert!(
            cost(100, 3000) <= txn_size::MAX_REQUEST_BYTES,
            "{}",
            cost(100, 3000)
        );
        let per_path = (cost(100, 1000) - cost(100, 100)) / 100;
        assert!((13 * 900..=15 * 900).contains(&per_path), "{per_path}");
        let base = cost(100, 100) / 100 - 14 * 100;
        assert!((1500..=2000).contains(&base), "{base}");
        // Renewing 1000 claims of typical paths is one request.
        let short = long_paths(0, 1000, 200);
        for _ in 0..2 {
            let (r, bytes) = metered_claim(&store, &keys, &limits, &short, 60);
            r.expect("granted");
            assert!(bytes <= txn_size::MAX_REQUEST_BYTES, "{bytes}");
        }
    }
}
