//! Who may act for a session: the owner check of heartbeats, claims and
//! releases.
//!
//! A session's owner is the `user_id` of its `("agents", tenant, session)`
//! row. A session that has no row yet belongs to the user whose audit
//! records it holds: the first heartbeat or claim of a role `user` caller
//! looks at the SPEC's `("sessions", tenant, user, session)` summaries, first
//! the caller's own (one read), then, when the caller has none, the other
//! users' of the tenant. That second look is a skip scan: one read finds the
//! next user that has any session, one more jumps to that user's summary of
//! this session id, so it costs about two reads per user of the tenant with
//! stored sessions, whatever their number of sessions. It is bounded by
//! [`MAX_OWNER_SCAN_READS`]; past that the request is granted as if no other
//! user had records of the session (logged at debug), because refusing
//! would lock an agent that starts before its session's records arrive out
//! of heartbeats and claims in any tenant with more than about 500 users.
//! That grant is safe: should another user hold records of the session, she
//! takes it back at her next request (below), and it never shows her records
//! to the caller (record queries follow the records' user, not agent rows).
//! It only happens for a session's first request, and not at all once the
//! caller's own records of the session are stored. These reads are snapshot
//! reads (no read conflicts on FoundationDB): the summaries they pass over
//! hold counters that ingest adds to with every batch, and a conflict on
//! each would make the request retry while other sessions ingest. An admin's first request
//! for a session makes the row name the user whose records the session holds
//! (the admin when none is found).
//!
//! A row written for a session by a user whose records it does not hold
//! (before this check existed, or because the records arrived after the
//! row) does not lock the records' user out: when the caller holds audit
//! records of the session and the row's user holds none, the caller takes the
//! session over (logged as `session taken over by the owner of its records`).

use super::auth::Caller;
use super::ApiError;
use crate::keys::Keys;
use crate::store::{ReadTxn, StoreError};

/// Reads the owner check may spend looking for another user's records of a
/// session (about two per user of the tenant with stored sessions).
pub const MAX_OWNER_SCAN_READS: usize = 1024;

/// Who owns the session once the request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The owner to store in the session's agent row.
    pub owner: String,
    /// True when the row named another user who holds no records of the
    /// session, and the caller, who does, takes it over.
    pub taken_over: bool,
}

/// Whether `user` has audit records of `session` (its session summary);
/// `conflict`: read with a read conflict, for a "no" that must still hold
/// when the transaction commits, else a snapshot read.
pub fn has_records(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    user: &str,
    session: &str,
    conflict: bool,
) -> Result<bool, StoreError> {
    let r = keys.session(tenant, user, session);
    // Snapshot by default: the summary's first key is the session's event
    // counter, which ingest adds to with every batch; a read conflict on it
    // would make heartbeats and claims retry while the session's events
    // stream in. Summaries only appear (retention aside), so a "yes" read
    // just before a concurrent commit is still right after it (a "no" that
    // decides a take-over is read with its conflict instead).
    let found = if conflict {
        txn.get_range(&r.begin, &r.end, 1, false)?
    } else {
        txn.get_range_snapshot(&r.begin, &r.end, 1, false)?
    };
    Ok(!found.is_empty())
}

/// What the scan for another user's records of a session found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scan {
    /// No other user has records of it.
    Nobody,
    /// Another user does (this one, the first found).
    Other(String),
    /// [`MAX_OWNER_SCAN_READS`] ran out before the tenant's sessions did.
    Unfinished,
}

/// Looks for a user other than `caller` with a session summary of
/// `session`, skipping from user to user.
fn scan_other_owner(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    caller: &str,
    session: &str,
) -> Result<Scan, StoreError> {
    let tenant_range = keys.sessions_tenant(tenant);
    let mut begin = tenant_range.begin.clone();
    for _ in 0..MAX_OWNER_SCAN_READS {
        // Snapshot reads, as in `has_records`: each would otherwise put
        // another session's event counter into the conflict set.
        let Some((key, _)) = txn
            .get_range_snapshot(&begin, &tenant_range.end, 1, false)?
            .into_iter()
            .next()
        else {
            return Ok(Scan::Nobody);
        };
        let field = keys
            .decode_session_field(&key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if field.user == caller {
            begin = keys.sessions_user(tenant, &field.user).end;
            continue;
        }
        // Tuple-encoded strings sort as their bytes do.
        match field.session.as_bytes().cmp(session.as_bytes()) {
            std::cmp::Ordering::Equal => return Ok(Scan::Other(field.user)),
            std::cmp::Ordering::Less => begin = keys.session(tenant, &field.user, session).begin,
            std::cmp::Ordering::Greater => begin = keys.sessions_user(tenant, &field.user).end,
        }
    }
    Ok(Scan::Unfinished)
}

fn belongs_to_another(session: &str) -> ApiError {
    ApiError::Forbidden(format!("session {session:?} belongs to another user"))
}

/// Decides whether `caller` may heartbeat, claim or release for `session`,
/// whose agent row names `row_owner` (`None`: no row yet). `Ok(Err(_))` is
/// the refusal to answer.
pub fn authorize(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    caller: &Caller,
    session: &str,
    row_owner: Option<&str>,
) -> Result<Result<Access, ApiError>, StoreError> {
    let tenant = caller.tenant.as_str();
    let granted = |owner: &str| {
        Ok(Ok(Access {
            owner: owner.to_owned(),
            taken_over: false,
        }))
    };
    match row_owner {
        Some(o) if o == caller.user || caller.is_admin() => granted(o),
        Some(o) => {
            // The row's user having no records is what lets the caller take
            // the session: read with its conflict, so that her first records
            // committed meanwhile make this transaction run again (a take-over
            // she could not undo, as both would then hold records).
            if has_records(txn, keys, tenant, &caller.user, session, false)?
                && !has_records(txn, keys, tenant, o, session, true)?
            {
                tracing::warn!(
                    tenant,
                    session,
                    previous_user = o,
                    user = %caller.user,
                    "session taken over by the owner of its records"
                );
                return Ok(Ok(Access {
                    owner: caller.user.clone(),
                    taken_over: true,
                }));
            }
            Ok(Err(belongs_to_another(session)))
        }
        None => {
            if has_records(txn, keys, tenant, &caller.user, session, false)? {
                return granted(&caller.user);
            }
            match scan_other_owner(txn, keys, tenant, &caller.user, session)? {
                Scan::Nobody => granted(&caller.user),
                // An admin acts for the user whose records the session holds.
                Scan::Other(owner) if caller.is_admin() => granted(&owner),
                Scan::Other(_) => Ok(Err(belongs_to_another(session))),
                Scan::Unfinished => {
                    tracing::debug!(
                        tenant,
                        session,
                        user = %caller.user,
                        reads = MAX_OWNER_SCAN_READS,
                        "owner scan budget spent; session granted to the caller"
                    );
                    granted(&caller.user)
                }
            }
        }
    }
}
