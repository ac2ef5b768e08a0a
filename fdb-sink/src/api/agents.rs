//! Agent heartbeats (the design's `AgentActivity`) and liveness; the list
//! is [`super::agent_list`].
//!
//! Liveness is judged by the server's clock when the heartbeat arrived, not
//! by the agent's `last_heartbeat` (kept as reported): `dead` when no
//! heartbeat arrived within `--agent-ttl`, else the reported status in lower
//! case (`active`, `idle`, `stopped`). A session belongs to the user whose
//! audit records it holds, else to the user whose token sent its first
//! heartbeat or made its first claim (a claim writes a row marked as having
//! no heartbeat); role `user` can neither heartbeat, claim nor release for
//! another user's session, nor see it. The check is [`super::owner`].
//!
//! Heartbeats may arrive out of order (a retry delayed by the network): once
//! an agent reported `Stopped`, one whose `last_heartbeat` is older than the
//! stored heartbeat's is ignored and answered with the stored state, so a
//! late `Active` does not bring a `Stopped` agent back. Otherwise heartbeats
//! count in the order they arrive, whatever the agent's clock says.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::owner::authorize;
use super::usage;
use super::{ApiError, ApiState};
use crate::keys::Keys;
use crate::record::valid_id;
use crate::store::{ReadTxn, StoreError, StoreExt};
use crate::timespec::{format_ns, now_ns};

/// The status an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentStatus {
    Active,
    Idle,
    Stopped,
}

/// The heartbeat body: the design's `AgentActivity`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentActivity {
    pub session_id: String,
    pub agent_type: String,
    pub status: AgentStatus,
    /// The agent's own clock (RFC 3339); informational.
    #[serde(default)]
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub files_claimed: Vec<String>,
}

/// The stored `("agents", tenant, session)` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub session_id: String,
    pub user_id: String,
    pub agent_type: String,
    pub status: AgentStatus,
    pub last_heartbeat: Option<String>,
    pub files_claimed: Vec<String>,
    /// Server time the last heartbeat arrived (ns since the epoch).
    pub received_ns: i64,
    /// False for a session that has claimed files without ever sending a
    /// heartbeat: the row only records whose session it is. Such a session
    /// is not listed, and its claims hold until their TTL.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub heartbeat: bool,
    /// The row's place in its user's `agent_index` ([`super::usage`]), ns
    /// since the epoch: the later of the last heartbeat and
    /// `claims_until_ns`, or 0 once the session reported `Stopped` (it
    /// counts no longer). Absent on rows written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ns: Option<i64>,
    /// The latest expiry of the session's claims (ns since the epoch; 0
    /// when it made none). Absent on rows written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_until_ns: Option<i64>,
}

fn yes() -> bool {
    true
}

/// Liveness of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Active,
    Idle,
    Stopped,
    Dead,
}

impl AgentRow {
    pub fn liveness(&self, now_ns: i64, ttl: Duration) -> Liveness {
        let ttl_ns = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
        match self.status {
            AgentStatus::Stopped => Liveness::Stopped,
            _ if now_ns.saturating_sub(self.received_ns) > ttl_ns => Liveness::Dead,
            AgentStatus::Active => Liveness::Active,
            AgentStatus::Idle => Liveness::Idle,
        }
    }

    /// True when its claims still block others (until their TTL for a
    /// session that never sent a heartbeat).
    pub fn holds_claims(&self, now_ns: i64, ttl: Duration) -> bool {
        !self.heartbeat
            || matches!(
                self.liveness(now_ns, ttl),
                Liveness::Active | Liveness::Idle
            )
    }

    /// Until when the session's claims may run: `claims_until_ns`, else
    /// (rows written before it) `until_ns`, else (rows written before both)
    /// the longest claim TTL from `now`, since claims taken then may still
    /// run that long.
    pub fn claims_until(&self, now_ns: i64) -> i64 {
        self.claims_until_ns.or(self.until_ns).unwrap_or_else(|| {
            let max = i64::try_from(super::claims::MAX_TTL_SECONDS).unwrap_or(i64::MAX);
            now_ns.saturating_add(max.saturating_mul(1_000_000_000))
        })
    }

    /// The row a first claim writes for a session without one, so that the
    /// session has an owner from then on.
    pub fn claim_only(session_id: &str, user_id: &str, agent_type: &str, now_ns: i64) -> Self {
        AgentRow {
            session_id: session_id.to_owned(),
            user_id: user_id.to_owned(),
            agent_type: agent_type.to_owned(),
            status: AgentStatus::Active,
            last_heartbeat: None,
            files_claimed: Vec::new(),
            received_ns: now_ns,
            heartbeat: false,
            until_ns: None,
            claims_until_ns: None,
        }
    }
}

/// An agent as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    pub session_id: String,
    pub user_id: String,
    pub agent_type: String,
    pub status: AgentStatus,
    pub liveness: Liveness,
    pub last_heartbeat: Option<String>,
    /// When the server received the last heartbeat (RFC 3339).
    pub received_at: String,
    pub files_claimed: Vec<String>,
}

impl AgentView {
    pub(crate) fn of(row: AgentRow, now: i64, ttl: Duration) -> Self {
        AgentView {
            liveness: row.liveness(now, ttl),
            received_at: format_ns(row.received_ns),
            session_id: row.session_id,
            user_id: row.user_id,
            agent_type: row.agent_type,
            status: row.status,
            last_heartbeat: row.last_heartbeat,
            files_claimed: row.files_claimed,
        }
    }
}

/// Reads one agent row.
pub fn agent_row(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    session: &str,
) -> Result<Option<AgentRow>, StoreError> {
    txn.get(&keys.agent(tenant, session))?
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("agent row: {e}")))
        })
        .transpose()
}

/// The agent rows of `sessions`, in order, read together (one round trip
/// on FoundationDB).
pub fn agent_rows(
    txn: &mut dyn ReadTxn,
    keys: &Keys,
    tenant: &str,
    sessions: &[String],
) -> Result<Vec<Option<AgentRow>>, StoreError> {
    let row_keys: Vec<Vec<u8>> = sessions.iter().map(|s| keys.agent(tenant, s)).collect();
    json_rows(txn, &row_keys, "agent row")
}

/// The JSON rows at `row_keys`, in order, read together; `what` names them
/// in the error for a row that does not parse.
pub fn json_rows<T: serde::de::DeserializeOwned>(
    txn: &mut dyn ReadTxn,
    row_keys: &[Vec<u8>],
    what: &str,
) -> Result<Vec<Option<T>>, StoreError> {
    let refs: Vec<&[u8]> = row_keys.iter().map(Vec::as_slice).collect();
    txn.get_many(&refs)?
        .into_iter()
        .map(|v| {
            v.map(|v| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
            })
            .transpose()
        })
        .collect()
}

/// Checks the shape of an agent type.
pub fn check_agent_type(t: &str) -> Result<(), ApiError> {
    if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "agent_type must be 1-128 printable characters",
        ));
    }
    Ok(())
}

/// Checks a session id.
pub fn check_session(s: &str) -> Result<(), ApiError> {
    if valid_id(s) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "session_id must be 1-128 chars of [A-Za-z0-9._:@-]",
        ))
    }
}

/// The agent's clock of a `last_heartbeat` (ns since the epoch).
fn agent_clock(t: Option<&str>) -> Option<i128> {
    t.and_then(|t| file_event::Timestamp::parse(t).ok())
        .map(|t| t.unix_nanos())
}

/// True when `stored` says the agent stopped and a heartbeat reporting
/// `last_heartbeat` is older, by the agent's clock, than the stored one: a
/// delayed copy, to ignore. Only a `Stopped` agent is kept so: an agent
/// whose clock steps back (an NTP correction, a resumed VM) must not stop
/// being heard and lose its claims. Heartbeats without `last_heartbeat` (or
/// after a row without one) are taken in the order they arrive.
fn superseded(stored: &AgentRow, last_heartbeat: Option<&str>) -> bool {
    match (
        agent_clock(stored.last_heartbeat.as_deref()),
        agent_clock(last_heartbeat),
    ) {
        (Some(stored_t), Some(new_t)) => {
            stored.heartbeat && stored.status == AgentStatus::Stopped && new_t < stored_t
        }
        _ => false,
    }
}

/// `POST /api/v5/agents/heartbeat`.
pub async fn heartbeat(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<AgentActivity>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let Json(a) = body?;
    check_session(&a.session_id)?;
    check_agent_type(&a.agent_type)?;
    if let Some(t) = a.last_heartbeat.as_deref() {
        if file_event::Timestamp::parse(t).is_err() {
            return Err(ApiError::bad_request(format!(
                "last_heartbeat {} is not an RFC 3339 time",
                super::error::shown(t)
            )));
        }
    }
    if a.files_claimed.len() > 10_000 {
        return Err(ApiError::bad_request(
            "files_claimed lists at most 10000 paths",
        ));
    }
    let ttl = state.agent_ttl;
    let limits = state.limits;
    let view = state
        .blocking(move |store, keys| {
            store.transact(|txn| {
                let old = agent_row(txn, keys, &caller.tenant, &a.session_id)?;
                let owner = old.as_ref().map(|o| o.user_id.as_str());
                let access = match authorize(txn, keys, &caller, &a.session_id, owner)? {
                    Ok(access) => access,
                    Err(e) => return Ok(Err(e)),
                };
                let now = now_ns();
                // A delayed copy of an earlier heartbeat (older by the
                // agent's clock than the stored one) changes nothing: it
                // would bring a `Stopped` agent back.
                if let Some(o) = old
                    .as_ref()
                    .filter(|o| superseded(o, a.last_heartbeat.as_deref()))
                {
                    return Ok(Ok(AgentView::of(o.clone(), now, ttl)));
                }
                let row = AgentRow {
                    session_id: a.session_id.clone(),
                    user_id: access.owner,
                    agent_type: a.agent_type.clone(),
                    status: a.status,
                    last_heartbeat: a.last_heartbeat.clone(),
                    files_claimed: a.files_claimed.clone(),
                    received_ns: now,
                    heartbeat: true,
                    until_ns: None,
                    claims_until_ns: None,
                };
                let row = match usage::put_agent(
                    txn,
                    keys,
                    &caller.tenant,
                    old.as_ref(),
                    row,
                    &limits,
                    now,
                )? {
                    Ok(row) => row,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(AgentView::of(row, now_ns(), ttl)))
            })?
        })
        .await?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_heartbeat_is_superseded() {
        let row = |t: Option<&str>| AgentRow {
            session_id: "s".into(),
            user_id: "u".into(),
            agent_type: "t".into(),
            status: AgentStatus::Stopped,
            last_heartbeat: t.map(str::to_owned),
            files_claimed: vec![],
            received_ns: 0,
            heartbeat: true,
            until_ns: None,
            claims_until_ns: None,
        };
        let stored = row(Some("2026-11-26T13:18:30Z"));
        assert!(superseded(&stored, Some("2026-11-26T13:18:00Z")));
        assert!(superseded(&stored, Some("2026-11-26T14:18:00+02:00")));
        assert!(!superseded(&stored, Some("2026-11-26T13:18:30Z")));
        assert!(!superseded(&stored, Some("2026-11-26T13:19:00Z")));
        assert!(!superseded(&stored, None));
        assert!(!superseded(&row(None), Some("2026-11-26T13:18:00Z")));
        // An agent still active whose clock stepped back is still heard.
        let active = AgentRow {
            status: AgentStatus::Active,
            ..row(Some("2026-11-26T13:18:30Z"))
        };
        assert!(!superseded(&active, Some("2026-11-26T13:18:00Z")));
    }

    #[test]
    fn liveness_follows_status_and_ttl() {
        let row = |status, received_ns| AgentRow {
            session_id: "s".into(),
            user_id: "u".into(),
            agent_type: "t".into(),
            status,
            last_heartbeat: None,
            files_claimed: vec![],
            received_ns,
            heartbeat: true,
            until_ns: None,
            claims_until_ns: None,
        };
        let ttl = Duration::from_secs(60);
        let now = 1_000_000_000_000;
        let fresh = now - 1_000_000_000;
        let stale = now - 61_000_000_000;
        assert_eq!(
            row(AgentStatus::Active, fresh).liveness(now, ttl),
            Liveness::Active
        );
        assert_eq!(
            row(AgentStatus::Idle, fresh).liveness(now, ttl),
            Liveness::Idle
        );
        assert_eq!(
            row(AgentStatus::Active, stale).liveness(now, ttl),
            Liveness::Dead
        );
        assert_eq!(
            row(AgentStatus::Stopped, fresh).liveness(now, ttl),
            Liveness::Stopped
        );
        assert!(!row(AgentStatus::Stopped, fresh).holds_claims(now, ttl));
        assert!(!row(AgentStatus::Idle, stale).holds_claims(now, ttl));
        assert!(row(AgentStatus::Idle, fresh).holds_claims(now, ttl));
    }
}
