//! The key layout of SPEC §2, tuple-encoded with `foundationdb-tuple` under one
//! root subspace (default `audit`). Both backends store exactly these bytes, so
//! an export from one can be compared key for key with the other.
//!
//! | key | value |
//! |---|---|
//! | `("audit_logs", tenant, user, session, ts_ns, event_id)` | the record as JSON ([`crate::record::AuditRecord`]) |
//! | `("sessions", tenant, user, session, "events")` | i64 LE counter (atomic ADD) |
//! | `("sessions", tenant, user, session, "type", event_type)` | i64 LE counter per event type (ADD) |
//! | `("sessions", tenant, user, session, "first_ns")` | u64 LE earliest event time (atomic MIN) |
//! | `("sessions", tenant, user, session, "last_ns")` | u64 LE latest event time (atomic MAX) |
//! | `("by_path", tenant, path, ts_ns, event_id)` | tuple `(user, session, event_type)` |
//! | `("by_checksum", tenant, checksum, path)` | u64 LE last seen time in ns (MAX) |
//! | `("monitors", monitor_id, "received")` | i64 LE events stored (ADD) |
//! | `("monitors", monitor_id, "max_seq")` | u64 LE highest `seq` seen (MAX) |
//! | `("monitors", monitor_id, "tenant")` | tenant id of the monitor's events (UTF-8) |
//! | `("dead_letter", ts_ns, id)` | JSON `{reason, detail, raw, received_at, …}` (fields in docs/storage.md) |
//! | `("agents", tenant, session)` | heartbeat (owned by the API) |
//! | `("claims", tenant, path)` | claim (owned by the API) |
//! | `("agent_index", tenant, user, until_ns, session)` | empty: a user's agent rows by when they stop mattering (API) |
//! | `("claim_index", tenant, user, expires_ns, path)` | empty: a user's claims by expiry (API) |
//! | `("api_usage", tenant, user, kind)` | i64 LE count of the user's `agent_index` or `claim_index` entries (ADD) |
//! | `("late", day, tenant)` | i64 LE count of the tenant's records of `day` (`YYYY-MM-DD`, UTC) stored after it was archived (ADD; [`crate::late`]) |
//!
//! A session's summary is the range under `("sessions", tenant, user, session)`:
//! several small keys so that every part of it is updated by an atomic
//! operation and concurrent writers never conflict.
//!
//! All ids are tuple strings; `ts_ns` is an integer (nanoseconds since the Unix
//! epoch); paths are the `path` text of the event (the lossless bytes travel in
//! the record's `path_b64`).

use foundationdb_tuple::{pack_into, unpack, PackError, Subspace, TuplePack};

/// Default root subspace name.
pub const DEFAULT_ROOT: &str = "audit";

pub const AUDIT_LOGS: &str = "audit_logs";
pub const SESSIONS: &str = "sessions";
pub const BY_PATH: &str = "by_path";
pub const BY_CHECKSUM: &str = "by_checksum";
pub const MONITORS: &str = "monitors";
pub const DEAD_LETTER: &str = "dead_letter";
pub const AGENTS: &str = "agents";
pub const CLAIMS: &str = "claims";
pub const AGENT_INDEX: &str = "agent_index";
pub const CLAIM_INDEX: &str = "claim_index";
pub const API_USAGE: &str = "api_usage";
/// Records stored after their day was archived, per day and tenant.
pub const LATE: &str = "late";
/// The API's own settings shared by every replica (the cursor key).
pub const API_CONFIG: &str = "api_config";

/// Field names under a session row.
pub const SESSION_EVENTS: &str = "events";
pub const SESSION_TYPE: &str = "type";
pub const SESSION_FIRST_NS: &str = "first_ns";
pub const SESSION_LAST_NS: &str = "last_ns";

/// Field names under a monitor row.
pub const MONITOR_RECEIVED: &str = "received";
pub const MONITOR_MAX_SEQ: &str = "max_seq";
pub const MONITOR_TENANT: &str = "tenant";
pub const MONITOR_LAST_NS: &str = "last_ns";

/// A half-open key range `[begin, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub begin: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    fn of(sub: Subspace) -> Self {
        let (begin, end) = sub.range();
        KeyRange { begin, end }
    }
}

/// A key could not be decoded as the expected tuple.
#[derive(Debug, thiserror::Error)]
#[error("key {key} is not a valid {what} key: {source}")]
pub struct KeyError {
    what: &'static str,
    key: String,
    #[source]
    source: PackError,
}

/// Key builders for one root subspace.
#[derive(Debug, Clone)]
pub struct Keys {
    root: Subspace,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_ROOT)
    }
}

impl Keys {
    /// Keys under the root subspace `(root,)`.
    pub fn new(root: &str) -> Self {
        Keys {
            root: Subspace::from(root),
        }
    }

    /// The root subspace.
    pub fn root(&self) -> &Subspace {
        &self.root
    }

    /// Everything this application stores.
    pub fn all(&self) -> KeyRange {
        KeyRange::of(self.root.clone())
    }

    /// `t` packed under the root. The buffer is sized once for a typical
    /// key (ids, a path, a timestamp) instead of growing as it is packed.
    fn key<T: TuplePack>(&self, t: &T) -> Vec<u8> {
        let prefix = self.root.bytes();
        let mut out = Vec::with_capacity(prefix.len() + 160);
        out.extend_from_slice(prefix);
        t.pack_into_vec(&mut out);
        out
    }

    fn range<T: TuplePack>(&self, t: &T) -> KeyRange {
        KeyRange::of(self.root.subspace(t))
    }

    fn decode<'a, T: foundationdb_tuple::TupleUnpack<'a>>(
        &self,
        what: &'static str,
        key: &'a [u8],
    ) -> Result<T, KeyError> {
        self.root.unpack(key).map_err(|source| KeyError {
            what,
            key: printable(key),
            source,
        })
    }

    // ---- audit_logs -------------------------------------------------------

    /// `("audit_logs", tenant, user, session, ts_ns, event_id)`.
    pub fn audit_log(
        &self,
        tenant: &str,
        user: &str,
        session: &str,
        ts_ns: i64,
        event_id: &str,
    ) -> Vec<u8> {
        self.key(&(AUDIT_LOGS, tenant, user, session, ts_ns, event_id))
    }

    /// Every record of a tenant.
    pub fn audit_logs_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(AUDIT_LOGS, tenant))
    }

    /// Every record of a user (all sessions, ordered by session then time).
    pub fn audit_logs_user(&self, tenant: &str, user: &str) -> KeyRange {
        self.range(&(AUDIT_LOGS, tenant, user))
    }

    /// Every record of a session, time-ordered.
    pub fn audit_logs_session(&self, tenant: &str, user: &str, session: &str) -> KeyRange {
        self.range(&(AUDIT_LOGS, tenant, user, session))
    }

    /// A session's records with `from_ns <= ts_ns < to_ns`, time-ordered.
    pub fn audit_logs_session_between(
        &self,
        tenant: &str,
        user: &str,
        session: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> KeyRange {
        KeyRange {
            begin: self.key(&(AUDIT_LOGS, tenant, user, session, from_ns)),
            end: self.key(&(AUDIT_LOGS, tenant, user, session, to_ns)),
        }
    }

    /// Every record in the store.
    pub fn audit_logs_all(&self) -> KeyRange {
        self.range(&(AUDIT_LOGS,))
    }

    pub fn decode_audit_log(&self, key: &[u8]) -> Result<AuditLogKey, KeyError> {
        let (tag, tenant, user, session, ts_ns, event_id): (
            String,
            String,
            String,
            String,
            i64,
            String,
        ) = self.decode("audit_logs", key)?;
        check_tag(tag, AUDIT_LOGS, key)?;
        Ok(AuditLogKey {
            tenant,
            user,
            session,
            ts_ns,
            event_id,
        })
    }

    // ---- sessions ---------------------------------------------------------

    /// The prefix holding one session's summary fields.
    pub fn session(&self, tenant: &str, user: &str, session: &str) -> KeyRange {
        self.range(&(SESSIONS, tenant, user, session))
    }

    pub fn session_events(&self, tenant: &str, user: &str, session: &str) -> Vec<u8> {
        self.key(&(SESSIONS, tenant, user, session, SESSION_EVENTS))
    }

    pub fn session_type_count(
        &self,
        tenant: &str,
        user: &str,
        session: &str,
        event_type: &str,
    ) -> Vec<u8> {
        self.key(&(SESSIONS, tenant, user, session, SESSION_TYPE, event_type))
    }

    pub fn session_first_ns(&self, tenant: &str, user: &str, session: &str) -> Vec<u8> {
        self.key(&(SESSIONS, tenant, user, session, SESSION_FIRST_NS))
    }

    pub fn session_last_ns(&self, tenant: &str, user: &str, session: &str) -> Vec<u8> {
        self.key(&(SESSIONS, tenant, user, session, SESSION_LAST_NS))
    }

    /// All session summaries of a user.
    pub fn sessions_user(&self, tenant: &str, user: &str) -> KeyRange {
        self.range(&(SESSIONS, tenant, user))
    }

    /// All session summaries of a tenant.
    pub fn sessions_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(SESSIONS, tenant))
    }

    /// All session summaries.
    pub fn sessions_all(&self) -> KeyRange {
        self.range(&(SESSIONS,))
    }

    /// Decodes any key under `sessions`.
    pub fn decode_session_field(&self, key: &[u8]) -> Result<SessionFieldKey, KeyError> {
        let els: Vec<foundationdb_tuple::Element> = self.decode("sessions", key)?;
        let s = |i: usize| els.get(i).and_then(|e| e.as_str()).map(str::to_owned);
        let bad = || KeyError {
            what: "sessions",
            key: printable(key),
            source: PackError::Message("unexpected shape".into()),
        };
        if s(0).as_deref() != Some(SESSIONS) {
            return Err(bad());
        }
        let (tenant, user, session) = match (s(1), s(2), s(3)) {
            (Some(t), Some(u), Some(se)) => (t, u, se),
            _ => return Err(bad()),
        };
        let field = match (s(4).as_deref(), els.len()) {
            (Some(SESSION_EVENTS), 5) => SessionField::Events,
            (Some(SESSION_FIRST_NS), 5) => SessionField::FirstNs,
            (Some(SESSION_LAST_NS), 5) => SessionField::LastNs,
            (Some(SESSION_TYPE), 6) => SessionField::TypeCount(s(5).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(SessionFieldKey {
            tenant,
            user,
            session,
            field,
        })
    }

    // ---- by_path ----------------------------------------------------------

    /// `("by_path", tenant, path, ts_ns, event_id)`.
    pub fn by_path(&self, tenant: &str, path: &str, ts_ns: i64, event_id: &str) -> Vec<u8> {
        self.key(&(BY_PATH, tenant, path, ts_ns, event_id))
    }

    /// Every touch of one path, time-ordered.
    pub fn by_path_range(&self, tenant: &str, path: &str) -> KeyRange {
        self.range(&(BY_PATH, tenant, path))
    }

    /// Every touch of every path in a tenant.
    pub fn by_path_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(BY_PATH, tenant))
    }

    pub fn decode_by_path(&self, key: &[u8]) -> Result<ByPathKey, KeyError> {
        let (tag, tenant, path, ts_ns, event_id): (String, String, String, i64, String) =
            self.decode("by_path", key)?;
        check_tag(tag, BY_PATH, key)?;
        Ok(ByPathKey {
            tenant,
            path,
            ts_ns,
            event_id,
        })
    }

    // ---- by_checksum ------------------------------------------------------

    /// `("by_checksum", tenant, checksum, path)`.
    pub fn by_checksum(&self, tenant: &str, checksum: &str, path: &str) -> Vec<u8> {
        self.key(&(BY_CHECKSUM, tenant, checksum, path))
    }

    /// Every path seen with this content, path-ordered.
    pub fn by_checksum_range(&self, tenant: &str, checksum: &str) -> KeyRange {
        self.range(&(BY_CHECKSUM, tenant, checksum))
    }

    pub fn by_checksum_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(BY_CHECKSUM, tenant))
    }

    pub fn decode_by_checksum(&self, key: &[u8]) -> Result<ByChecksumKey, KeyError> {
        let (tag, tenant, checksum, path): (String, String, String, String) =
            self.decode("by_checksum", key)?;
        check_tag(tag, BY_CHECKSUM, key)?;
        Ok(ByChecksumKey {
            tenant,
            checksum,
            path,
        })
    }

    // ---- monitors ---------------------------------------------------------

    pub fn monitor_received(&self, monitor_id: &str) -> Vec<u8> {
        self.key(&(MONITORS, monitor_id, MONITOR_RECEIVED))
    }

    pub fn monitor_max_seq(&self, monitor_id: &str) -> Vec<u8> {
        self.key(&(MONITORS, monitor_id, MONITOR_MAX_SEQ))
    }

    pub fn monitor_tenant(&self, monitor_id: &str) -> Vec<u8> {
        self.key(&(MONITORS, monitor_id, MONITOR_TENANT))
    }

    /// Time of the monitor's latest stored event (u64 LE ns, MAX): retention
    /// removes the monitor's row once it is older than the cutoff.
    pub fn monitor_last_ns(&self, monitor_id: &str) -> Vec<u8> {
        self.key(&(MONITORS, monitor_id, MONITOR_LAST_NS))
    }

    /// All fields of one monitor.
    pub fn monitor(&self, monitor_id: &str) -> KeyRange {
        self.range(&(MONITORS, monitor_id))
    }

    /// All monitors.
    pub fn monitors_all(&self) -> KeyRange {
        self.range(&(MONITORS,))
    }

    /// Decodes `("monitors", monitor_id, field)` into `(monitor_id, field)`.
    pub fn decode_monitor_field(&self, key: &[u8]) -> Result<(String, String), KeyError> {
        let (tag, monitor_id, field): (String, String, String) = self.decode("monitors", key)?;
        check_tag(tag, MONITORS, key)?;
        Ok((monitor_id, field))
    }

    // ---- dead_letter ------------------------------------------------------

    /// `("dead_letter", ts_ns, id)`.
    pub fn dead_letter(&self, ts_ns: i64, id: &str) -> Vec<u8> {
        self.key(&(DEAD_LETTER, ts_ns, id))
    }

    pub fn dead_letter_all(&self) -> KeyRange {
        self.range(&(DEAD_LETTER,))
    }

    /// Dead letters with `from_ns <= ts_ns < to_ns`.
    pub fn dead_letter_between(&self, from_ns: i64, to_ns: i64) -> KeyRange {
        KeyRange {
            begin: self.key(&(DEAD_LETTER, from_ns)),
            end: self.key(&(DEAD_LETTER, to_ns)),
        }
    }

    pub fn decode_dead_letter(&self, key: &[u8]) -> Result<(i64, String), KeyError> {
        let (tag, ts_ns, id): (String, i64, String) = self.decode("dead_letter", key)?;
        check_tag(tag, DEAD_LETTER, key)?;
        Ok((ts_ns, id))
    }

    // ---- agents and claims (values owned by the API) -----------------------

    /// `("agents", tenant, session)`.
    pub fn agent(&self, tenant: &str, session: &str) -> Vec<u8> {
        self.key(&(AGENTS, tenant, session))
    }

    pub fn agents_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(AGENTS, tenant))
    }

    /// Every agent row.
    pub fn agents_all(&self) -> KeyRange {
        self.range(&(AGENTS,))
    }

    /// Decodes `("agents", tenant, session)` into `(tenant, session)`.
    pub fn decode_agent(&self, key: &[u8]) -> Result<(String, String), KeyError> {
        let (tag, tenant, session): (String, String, String) = self.decode("agents", key)?;
        check_tag(tag, AGENTS, key)?;
        Ok((tenant, session))
    }

    /// `("claims", tenant, path)`.
    pub fn claim(&self, tenant: &str, path: &str) -> Vec<u8> {
        self.key(&(CLAIMS, tenant, path))
    }

    pub fn claims_tenant(&self, tenant: &str) -> KeyRange {
        self.range(&(CLAIMS, tenant))
    }

    /// Every claim row.
    pub fn claims_all(&self) -> KeyRange {
        self.range(&(CLAIMS,))
    }

    /// Decodes `("claims", tenant, path)` into `(tenant, path)`.
    pub fn decode_claim(&self, key: &[u8]) -> Result<(String, String), KeyError> {
        let (tag, tenant, path): (String, String, String) = self.decode("claims", key)?;
        check_tag(tag, CLAIMS, key)?;
        Ok((tenant, path))
    }

    // ---- per-user usage of the API (keys owned by the API) ---------------

    /// `("agent_index", tenant, user, until_ns, session)`.
    pub fn agent_index(&self, tenant: &str, user: &str, until_ns: i64, session: &str) -> Vec<u8> {
        self.key(&(AGENT_INDEX, tenant, user, until_ns, session))
    }

    /// A user's `agent_index` entries with `until_ns < before_ns`.
    pub fn agent_index_before(&self, tenant: &str, user: &str, before_ns: i64) -> KeyRange {
        KeyRange {
            begin: self.range(&(AGENT_INDEX, tenant, user)).begin,
            end: self.key(&(AGENT_INDEX, tenant, user, before_ns)),
        }
    }

    /// Every `agent_index` entry of a user.
    pub fn agent_index_user(&self, tenant: &str, user: &str) -> KeyRange {
        self.range(&(AGENT_INDEX, tenant, user))
    }

    /// Decodes `("agent_index", tenant, user, until_ns, session)` into
    /// `(until_ns, session)`.
    pub fn decode_agent_index(&self, key: &[u8]) -> Result<(i64, String), KeyError> {
        let (tag, _tenant, _user, until, session): (String, String, String, i64, String) =
            self.decode("agent_index", key)?;
        check_tag(tag, AGENT_INDEX, key)?;
        Ok((until, session))
    }

    /// `("claim_index", tenant, user, expires_ns, path)`.
    pub fn claim_index(&self, tenant: &str, user: &str, expires_ns: i64, path: &str) -> Vec<u8> {
        self.key(&(CLAIM_INDEX, tenant, user, expires_ns, path))
    }

    /// A user's `claim_index` entries with `expires_ns < before_ns`.
    pub fn claim_index_before(&self, tenant: &str, user: &str, before_ns: i64) -> KeyRange {
        KeyRange {
            begin: self.range(&(CLAIM_INDEX, tenant, user)).begin,
            end: self.key(&(CLAIM_INDEX, tenant, user, before_ns)),
        }
    }

    /// Every `claim_index` entry of a user.
    pub fn claim_index_user(&self, tenant: &str, user: &str) -> KeyRange {
        self.range(&(CLAIM_INDEX, tenant, user))
    }

    /// Decodes `("claim_index", tenant, user, expires_ns, path)` into
    /// `(expires_ns, path)`.
    pub fn decode_claim_index(&self, key: &[u8]) -> Result<(i64, String), KeyError> {
        let (tag, _tenant, _user, expires, path): (String, String, String, i64, String) =
            self.decode("claim_index", key)?;
        check_tag(tag, CLAIM_INDEX, key)?;
        Ok((expires, path))
    }

    /// `("api_usage", tenant, user, kind)`: an i64 LE counter.
    pub fn api_usage(&self, tenant: &str, user: &str, kind: &str) -> Vec<u8> {
        self.key(&(API_USAGE, tenant, user, kind))
    }

    // ---- late records (crate::late) -----------------------------------------

    /// `("late", day, tenant)`: an i64 LE count; `day` is `YYYY-MM-DD` (UTC).
    pub fn late(&self, day: &str, tenant: &str) -> Vec<u8> {
        self.key(&(LATE, day, tenant))
    }

    /// Every `late` marker, oldest day first.
    pub fn late_all(&self) -> KeyRange {
        self.range(&(LATE,))
    }

    /// The `late` markers of days before `day` (`YYYY-MM-DD`: such strings
    /// sort like the days they name).
    pub fn late_before(&self, day: &str) -> KeyRange {
        KeyRange {
            begin: self.late_all().begin,
            end: self.key(&(LATE, day)),
        }
    }

    /// Decodes `("late", day, tenant)` into `(day, tenant)`.
    pub fn decode_late(&self, key: &[u8]) -> Result<(String, String), KeyError> {
        let (tag, day, tenant): (String, String, String) = self.decode("late", key)?;
        check_tag(tag, LATE, key)?;
        Ok((day, tenant))
    }

    /// The key that seals the API's cursors (see `api::cursor`).
    pub fn api_cursor_key(&self) -> Vec<u8> {
        self.key(&(API_CONFIG, "cursor_key"))
    }
}

fn check_tag(tag: String, want: &'static str, key: &[u8]) -> Result<(), KeyError> {
    if tag == want {
        Ok(())
    } else {
        Err(KeyError {
            what: want,
            key: printable(key),
            source: PackError::Message(format!("row is {tag:?}").into()),
        })
    }
}

/// Decoded `audit_logs` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogKey {
    pub tenant: String,
    pub user: String,
    pub session: String,
    pub ts_ns: i64,
    pub event_id: String,
}

/// Which part of a session summary a `sessions` key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionField {
    Events,
    TypeCount(String),
    FirstNs,
    LastNs,
}

/// Decoded `sessions` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFieldKey {
    pub tenant: String,
    pub user: String,
    pub session: String,
    pub field: SessionField,
}

/// Decoded `by_path` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByPathKey {
    pub tenant: String,
    pub path: String,
    pub ts_ns: i64,
    pub event_id: String,
}

/// Decoded `by_checksum` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByChecksumKey {
    pub tenant: String,
    pub checksum: String,
    pub path: String,
}

/// The `by_path` value: who touched the file and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTouch {
    pub user: String,
    pub session: String,
    pub event_type: String,
}

impl PathTouch {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        pack_into(
            &(
                self.user.as_str(),
                self.session.as_str(),
                self.event_type.as_str(),
            ),
            &mut out,
        );
        out
    }

    pub fn decode(value: &[u8]) -> Result<Self, KeyError> {
        let (user, session, event_type): (String, String, String) =
            unpack(value).map_err(|source| KeyError {
                what: "by_path value",
                key: printable(value),
                source,
            })?;
        Ok(PathTouch {
            user,
            session,
            event_type,
        })
    }
}

/// Encodes a counter operand / value: i64 little-endian, as FDB's ADD uses.
pub fn encode_i64(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Decodes a counter written by atomic ADD (missing bytes are zero, like FDB).
pub fn decode_i64(v: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    i64::from_le_bytes(b)
}

/// Encodes a MAX/MIN operand: u64 little-endian.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Decodes a value written by atomic MAX/MIN.
pub fn decode_u64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_le_bytes(b)
}

/// A key shown for humans (printable ASCII kept, the rest `\xNN`).
pub fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_log_keys_sort_by_time_then_id_within_a_session() {
        let k = Keys::default();
        let a = k.audit_log("t", "u", "s", 5, "b");
        let b = k.audit_log("t", "u", "s", 10, "a");
        let c = k.audit_log("t", "u", "s", 10, "b");
        assert!(a < b && b < c);
        let r = k.audit_logs_session("t", "u", "s");
        for key in [&a, &b, &c] {
            assert!(r.begin <= *key && *key < r.end);
        }
        // Another session with a common prefix is outside the range.
        let other = k.audit_log("t", "u", "s2", 1, "a");
        assert!(!(r.begin <= other && other < r.end));
        // Negative time sorts before positive (tuple integer encoding).
        assert!(k.audit_log("t", "u", "s", -1, "a") < a);
    }

    #[test]
    fn keys_are_the_documented_tuples() {
        let k = Keys::default();
        let key = k.audit_log("acme", "alice", "s-1", 42, "e1");
        let expect = foundationdb_tuple::pack(&(
            "audit",
            ("audit_logs", "acme", "alice", "s-1", 42i64, "e1"),
        ));
        // The root subspace is the packed string "audit"; the row follows it.
        let mut manual = foundationdb_tuple::pack(&"audit");
        manual.extend(foundationdb_tuple::pack(&(
            "audit_logs",
            "acme",
            "alice",
            "s-1",
            42i64,
            "e1",
        )));
        assert_eq!(key, manual);
        assert_ne!(key, expect, "rows are not nested tuples");
        assert!(key.starts_with(b"\x02audit\x00\x02audit_logs\x00"));
    }

    #[test]
    fn decoders_round_trip() {
        let k = Keys::new("root");
        let d = k
            .decode_audit_log(&k.audit_log("t", "u", "s", 7, "e"))
            .expect("decode");
        assert_eq!(
            d,
            AuditLogKey {
                tenant: "t".into(),
                user: "u".into(),
                session: "s".into(),
                ts_ns: 7,
                event_id: "e".into()
            }
        );
        let p = k
            .decode_by_path(&k.by_path("t", "a/b\0c", 3, "e"))
            .expect("decode");
        assert_eq!(p.path, "a/b\0c");
        let c = k
            .decode_by_checksum(&k.by_checksum("t", "sha256:ab", "x"))
            .expect("decode");
        assert_eq!(c.checksum, "sha256:ab");
        assert_eq!(
            k.decode_monitor_field(&k.monitor_max_seq("m")).expect("m"),
            ("m".into(), MONITOR_MAX_SEQ.into())
        );
        assert_eq!(
            k.decode_dead_letter(&k.dead_letter(9, "x")).expect("dl"),
            (9, "x".into())
        );
        assert_eq!(
            k.decode_agent(&k.agent("t", "s")).expect("a"),
            ("t".into(), "s".into())
        );
        assert_eq!(
            k.decode_claim(&k.claim("t", "p")).expect("c"),
            ("t".into(), "p".into())
        );
        let f = k
            .decode_session_field(&k.session_type_count("t", "u", "s", "move"))
            .expect("s");
        assert_eq!(f.field, SessionField::TypeCount("move".into()));
        let f = k
            .decode_session_field(&k.session_first_ns("t", "u", "s"))
            .expect("s");
        assert_eq!(f.field, SessionField::FirstNs);
        // A key of another row is rejected, not misread.
        assert!(k.decode_by_path(&k.claim("t", "p")).is_err());
        assert!(k.decode_audit_log(b"garbage").is_err());
        let touch = PathTouch {
            user: "u".into(),
            session: "s".into(),
            event_type: "create".into(),
        };
        assert_eq!(PathTouch::decode(&touch.encode()).expect("touch"), touch);
    }

    #[test]
    fn late_markers_are_tuples_by_day_then_tenant() {
        let k = Keys::default();
        let key = k.late("2026-11-26", "acme");
        let mut manual = foundationdb_tuple::pack(&"audit");
        manual.extend(foundationdb_tuple::pack(&("late", "2026-11-26", "acme")));
        assert_eq!(key, manual);
        assert_eq!(
            k.decode_late(&key).expect("late"),
            ("2026-11-26".into(), "acme".into())
        );
        assert!(k.decode_late(&k.claim("t", "p")).is_err());
        let before = k.late_before("2026-11-26");
        assert!(
            before.begin <= k.late("2026-11-25", "zz") && k.late("2026-11-25", "zz") < before.end
        );
        assert!(k.late("2026-11-26", "") >= before.end);
        let all = k.late_all();
        assert!(all.begin <= key && key < all.end);
    }

    #[test]
    fn session_between_is_half_open() {
        let k = Keys::default();
        let r = k.audit_logs_session_between("t", "u", "s", 10, 20);
        assert!(r.begin <= k.audit_log("t", "u", "s", 10, "a"));
        assert!(k.audit_log("t", "u", "s", 19, "zzz") < r.end);
        assert!(k.audit_log("t", "u", "s", 20, "a") >= r.end);
    }

    #[test]
    fn counters_decode_like_fdb() {
        assert_eq!(decode_i64(&encode_i64(-3)), -3);
        assert_eq!(decode_u64(&encode_u64(u64::MAX)), u64::MAX);
        assert_eq!(decode_i64(&[1]), 1);
    }
}
