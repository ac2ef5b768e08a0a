//! The `file-event/1` wire format: one JSON object per line, written by
//! `file-monitor` and read by `fdb-sink`. This crate is the only definition of
//! the type; both programs use it, so the two sides cannot drift apart.
//!
//! Field order on the wire follows the struct order below. Optional fields are
//! omitted when absent (never `null`), `rescan` is omitted when false.
//!
//! Paths are relative to the monitored root and `/`-separated. A path whose
//! bytes are not valid UTF-8 is carried losslessly: `path` holds a readable
//! form (invalid bytes replaced by U+FFFD) and `path_b64` holds the exact bytes
//! in standard base64 (likewise `from_b64` / `to_b64` for moves). Consumers that
//! need the exact name decode `*_b64` when present; see [`EncodedPath`].

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod de;
mod timestamp;

pub use de::{ExtraFields, WithExtra};
pub use timestamp::Timestamp;

/// The value of the `schema` field.
pub const SCHEMA: &str = "file-event/1";

/// Longest id fdb-sink accepts (tenant, user, session, monitor, event).
pub const MAX_ID_LEN: usize = 128;

/// True when `s` is an id fdb-sink accepts for `tenant_id`, `user_id` and
/// `session_id`: 1–128 characters of `[A-Za-z0-9._:@-]`. The monitor checks
/// its attribution with it at start, the sink every event it stores.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Highest `seq` accepted: 2^53-1, the largest integer every JSON reader
/// holds exactly (RFC 7493, I-JSON). A monitor counts from 1 and would need
/// centuries to get there.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Why a path is not one the monitor writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("is empty")]
    Empty,
    #[error("starts with `/`")]
    Absolute,
    #[error("contains NUL")]
    Nul,
    #[error("has an empty segment")]
    EmptySegment,
    #[error("has a `.` segment")]
    Dot,
    #[error("has a `..` segment")]
    DotDot,
}

/// The rule for a `checksum`: `sha256:` or `blake3:` and the 64 lowercase
/// hex digits of the digest, as file-monitor writes it; a query for a
/// checksum applies the same rule, so that a mistyped one is refused
/// instead of matching nothing.
pub fn check_checksum(c: &str) -> Result<(), ChecksumError> {
    let hex = ["sha256:", "blake3:"]
        .iter()
        .find_map(|algo| c.strip_prefix(algo))
        .ok_or(ChecksumError::Algorithm)?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ChecksumError::Digest)
    }
}

/// Why a checksum is refused (see [`check_checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("does not start with `sha256:` or `blake3:`")]
    Algorithm,
    #[error("is not 64 lowercase hex digits after its algorithm")]
    Digest,
}

/// The rule for every path of a `file-event/1` (and every path a query names,
/// so that one file has one spelling): the exact bytes of a name relative to
/// the monitored root, `/`-separated, non-empty, without a leading `/`,
/// without empty, `.` or `..` segments (no `a//b`, `./a`, `a/`, `../x`), and
/// without NUL. Names that are not UTF-8 are checked by their bytes (a
/// `*_b64` field decoded); a text is checked by `p.as_bytes()`.
pub fn check_path(p: &[u8]) -> Result<(), PathError> {
    if p.is_empty() {
        return Err(PathError::Empty);
    }
    if p.contains(&0) {
        return Err(PathError::Nul);
    }
    if p.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    for seg in p.split(|b| *b == b'/') {
        match seg {
            b"" => return Err(PathError::EmptySegment),
            b"." => return Err(PathError::Dot),
            b".." => return Err(PathError::DotDot),
            _ => {}
        }
    }
    Ok(())
}

/// What happened to the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Create,
    Update,
    Delete,
    Move,
    Access,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Create,
        EventType::Update,
        EventType::Delete,
        EventType::Move,
        EventType::Access,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Create => "create",
            EventType::Update => "update",
            EventType::Delete => "delete",
            EventType::Move => "move",
            EventType::Access => "access",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseError::UnknownEventType(s.to_owned()))
    }
}

/// What kind of file-system object the path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets, devices: reported, never opened.
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

/// One `file-event/1` line. It is read by [`de`]'s reader (the same that
/// reads it together with a consumer's extra fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileEvent {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// UUIDv7, unique per event.
    pub event_id: Uuid,
    /// UUID chosen when the monitor process starts.
    pub monitor_id: Uuid,
    /// 1, 2, 3 … per `monitor_id`, one per emitted line, no gaps.
    pub seq: u64,
    /// RFC 3339 UTC with nanoseconds.
    pub timestamp: Timestamp,
    pub event_type: EventType,
    pub kind: Kind,
    /// Relative to the monitored root, `/`-separated; for `move` the destination.
    pub path: String,
    /// Exact bytes of `path`, base64, only when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_b64: Option<String>,
    /// Source of a `move`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_b64: Option<String>,
    /// Destination of a `move` (equal to `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_b64: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `"sha256:<hex>"` or `"blake3:<hex>"`, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The remaining `--metadata` pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// True on events found by a rescan (lost kernel events, or changes made
    /// while the monitor was down).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rescan: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl FileEvent {
    /// A new event with a fresh UUIDv7 and the current time; the caller sets
    /// the remaining fields.
    pub fn new(
        monitor_id: Uuid,
        seq: u64,
        event_type: EventType,
        kind: Kind,
        path: EncodedPath,
    ) -> Self {
        FileEvent {
            schema: SCHEMA.to_owned(),
            event_id: Uuid::now_v7(),
            monitor_id,
            seq,
            timestamp: Timestamp::now(),
            event_type,
            kind,
            path: path.text,
            path_b64: path.b64,
            from: None,
            from_b64: None,
            to: None,
            to_b64: None,
            size: None,
            checksum: None,
            tenant_id: None,
            user_id: None,
            session_id: None,
            metadata: BTreeMap::new(),
            rescan: false,
        }
    }

    /// Parses one line, checking the schema tag and the move fields.
    pub fn from_json(line: &str) -> Result<Self, ParseError> {
        let ev: FileEvent = serde_json::from_str(line).map_err(ParseError::Json)?;
        ev.check()?;
        Ok(ev)
    }

    /// Structural checks that serde alone does not express.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.schema != SCHEMA {
            return Err(ParseError::Schema(self.schema.clone()));
        }
        if self.seq == 0 {
            return Err(ParseError::ZeroSeq);
        }
        if self.seq > MAX_SEQ {
            return Err(ParseError::SeqTooLarge(self.seq));
        }
        let is_move = self.event_type == EventType::Move;
        if let Some(c) = &self.checksum {
            check_checksum(c).map_err(|why| ParseError::BadChecksum {
                shown: c.chars().take(80).collect(),
                why,
            })?;
        }
        if is_move && (self.from.is_none() || self.to.is_none()) {
            return Err(ParseError::MoveWithoutEnds);
        }
        if !is_move && (self.from.is_some() || self.to.is_some()) {
            return Err(ParseError::EndsWithoutMove);
        }
        let texts = [
            ("path", Some(&self.path)),
            ("from", self.from.as_ref()),
            ("to", self.to.as_ref()),
        ];
        for (field, text) in texts {
            if let Some(t) = text {
                check_field(field, t.as_bytes())?;
            }
        }
        let exact = [
            ("path_b64", &self.path_b64),
            ("from_b64", &self.from_b64),
            ("to_b64", &self.to_b64),
        ];
        for (field, b64) in exact {
            if let Some(b64) = b64 {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| ParseError::BadBase64)?;
                check_field(field, &bytes)?;
            }
        }
        if is_move && (self.to.as_ref() != Some(&self.path) || self.to_b64 != self.path_b64) {
            return Err(ParseError::MoveDestination);
        }
        Ok(())
    }

    /// The exact bytes of `path` (decoding `path_b64` when present).
    pub fn path_bytes(&self) -> Vec<u8> {
        EncodedPath {
            text: self.path.clone(),
            b64: self.path_b64.clone(),
        }
        .to_bytes()
    }

    /// One NDJSON line, without the trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising this type cannot fail: every field is a string, number,
        // bool or a map with string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Event time as an [`OffsetDateTime`].
    pub fn time(&self) -> OffsetDateTime {
        self.timestamp.0
    }
}

/// [`check_path`], naming the field in the error.
fn check_field(field: &'static str, bytes: &[u8]) -> Result<(), ParseError> {
    check_path(bytes).map_err(|why| {
        let mut shown = String::from_utf8_lossy(bytes).into_owned();
        if shown.len() > MAX_SHOWN_PATH {
            let mut end = MAX_SHOWN_PATH;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push('…');
        }
        ParseError::BadPath { field, shown, why }
    })
}

/// How much of a refused path an error message repeats.
const MAX_SHOWN_PATH: usize = 200;

/// Why a line is not a valid `file-event/1`.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a file-event/1 JSON object: {0}")]
    Json(#[source] serde_json::Error),
    #[error("schema is {0:?}, expected \"file-event/1\"")]
    Schema(String),
    #[error("seq must start at 1")]
    ZeroSeq,
    #[error("seq {0} is over 9007199254740991 (2^53-1, the largest integer JSON holds exactly)")]
    SeqTooLarge(u64),
    #[error(
        "`{field}` {shown:?} {why}: a path is relative to the monitored root, `/`-separated, \
         non-empty, without a leading `/`, empty, `.` or `..` segments, or NUL"
    )]
    BadPath {
        /// The field that holds it (`path`, `from_b64`, …).
        field: &'static str,
        /// The path as text (lossy for bytes that are not UTF-8), cut short.
        shown: String,
        why: PathError,
    },
    #[error("`checksum` {shown:?} {why} (e.g. \"sha256:\" and 64 hex digits)")]
    BadChecksum { shown: String, why: ChecksumError },
    #[error("a move needs both `from` and `to`")]
    MoveWithoutEnds,
    #[error(
        "a move's `path` is its destination: `path` must equal `to` and `path_b64` \
         must equal `to_b64`"
    )]
    MoveDestination,
    #[error("`from`/`to` are only allowed on a move")]
    EndsWithoutMove,
    #[error("a *_b64 field is not valid base64")]
    BadBase64,
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
}

/// A relative path as it travels on the wire: readable text, plus the exact
/// bytes in base64 when the name is not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPath {
    pub text: String,
    pub b64: Option<String>,
}

impl EncodedPath {
    /// Encodes raw path bytes (already relative and `/`-separated).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => EncodedPath {
                text: s.to_owned(),
                b64: None,
            },
            Err(_) => EncodedPath {
                text: String::from_utf8_lossy(bytes).into_owned(),
                b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    /// The exact bytes: decoded from `b64` when present, else the text.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.b64
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_else(|| self.text.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests;
