//! The dead letter of a line the collector marked `dead_letter`.
//!
//! Vector's JSON encoder writes every text as UTF-8, replacing the bytes of
//! a container line that is not UTF-8 with U+FFFD, so the collector's
//! `message` cannot hold such a line exactly. The collector then also sends
//! the line's bytes in `message_b64` (standard base64): the dead letter keeps
//! those bytes in `raw_b64`, as it does for any line that is not UTF-8, and
//! the collector's record (without that copy, `message` last) in `raw` as a
//! reading aid that names the pod and the collector's reason.
//!
//! A copy that cannot be used (not a string, not standard base64, or not the
//! bytes `message` was written from) leaves the dead letter as for any
//! marked line, the record as received in `raw`, and the detail says why.
//! The line is never dropped.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    dead_letter as plain_dead_letter, reason, truncate_str, DeadLetter, MAX_B64_RAW_BYTES,
};
use crate::store::limits::MAX_VALUE_BYTES;

/// The field holding the exact bytes of a marked line.
pub const MESSAGE_B64: &str = "message_b64";

/// Longest detail of a dead letter.
const DETAIL_BYTES: usize = 2_000;

/// What a marked line says about its container line's bytes.
enum Copy {
    /// No `message_b64`: `message` holds the line exactly.
    Absent,
    /// A `message_b64` that cannot be used, and why.
    Unusable(String),
    /// The container line's bytes (as many as the collector kept), and its
    /// full size.
    Bytes {
        bytes: Vec<u8>,
        full_len: usize,
        aid: String,
    },
}

/// The dead letter of `line`, which the collector marked `dead_letter`
/// (reason [`reason::UPSTREAM`]): keyed and identified by the line as
/// received, holding the container line's exact bytes when the collector
/// sent them.
pub fn dead_letter(
    line: &[u8],
    detail: String,
    own_ts: Option<i64>,
    received_ns: i64,
) -> DeadLetter {
    let mut dl = plain_dead_letter(line, reason::UPSTREAM, detail, own_ts, received_ns);
    match copy_of(line) {
        Copy::Absent => {}
        Copy::Unusable(why) => {
            add_to_detail(
                &mut dl,
                &format!("{why}: raw is the collector's record as received"),
            );
        }
        Copy::Bytes {
            bytes,
            full_len,
            aid,
        } => {
            let kept = &bytes[..bytes.len().min(MAX_B64_RAW_BYTES)];
            if kept.len() < bytes.len() {
                add_to_detail(
                    &mut dl,
                    &format!(
                        "only the first {} of the {} bytes in {MESSAGE_B64} are kept",
                        kept.len(),
                        bytes.len()
                    ),
                );
            }
            dl.raw_b64 = Some(base64::engine::general_purpose::STANDARD.encode(kept));
            dl.raw_len = full_len;
            dl.raw_truncated = kept.len() < full_len;
            fit_aid(&mut dl, &aid);
        }
    }
    dl
}

/// Appends `note` to the detail, cutting the collector's reason (not the
/// note) to keep the detail within its 2,000 bytes.
fn add_to_detail(dl: &mut DeadLetter, note: &str) {
    let room = DETAIL_BYTES.saturating_sub(note.len() + 2);
    dl.detail = format!("{}; {note}", truncate_str(&dl.detail, room));
}

/// Reads the collector's copy of the line's bytes from a marked line.
fn copy_of(line: &[u8]) -> Copy {
    let Ok(mut record) = serde_json::from_slice::<Map<String, Value>>(line) else {
        return Copy::Absent;
    };
    let Some(b64) = record.remove(MESSAGE_B64) else {
        return Copy::Absent;
    };
    let Value::String(b64) = b64 else {
        return Copy::Unusable(format!("{MESSAGE_B64} is not a string"));
    };
    let bytes = match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
        Ok(b) => b,
        Err(e) => return Copy::Unusable(format!("{MESSAGE_B64} is not standard base64 ({e})")),
    };
    let message = record.remove("message");
    // The copy must be the bytes `message` was written from: the same text
    // once invalid bytes are replaced as Vector's encoder does.
    let same = match &message {
        Some(Value::String(m)) => String::from_utf8_lossy(&bytes) == m.as_str(),
        _ => false,
    };
    if !same {
        return Copy::Unusable(format!(
            "{MESSAGE_B64} is not the bytes of `message` (their UTF-8 readings differ)"
        ));
    }
    // The collector cut a long line (and says so): `message_bytes` is its
    // full size.
    let cut = record.get("message_truncated") == Some(&Value::Bool(true));
    let full_len = record
        .get("message_bytes")
        .filter(|_| cut)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= bytes.len())
        .unwrap_or(bytes.len());
    // The reading aid: the record as the collector made it, its (lossy)
    // message last, so that cutting it to fit keeps the other fields.
    let mut aid = serde_json::to_string(&record).unwrap_or_default();
    aid.pop();
    if !record.is_empty() {
        aid.push(',');
    }
    aid.push_str("\"message\":");
    aid.push_str(&serde_json::to_string(&message).unwrap_or_default());
    aid.push('}');
    Copy::Bytes {
        bytes,
        full_len,
        aid,
    }
}

/// Stores in `raw` the longest beginning of `aid` with which the value
/// fits beside `raw_b64`.
fn fit_aid(dl: &mut DeadLetter, aid: &str) {
    // The longest prefix that fits: escaping makes the value grow faster
    // than `raw`, so the budget is searched, not stepped down by the excess.
    let (mut lo, mut hi) = (0usize, aid.len().min(MAX_VALUE_BYTES));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        dl.raw = truncate_str(aid, mid).to_owned();
        if dl.to_json().len() <= MAX_VALUE_BYTES {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    dl.raw = truncate_str(aid, lo).to_owned();
}
