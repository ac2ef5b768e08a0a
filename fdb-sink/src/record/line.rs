//! One pass over a valid line. Validation used to read a line three times
//! (the collector's marks, the `file-event/1` itself, the Kubernetes
//! fields), each pass skipping what it does not need; a line that is valid
//! and not marked dead is now read once into one struct holding every field
//! of the three. Anything else (a JSON error, a duplicate or mistyped
//! field, a dead-letter mark, a failed check) returns `None`, and the
//! three-pass validation decides the reason, as it did before.

use std::collections::BTreeMap;

use file_event::{EventType, FileEvent, Kind, Timestamp};
use serde::de::IgnoredAny;
use serde::Deserialize;
use uuid::Uuid;

use super::{is_marked, K8sFields};

/// The fields of the marks, of `file-event/1` and of [`K8sFields`], with
/// the same types and defaults as there.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    dead_letter: Option<serde_json::Value>,
    /// Only read when the line is marked; declared so that a repeated
    /// `reason` is an error here as in the marks.
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<IgnoredAny>,
    schema: String,
    event_id: Uuid,
    monitor_id: Uuid,
    seq: u64,
    timestamp: Timestamp,
    event_type: EventType,
    kind: Kind,
    path: String,
    #[serde(default)]
    path_b64: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_b64: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    to_b64: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    rescan: bool,
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    pod_name: Option<String>,
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    container_name: Option<String>,
    #[serde(default)]
    pod_uid: Option<String>,
}

/// The event (its checks passed) and its Kubernetes fields, when `text` (a
/// JSON object) is a valid line the collector did not mark dead.
pub(super) fn parse(text: &str) -> Option<(FileEvent, K8sFields)> {
    let l: Line = serde_json::from_str(text).ok()?;
    if is_marked(&l.dead_letter) {
        return None;
    }
    let event = FileEvent {
        schema: l.schema,
        event_id: l.event_id,
        monitor_id: l.monitor_id,
        seq: l.seq,
        timestamp: l.timestamp,
        event_type: l.event_type,
        kind: l.kind,
        path: l.path,
        path_b64: l.path_b64,
        from: l.from,
        from_b64: l.from_b64,
        to: l.to,
        to_b64: l.to_b64,
        size: l.size,
        checksum: l.checksum,
        tenant_id: l.tenant_id,
        user_id: l.user_id,
        session_id: l.session_id,
        metadata: l.metadata,
        rescan: l.rescan,
    };
    event.check().ok()?;
    let k8s = K8sFields {
        cluster_name: l.cluster_name,
        namespace: l.namespace,
        pod_name: l.pod_name,
        node_name: l.node_name,
        container_name: l.container_name,
        pod_uid: l.pod_uid,
    };
    Some((event, k8s))
}
