//! The audit record: a `file-event/1` line plus the Kubernetes fields Vector
//! adds, validated strictly. Every line ends up either as an [`AuditRecord`]
//! or as a [`DeadLetter`] with a stable reason code; nothing is dropped.
//!
//! The stored record is the event's own JSON with the Kubernetes fields next
//! to it (and `metadata_truncated: true` when metadata had to be cut), so a
//! stored record is itself a valid ingest line: exporting and re-importing
//! reproduces it.

use std::collections::BTreeMap;

use file_event::{FileEvent, ParseError, Timestamp};
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::store::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Longest id (tenant, user, session, monitor, event).
pub const MAX_ID_LEN: usize = file_event::MAX_ID_LEN;

/// The Kubernetes attribution Vector's `kubernetes_logs` source adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8sFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// One stored audit record (the value under `audit_logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    #[serde(flatten)]
    pub event: FileEvent,
    #[serde(flatten)]
    pub k8s: K8sFields,
    /// True when metadata entries were removed to fit the value size limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metadata_truncated: bool,
}

impl AuditRecord {
    /// Decodes a stored value.
    pub fn from_json(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }

    pub fn tenant(&self) -> &str {
        self.event.tenant_id.as_deref().unwrap_or_default()
    }
    pub fn user(&self) -> &str {
        self.event.user_id.as_deref().unwrap_or_default()
    }
    pub fn session(&self) -> &str {
        self.event.session_id.as_deref().unwrap_or_default()
    }
}

/// A validated record, ready to write: its value is already encoded.
#[derive(Debug, Clone)]
pub struct ValidRecord {
    pub tenant: String,
    pub user: String,
    pub session: String,
    pub monitor_id: String,
    pub event_id: String,
    pub seq: u64,
    pub ts_ns: i64,
    pub event_type: &'static str,
    /// Paths to index under `by_path`: the path, plus `from` for a move.
    pub paths: Vec<String>,
    pub checksum: Option<String>,
    /// The JSON of the [`AuditRecord`].
    pub value: Vec<u8>,
    pub metadata_truncated: bool,
    /// Keys and index value, encoded during validation (which runs in
    /// parallel) so that the writer only inserts.
    pub encoded: EncodedKeys,
    /// Set by the write that stored it: true when the record was new, false
    /// when it was already stored (a redelivery).
    pub stored_new: StoredFlag,
}

/// Whether the last write of a record stored it anew (see
/// [`ValidRecord::stored_new`]), and whether any write of it did. Written by
/// the transaction that writes the record, read by the caller once the
/// commit is over.
#[derive(Debug, Default)]
pub struct StoredFlag(std::sync::atomic::AtomicU8);

/// The last run of the transaction stored the record anew.
const LAST: u8 = 1;
/// A run of a transaction stored it anew: FoundationDB runs a transaction
/// again after `commit_unknown_result`, and that run finds stored what the
/// first one committed.
const EVER: u8 = 2;

impl StoredFlag {
    pub fn set(&self, new: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if new {
            self.0.store(LAST | EVER, Relaxed);
        } else {
            self.0.fetch_and(!LAST, Relaxed);
        }
    }
    /// The last run stored the record anew.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) & LAST != 0
    }
    /// Some run stored it anew: a failed transaction may have committed it.
    pub fn ever(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) & EVER != 0
    }
}

impl Clone for StoredFlag {
    fn clone(&self) -> Self {
        StoredFlag(std::sync::atomic::AtomicU8::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// The keys of one record, built with the [`Keys`] given to validation.
#[derive(Debug, Clone)]
pub struct EncodedKeys {
    /// `audit_logs` key.
    pub audit: Vec<u8>,
    /// `by_path` keys, one per entry of `paths`.
    pub by_path: Vec<Vec<u8>>,
    /// The `by_path` value ([`crate::keys::PathTouch`]).
    pub touch: Vec<u8>,
    /// `by_checksum` key, when the event has a checksum.
    pub by_checksum: Option<Vec<u8>>,
}

/// A line that could not become a record, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable reason code (also the `reason` label of
    /// `fdb_sink_dead_letter_total`).
    pub reason: String,
    /// Human-readable explanation.
    pub detail: String,
    /// The line as received, cut to fit the value limit. For a line that
    /// is not UTF-8, a lossy reading aid (invalid bytes as U+FFFD) of its
    /// beginning: its exact bytes are in `raw_b64`. For a line the
    /// collector marked and sent with the bytes of the container's line
    /// (`message_b64`, see [`upstream`]), the collector's record without
    /// that copy, `message` last, as a reading aid. Empty for a group (see
    /// `lines`).
    pub raw: String,
    /// The exact bytes (standard base64) when `raw` cannot hold them: a line
    /// that is not UTF-8, the container's line of a marked line whose
    /// `message` could not hold it (the collector's `message_b64`), or a
    /// group of lines (each line followed by `\n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_b64: Option<String>,
    /// True when the stored bytes (`raw_b64` when present, else `raw`) are
    /// only the beginning of the line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
    /// Size of the raw line (the container's line, for one whose bytes the
    /// collector sent; or of the group's lines, newlines included) in bytes.
    pub raw_len: usize,
    /// A group (reason `invalid_lines_grouped`): how many invalid lines it
    /// holds. Absent for a dead letter of one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// A group: how many of its lines were rejected for each reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<BTreeMap<String, u64>>,
    /// When the sink received it (RFC 3339).
    pub received_at: String,
    /// True when the key time is not the line's own timestamp but the start
    /// of the UTC hour in which the sink first received it (see
    /// [`receipt_key_ts`]); `received_at` is then the exact receipt time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyed_by_receipt: bool,
    /// Key time: the line's own `timestamp` when it has a usable one, else
    /// [`receipt_key_ts`] of `received_at`.
    #[serde(skip)]
    pub ts_ns: i64,
    /// Key id: a hash of the raw bytes, so a redelivered line lands on the
    /// same key; for one keyed by its receipt, a hash of that together with
    /// the request it came in and its place there ([`receipt_scoped_id`]).
    #[serde(skip)]
    pub id: String,
}

impl DeadLetter {
    /// Lines this dead letter stands for: 1, or a group's `lines`.
    pub fn line_count(&self) -> u64 {
        self.lines.unwrap_or(1)
    }

    /// The stored bytes of the line (or of a group's lines, each followed by
    /// `\n`): `raw_b64` decoded when present, else `raw`. `None` when
    /// `raw_b64` is not valid base64 (a damaged value).
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match &self.raw_b64 {
            Some(b) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            None => Some(self.raw.clone().into_bytes()),
        }
    }

    /// Counts this dead letter's lines by reason into `by_reason` (indexed
    /// like [`reason::ALL`]; unknown reasons are not counted).
    pub fn count_lines(&self, by_reason: &mut [u64; reason::ALL.len()]) {
        let mut add = |r: &str, n: u64| {
            if let Some(i) = reason::index(r) {
                by_reason[i] += n;
            }
        };
        match &self.reasons {
            Some(map) => map.iter().for_each(|(r, n)| add(r, *n)),
            None => add(&self.reason, 1),
        }
    }
}

/// Stable dead-letter reason codes.
pub mod reason {
    /// The line is not valid UTF-8.
    pub const INVALID_UTF8: &str = "invalid_utf8";
    /// The line is not a JSON object.
    pub const INVALID_JSON: &str = "invalid_json";
    /// The collector (Vector's VRL) marked the line `dead_letter`.
    pub const UPSTREAM: &str = "upstream_dead_letter";
    /// `schema` is not `file-event/1`.
    pub const SCHEMA: &str = "bad_schema";
    /// A required field is absent.
    pub const MISSING_FIELD: &str = "missing_field";
    /// `tenant_id`, `user_id` or `session_id` is absent.
    pub const MISSING_ATTRIBUTION: &str = "missing_attribution";
    /// An id is not 1–128 chars of `[A-Za-z0-9._:@-]`.
    pub const BAD_ID: &str = "bad_id";
    /// `timestamp` is not RFC 3339.
    pub const BAD_TIMESTAMP: &str = "bad_timestamp";
    /// `timestamp` is before 1970 or after 2262 (not representable as i64 ns).
    pub const TIMESTAMP_RANGE: &str = "timestamp_out_of_range";
    /// `timestamp` is more than [`super::MAX_FUTURE_NS`] after the line was
    /// received: its day's archive and retention would never see it.
    pub const TIMESTAMP_FUTURE: &str = "timestamp_in_future";
    /// `event_type` is not one of create/update/delete/move/access.
    pub const UNKNOWN_EVENT_TYPE: &str = "unknown_event_type";
    /// A field has the wrong type or value.
    pub const BAD_FIELD: &str = "bad_field";
    /// A key built from the event would exceed 10 kB.
    pub const KEY_TOO_LARGE: &str = "key_too_large";
    /// The record exceeds 100 kB even without metadata.
    pub const VALUE_TOO_LARGE: &str = "value_too_large";
    /// A line of a stream (`import`, `serve --stdin`) is longer than
    /// [`crate::ingest::lines::MAX_LINE_BYTES`]; only its beginning is kept.
    pub const LINE_TOO_LONG: &str = "line_too_long";
    /// Not the reason of a line: a dead letter that holds many invalid lines
    /// of one request together (see `crate::ingest::grouping`), each line
    /// counted under its own reason in its `reasons`.
    pub const GROUPED: &str = "invalid_lines_grouped";
    /// A valid record whose key (tenant, user, session, time, event id) is
    /// already stored with another event (another path, event type,
    /// checksum…): the stored record is kept, this copy is dead-lettered.
    pub const CONFLICTING_REDELIVERY: &str = "conflicting_redelivery";
    /// A valid record of a monitor that belongs to another tenant: the
    /// first tenant that stores an event of a monitor owns its delivery
    /// counters (`("monitors", monitor_id)`), and an event of that monitor
    /// under another tenant is not stored.
    pub const MONITOR_OF_OTHER_TENANT: &str = "monitor_of_other_tenant";

    pub const ALL: [&str; 17] = [
        INVALID_UTF8,
        INVALID_JSON,
        UPSTREAM,
        SCHEMA,
        MISSING_FIELD,
        MISSING_ATTRIBUTION,
        BAD_ID,
        BAD_TIMESTAMP,
        TIMESTAMP_RANGE,
        TIMESTAMP_FUTURE,
        UNKNOWN_EVENT_TYPE,
        BAD_FIELD,
        KEY_TOO_LARGE,
        VALUE_TOO_LARGE,
        LINE_TOO_LONG,
        CONFLICTING_REDELIVERY,
        MONITOR_OF_OTHER_TENANT,
    ];

    /// The position of `reason` in [`ALL`].
    pub fn index(reason: &str) -> Option<usize> {
        ALL.iter().position(|r| *r == reason)
    }
}

/// The outcome of validating one line.
// Items live one chunk at a time; boxing the dead letter would cost one
// more allocation per invalid line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Item {
    Record(Box<ValidRecord>),
    DeadLetter(DeadLetter),
}

/// The fields that mark a line as already dead-lettered upstream, and its
/// own timestamp (kept for the dead letter's key). Everything else is
/// skipped by this first pass.
#[derive(Deserialize, Default)]
struct Marks {
    #[serde(default)]
    dead_letter: Option<serde_json::Value>,
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

impl Marks {
    /// The line's own timestamp, when it has a valid one.
    fn own_ts(&self) -> Option<i64> {
        self.timestamp
            .as_ref()
            .and_then(|v| v.as_str())
            .and_then(|s| Timestamp::parse(s).ok())
            .and_then(|t| i64::try_from(t.unix_nanos()).ok())
    }
}

/// True when `s` is a valid id: 1–128 chars of `[A-Za-z0-9._:@-]`. The
/// rule lives in `file-event`, so file-monitor checks its attribution at
/// start with the same one.
pub fn valid_id(s: &str) -> bool {
    file_event::valid_id(s)
}

/// Validates one line (without its newline). `received_ns` is the receipt
/// time, used for dead letters that carry no timestamp of their own; the
/// record's time is not compared with it (the ingest path also applies
/// [`check_not_future`]).
pub fn validate_line(keys: &Keys, line: &[u8], received_ns: i64) -> Item {
    match check_line(keys, line) {
        Ok(r) => Item::Record(Box::new(r)),
        Err(r) => Item::DeadLetter(r.into_dead_letter(line, received_ns)),
    }
}

/// Why a line is not a record.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Its reason code ([`reason`]).
    pub reason: &'static str,
    /// Human-readable explanation.
    pub detail: String,
    /// The line's own timestamp, when it has a valid one.
    pub own_ts: Option<i64>,
}

impl Rejection {
    /// The line's own time, to key its dead letter by, unless it lies more
    /// than [`MAX_FUTURE_NS`] after `received_ns`: a dead letter keyed that
    /// far ahead would outlive retention.
    pub fn key_ts(&self, received_ns: i64) -> Option<i64> {
        self.own_ts
            .filter(|t| *t <= received_ns.saturating_add(MAX_FUTURE_NS))
    }

    /// The dead letter of `line`. For a line the collector marked, the
    /// exact bytes of the container's line when it sent them
    /// ([`upstream::dead_letter`]).
    pub fn into_dead_letter(self, line: &[u8], received_ns: i64) -> DeadLetter {
        let own = self.key_ts(received_ns);
        if self.reason == reason::UPSTREAM {
            return upstream::dead_letter(line, self.detail, own, received_ns);
        }
        dead_letter(line, self.reason, self.detail, own, received_ns)
    }
}

/// Width of the receipt-time buckets that key dead letters without a usable
/// timestamp of their own (one hour).
pub const RECEIPT_BUCKET_NS: i64 = 3_600_000_000_000;

/// How many earlier buckets ([`RECEIPT_BUCKET_NS`]) are looked up for an
/// earlier copy of a dead letter keyed by its receipt: a redelivery at least
/// 24 hours (at most 25) after the first delivery is still found.
pub const RECEIPT_LOOKBACK_BUCKETS: i64 = 24;

/// The key time of a dead letter without a usable timestamp of its own: the
/// start of the UTC hour of its receipt. A redelivery of the same request
/// within that hour lands on the same key (its id is
/// [`receipt_scoped_id`]); one in a later hour finds the earlier copy among
/// the keys of [`receipt_lookup_times`].
pub fn receipt_key_ts(received_ns: i64) -> i64 {
    received_ns - received_ns.rem_euclid(RECEIPT_BUCKET_NS)
}

/// The id of a dead letter keyed by its receipt: a hash of the request (or
/// stream batch) it came in, `request`, of its line's place there,
/// `position` (the first line's, for a group), and of its content id
/// (`content_id`, a hash of its bytes). The same request delivered again
/// (the same bytes) gives the same id, so a redelivery is a duplicate; the
/// same line in another request, or at another place of the same request,
/// is stored on its own: without a timestamp of its own, nothing else tells
/// two refusals of the same text apart.
pub fn receipt_scoped_id(request: &blake3::Hash, position: u64, content_id: &str) -> String {
    let id = blake3::Hasher::new_derive_key("fdb-sink dead-letter by receipt in a request")
        .update(request.as_bytes())
        .update(&position.to_le_bytes())
        .update(content_id.as_bytes())
        .finalize();
    id.to_hex()[..32].to_owned()
}

/// The other key times under which an earlier (or, for a concurrent
/// delivery received in the next hour, a later) copy of a dead letter keyed
/// by receipt at `key_ts` may be stored: the [`RECEIPT_LOOKBACK_BUCKETS`]
/// hours before it and the hour after it. Point lookups, never a scan.
pub fn receipt_lookup_times(key_ts: i64) -> impl Iterator<Item = i64> {
    (-RECEIPT_LOOKBACK_BUCKETS..=1)
        .filter(|k| *k != 0)
        .filter_map(move |k| key_ts.checked_add(k.checked_mul(RECEIPT_BUCKET_NS)?))
}

/// How far after its receipt a record's own time may lie (clocks of
/// monitor and sink a day apart). A record further ahead would be kept past
/// retention and be in no daily archive until its day comes.
pub const MAX_FUTURE_NS: i64 = 86_400_000_000_000;

/// Refuses a record whose time is more than [`MAX_FUTURE_NS`] after
/// `received_ns`. The dead letter is keyed by the receipt time, not by the
/// line's own.
pub fn check_not_future(r: &ValidRecord, received_ns: i64) -> Result<(), Rejection> {
    if r.ts_ns <= received_ns.saturating_add(MAX_FUTURE_NS) {
        return Ok(());
    }
    let at = |ns: i64| {
        Timestamp::from_unix_nanos(i128::from(ns)).map_or_else(|| ns.to_string(), |t| t.to_string())
    };
    Err(Rejection {
        reason: reason::TIMESTAMP_FUTURE,
        detail: format!(
            "timestamp {} is more than 24 hours after the line was received ({}): the producer's clock is wrong",
            at(r.ts_ns),
            at(received_ns)
        ),
        own_ts: None,
    })
}

/// [`validate_line`] without building the dead letter: the record, or why
/// the line is not one. The time of receipt is checked apart
/// ([`check_not_future`]).
pub fn check_line(keys: &Keys, line: &[u8]) -> Result<ValidRecord, Rejection> {
    validate(keys, line).map_err(|(reason, detail, own_ts)| Rejection {
        reason,
        detail,
        own_ts,
    })
}

type Reject = (&'static str, String, Option<i64>);

fn validate(keys: &Keys, line: &[u8]) -> Result<ValidRecord, Reject> {
    let text =
        std::str::from_utf8(line).map_err(|e| (reason::INVALID_UTF8, e.to_string(), None))?;
    // Structs also deserialise from arrays: require an object first.
    if !text.trim_start().starts_with('{') {
        let what = serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(|_| "a JSON value that is not an object".to_string())
            .unwrap_or_else(|e| format!("not a JSON object: {e}"));
        return Err((reason::INVALID_JSON, what, None));
    }
    let (event, k8s, was_truncated) = match line::parse(text) {
        Some(parsed) => parsed,
        None => parse_in_passes(text)?,
    };
    let ts_ns = i64::try_from(event.timestamp.unix_nanos())
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            (
                reason::TIMESTAMP_RANGE,
                format!("timestamp {} is outside 1970..2262", event.timestamp),
                None,
            )
        })?;
    let mut ids = Vec::with_capacity(3);
    for (name, v) in [
        ("tenant_id", &event.tenant_id),
        ("user_id", &event.user_id),
        ("session_id", &event.session_id),
    ] {
        match v {
            None => {
                return Err((
                    reason::MISSING_ATTRIBUTION,
                    format!("`{name}` is required"),
                    Some(ts_ns),
                ))
            }
            Some(s) if !valid_id(s) => {
                return Err((
                    reason::BAD_ID,
                    format!(
                        "`{name}` {:?} is not 1-128 chars of [A-Za-z0-9._:@-]",
                        truncate_str(s, 200)
                    ),
                    Some(ts_ns),
                ))
            }
            Some(s) => ids.push(s.clone()),
        }
    }
    let [tenant, user, session]: [String; 3] = ids
        .try_into()
        .map_err(|_| (reason::BAD_FIELD, "ids".to_string(), Some(ts_ns)))?;
    let event_id = event.event_id.to_string();
    let monitor_id = event.monitor_id.to_string();
    let mut paths = vec![event.path.clone()];
    if let Some(from) = &event.from {
        if *from != event.path {
            paths.push(from.clone());
        }
    }
    let checksum = event.checksum.clone();
    let seq = event.seq;
    let event_type = event.event_type.as_str();
    let encoded = EncodedKeys {
        audit: keys.audit_log(&tenant, &user, &session, ts_ns, &event_id),
        by_path: paths
            .iter()
            .map(|p| keys.by_path(&tenant, p, ts_ns, &event_id))
            .collect(),
        touch: crate::keys::PathTouch {
            user: user.clone(),
            session: session.clone(),
            event_type: event_type.to_owned(),
        }
        .encode(),
        by_checksum: checksum
            .as_deref()
            .map(|c| keys.by_checksum(&tenant, c, &paths[0])),
    };
    // Keys that embed the path must fit FoundationDB's key limit.
    let key_len = encoded
        .by_path
        .iter()
        .chain(&encoded.by_checksum)
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    if key_len > MAX_KEY_BYTES {
        let longest = paths.iter().map(String::len).max().unwrap_or(0);
        return Err((
            reason::KEY_TOO_LARGE,
            format!("a path of {longest} bytes makes a {key_len}-byte key (limit {MAX_KEY_BYTES})"),
            Some(ts_ns),
        ));
    }
    // A record exported with its metadata cut keeps saying so when restored.
    let mut record = AuditRecord {
        event,
        k8s,
        metadata_truncated: was_truncated,
    };
    let value = encode_fitting(&mut record, line.len()).map_err(|size| {
        (
            reason::VALUE_TOO_LARGE,
            format!("the record is {size} bytes without metadata (limit {MAX_VALUE_BYTES})"),
            Some(ts_ns),
        )
    })?;
    Ok(ValidRecord {
        encoded,
        tenant,
        user,
        session,
        monitor_id,
        event_id,
        seq,
        ts_ns,
        event_type,
        paths,
        checksum,
        value,
        metadata_truncated: record.metadata_truncated,
        stored_new: StoredFlag::default(),
    })
}

/// Reads a JSON object in three passes (the collector's marks, the
/// `file-event/1` itself, the Kubernetes fields), each skipping what it does
/// not need, and says why a line is not a valid record: the path of every
/// line that [`line::parse`] does not accept.
fn parse_in_passes(text: &str) -> Result<(FileEvent, K8sFields, bool), Reject> {
    let marks: Marks = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Valid JSON, but `timestamp`, `dead_letter` or `reason` twice.
        serde_json::error::Category::Data => (reason::BAD_FIELD, e.to_string(), None),
        _ => (
            reason::INVALID_JSON,
            format!("not a JSON object: {e}"),
            None,
        ),
    })?;
    if is_marked(&marks.dead_letter) {
        let why = match &marks.reason {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "marked dead_letter by the collector".into(),
        };
        return Err((reason::UPSTREAM, why, marks.own_ts()));
    }
    let event = match serde_json::from_str::<FileEvent>(text) {
        Ok(ev) => ev,
        Err(e) => return Err(diagnose(text, e, marks.own_ts())),
    };
    event
        .check()
        .map_err(|e| (check_reason(&e), e.to_string(), marks.own_ts()))?;
    let k8s: K8sFields = serde_json::from_str(text).map_err(|e| {
        (
            reason::BAD_FIELD,
            format!("a Kubernetes field is not a string: {e}"),
            marks.own_ts(),
        )
    })?;
    let truncated: TruncationMark = serde_json::from_str(text).map_err(|e| {
        (
            reason::BAD_FIELD,
            format!("`metadata_truncated` is not a boolean: {e}"),
            marks.own_ts(),
        )
    })?;
    Ok((event, k8s, truncated.metadata_truncated.unwrap_or(false)))
}

/// The mark of a record whose metadata was cut (see [`AuditRecord`]).
#[derive(Deserialize)]
struct TruncationMark {
    #[serde(default)]
    metadata_truncated: Option<bool>,
}

fn is_marked(v: &Option<serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
        Some(_) => true,
    }
}

/// Serialises the record, removing the largest metadata entries until it fits.
/// `Err(size)` when it does not fit even without metadata.
///
/// Each entry's share of the value (`"key":value,`) is measured once, so
/// that the entries to remove are chosen in one pass: a line of many
/// thousands of entries costs a few serialisations, not one per entry.
///
/// `size_hint` (the line's length) sizes the first buffer: the record holds
/// the line's fields, so it rarely needs to grow.
fn encode_fitting(record: &mut AuditRecord, size_hint: usize) -> Result<Vec<u8>, usize> {
    let mut value = Vec::with_capacity(size_hint.min(MAX_VALUE_BYTES) + 64);
    // Strings, numbers and string-keyed maps only: serialisation cannot fail.
    let _ = serde_json::to_writer(&mut value, record);
    if value.len() <= MAX_VALUE_BYTES {
        return Ok(value);
    }
    let mut sized: Vec<(usize, String)> = record
        .event
        .metadata
        .iter()
        .map(|(k, v)| (json_len(k) + 1 + json_len(v) + 1, k.clone()))
        .collect();
    sized.sort();
    record.metadata_truncated = true;
    let mut value = to_json(record);
    while value.len() > MAX_VALUE_BYTES {
        if sized.is_empty() {
            return Err(value.len());
        }
        let mut excess = value.len() - MAX_VALUE_BYTES;
        while excess > 0 {
            let Some((n, k)) = sized.pop() else { break };
            record.event.metadata.remove(&k);
            excess = excess.saturating_sub(n);
        }
        value = to_json(record);
    }
    Ok(value)
}

/// Length of the compact JSON of `v`.
fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn to_json(record: &AuditRecord) -> Vec<u8> {
    // Strings, numbers and string-keyed maps only: serialisation cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// The dead-letter reason of a line that [`FileEvent::check`] refuses.
/// Every variant is named, so that a new one is given its reason here.
fn check_reason(e: &ParseError) -> &'static str {
    match e {
        ParseError::Schema(_) => reason::SCHEMA,
        ParseError::UnknownEventType(_) => reason::UNKNOWN_EVENT_TYPE,
        ParseError::Json(_)
        | ParseError::ZeroSeq
        | ParseError::SeqTooLarge(_)
        | ParseError::BadPath { .. }
        | ParseError::BadChecksum { .. }
        | ParseError::MoveWithoutEnds
        | ParseError::MoveDestination
        | ParseError::EndsWithoutMove
        | ParseError::BadBase64 => reason::BAD_FIELD,
    }
}

/// Explains why a JSON object is not a `file-event/1`, field by field.
fn diagnose(text: &str, err: serde_json::Error, own_ts: Option<i64>) -> Reject {
    let obj: BTreeMap<String, serde_json::Value> = match serde_json::from_str(text) {
        Ok(o) => o,
        Err(_) => return (reason::INVALID_JSON, err.to_string(), own_ts),
    };
    match obj.get("schema").and_then(|v| v.as_str()) {
        Some(file_event::SCHEMA) => {}
        Some(other) => {
            return (
                reason::SCHEMA,
                format!("schema is {other:?}, expected {:?}", file_event::SCHEMA),
                own_ts,
            )
        }
        None => {
            return (
                reason::SCHEMA,
                "no `schema` field: not a file-event/1 line".into(),
                own_ts,
            )
        }
    }
    for field in [
        "event_id",
        "monitor_id",
        "seq",
        "timestamp",
        "event_type",
        "kind",
        "path",
    ] {
        if !obj.contains_key(field) {
            return (
                reason::MISSING_FIELD,
                format!("missing field `{field}`"),
                own_ts,
            );
        }
    }
    match obj.get("timestamp").and_then(|v| v.as_str()) {
        Some(s) if Timestamp::parse(s).is_ok() => {}
        _ => {
            return (
                reason::BAD_TIMESTAMP,
                format!("`timestamp` is not RFC 3339: {}", obj["timestamp"]),
                own_ts,
            )
        }
    }
    if let Some(t) = obj.get("event_type").and_then(|v| v.as_str()) {
        if t.parse::<file_event::EventType>().is_err() {
            return (
                reason::UNKNOWN_EVENT_TYPE,
                format!("unknown event_type {t:?} (expected create, update, delete, move, access)"),
                own_ts,
            );
        }
    }
    for field in ["event_id", "monitor_id"] {
        let ok = obj
            .get(field)
            .and_then(|v| v.as_str())
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
        if !ok {
            return (
                reason::BAD_ID,
                format!("`{field}` must be a UUID, got {}", obj[field]),
                own_ts,
            );
        }
    }
    (reason::BAD_FIELD, err.to_string(), own_ts)
}

fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds the dead letter for a raw line, keyed by `own_ts` (the line's own
/// usable timestamp) when given, else by [`receipt_key_ts`].
pub fn dead_letter(
    line: &[u8],
    reason: &str,
    detail: String,
    own_ts: Option<i64>,
    received_ns: i64,
) -> DeadLetter {
    let id = blake3::hash(line);
    build_dead_letter(line, line.len(), &id, reason, detail, own_ts, received_ns)
}

/// A group of invalid lines of one request (reason [`reason::GROUPED`]):
/// `payload` holds each line followed by `\n` (at most
/// [`MAX_B64_RAW_BYTES`], so that its base64 fits the value limit).
/// `own_ts` is the latest timestamp of its lines that had a valid one (so
/// that retention keeps the group until its newest line is past the
/// period): the key time, else [`receipt_key_ts`]. The id is a hash of the payload (in its own
/// domain, apart from the ids of single lines), so a redelivered request
/// lands on the same key.
pub fn group_dead_letter(
    payload: &[u8],
    lines: u64,
    reasons: BTreeMap<String, u64>,
    own_ts: Option<i64>,
    received_ns: i64,
) -> DeadLetter {
    use base64::Engine as _;
    let received_at = Timestamp::from_unix_nanos(i128::from(received_ns))
        .unwrap_or_else(Timestamp::now)
        .to_string();
    let id = blake3::Hasher::new_derive_key("fdb-sink dead-letter group of lines")
        .update(payload)
        .finalize();
    let summary = reasons
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ");
    DeadLetter {
        reason: reason::GROUPED.to_owned(),
        detail: truncate_str(
            &format!(
                "{lines} invalid lines ({summary}) kept together; their bytes are in \
                 raw_b64, each line followed by a newline"
            ),
            2_000,
        )
        .to_owned(),
        raw: String::new(),
        raw_b64: Some(base64::engine::general_purpose::STANDARD.encode(payload)),
        raw_truncated: false,
        raw_len: payload.len(),
        lines: Some(lines),
        reasons: Some(reasons),
        received_at,
        keyed_by_receipt: own_ts.is_none(),
        ts_ns: own_ts.unwrap_or_else(|| receipt_key_ts(received_ns)),
        id: id.to_hex()[..32].to_owned(),
    }
}

/// The dead letter of a stream line over the line limit, of which only the
/// beginning was read into memory.
pub fn long_line_dead_letter(l: &crate::ingest::lines::LongLine, received_ns: i64) -> DeadLetter {
    let detail = format!(
        "the line is {} bytes, over the limit of {} bytes for one line; only its first {} bytes are kept",
        l.len,
        l.limit,
        l.prefix.len()
    );
    let mut dl = build_dead_letter(
        &l.prefix,
        usize::try_from(l.len).unwrap_or(usize::MAX),
        &l.hash,
        reason::LINE_TOO_LONG,
        detail,
        None,
        received_ns,
    );
    dl.raw_truncated = true;
    dl
}

fn build_dead_letter(
    raw: &[u8],
    raw_len: usize,
    id: &blake3::Hash,
    reason: &str,
    detail: String,
    own_ts: Option<i64>,
    received_ns: i64,
) -> DeadLetter {
    let received_at = Timestamp::from_unix_nanos(i128::from(received_ns))
        .unwrap_or_else(Timestamp::now)
        .to_string();
    let mut dl = DeadLetter {
        reason: reason.to_owned(),
        detail: truncate_str(&detail, 2_000).to_owned(),
        raw: String::new(),
        raw_b64: None,
        raw_truncated: false,
        raw_len,
        lines: None,
        reasons: None,
        received_at,
        keyed_by_receipt: own_ts.is_none(),
        ts_ns: own_ts.unwrap_or_else(|| receipt_key_ts(received_ns)),
        id: id.to_hex()[..32].to_owned(),
    };
    match std::str::from_utf8(raw) {
        Ok(text) => fit_text(&mut dl, text),
        // The kept beginning of a longer line may end inside a character.
        Err(e) if e.error_len().is_none() && raw.len() < raw_len => {
            let text = std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or_default();
            fit_text(&mut dl, text);
        }
        Err(_) => fit_bytes(&mut dl, raw),
    }
    dl
}

/// Stores a UTF-8 line in `raw`, cut until the value fits (escaping can
/// grow it). Only what can be stored is copied.
fn fit_text(dl: &mut DeadLetter, text: &str) {
    let text = truncate_str(text, MAX_VALUE_BYTES);
    dl.raw = text.to_owned();
    dl.raw_truncated = text.len() < dl.raw_len;
    let mut budget = MAX_VALUE_BYTES - 4_000;
    while dl.to_json().len() > MAX_VALUE_BYTES {
        dl.raw = truncate_str(text, budget).to_owned();
        dl.raw_truncated = true;
        budget /= 2;
    }
}

/// Bytes of a line that is not UTF-8 kept exactly (in `raw_b64`): base64
/// of this many bytes, with the lossy preview, fits the value limit.
pub const MAX_B64_RAW_BYTES: usize = 60_000;

/// Length of the lossy preview of a line that is not UTF-8.
const LOSSY_PREVIEW_BYTES: usize = 2_000;

/// Stores a line that is not UTF-8: its exact bytes (the first
/// [`MAX_B64_RAW_BYTES`]) in `raw_b64`, and a short lossy reading aid in
/// `raw`.
fn fit_bytes(dl: &mut DeadLetter, raw: &[u8]) {
    use base64::Engine as _;
    let kept = &raw[..raw.len().min(MAX_B64_RAW_BYTES)];
    dl.raw_b64 = Some(base64::engine::general_purpose::STANDARD.encode(kept));
    dl.raw_truncated = kept.len() < dl.raw_len;
    let mut preview = LOSSY_PREVIEW_BYTES;
    loop {
        dl.raw = String::from_utf8_lossy(&raw[..raw.len().min(preview)]).into_owned();
        if preview == 0 || dl.to_json().len() <= MAX_VALUE_BYTES {
            break;
        }
        preview /= 2;
    }
}

impl DeadLetter {
    /// The stored value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

mod line;
#[cfg(test)]
mod tests;
pub mod upstream;
