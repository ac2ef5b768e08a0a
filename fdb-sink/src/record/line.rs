//! One pass over a valid line: the `file-event/1` (read by the file-event
//! crate's own reader) and, from the same object and in the same pass, what
//! the collector adds beside it (its dead-letter mark, the Kubernetes
//! fields). Anything else (a JSON error, a duplicate or mistyped field, a
//! dead-letter mark, a failed check) returns `None`, and the three-pass
//! validation decides the reason.

use file_event::{ExtraFields, FileEvent, WithExtra};
use serde::de::{self, IgnoredAny, MapAccess};

use super::{is_marked, K8sFields};

/// The collector's fields of a line, and the mark an exported record
/// carries when its metadata was cut.
#[derive(Default)]
struct Collected {
    dead_letter: Option<serde_json::Value>,
    k8s: K8sFields,
    metadata_truncated: Option<bool>,
    /// Fields seen, by bit: a repeated field is an error, as in the passes.
    seen: u16,
}

impl<'de> ExtraFields<'de> for Collected {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let (bit, name) = match key {
            "dead_letter" => (0, "dead_letter"),
            "reason" => (1, "reason"),
            "cluster_name" => (2, "cluster_name"),
            "namespace" => (3, "namespace"),
            "pod_name" => (4, "pod_name"),
            "node_name" => (5, "node_name"),
            "container_name" => (6, "container_name"),
            "pod_uid" => (7, "pod_uid"),
            "metadata_truncated" => (8, "metadata_truncated"),
            _ => return Ok(false),
        };
        if self.seen & (1 << bit) != 0 {
            return Err(de::Error::duplicate_field(name));
        }
        self.seen |= 1 << bit;
        let k = &mut self.k8s;
        match bit {
            0 => self.dead_letter = map.next_value()?,
            // Only read when the line is marked, by the passes.
            1 => {
                map.next_value::<IgnoredAny>()?;
            }
            2 => k.cluster_name = map.next_value()?,
            3 => k.namespace = map.next_value()?,
            4 => k.pod_name = map.next_value()?,
            5 => k.node_name = map.next_value()?,
            6 => k.container_name = map.next_value()?,
            7 => k.pod_uid = map.next_value()?,
            _ => self.metadata_truncated = map.next_value()?,
        }
        Ok(true)
    }
}

/// The event (its checks passed), its Kubernetes fields and whether it says
/// its metadata was cut (`metadata_truncated`, as an exported record does),
/// when `text` (a JSON object) is a valid line the collector did not mark dead.
pub(super) fn parse(text: &str) -> Option<(FileEvent, K8sFields, bool)> {
    let WithExtra { event, extra } = serde_json::from_str::<WithExtra<Collected>>(text).ok()?;
    if is_marked(&extra.dead_letter) {
        return None;
    }
    event.check().ok()?;
    Some((event, extra.k8s, extra.metadata_truncated.unwrap_or(false)))
}
