//! Wraps a line the way Vector's sources hand it to the remap transform.
//!
//! [`wrap_kubernetes_logs`] builds the event `kubernetes_logs` (Vector 0.56.0, legacy log
//! namespace, default `pod_annotation_fields`/`node_annotation_fields`,
//! `insert_namespace_fields = false` as in `vector-config/vector.toml`) emits for one
//! container log line: `message`, `file`, `source_type`, `stream`, `timestamp` and the
//! `kubernetes` object with the pod's metadata. [`wrap_stdin`] builds what the `stdin`
//! source emits (`message`, `host`, `source_type`, `timestamp`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

/// Which standard stream of the container wrote the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What the Kubernetes API knows about the pod and container a line came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub node_name: String,
    pub container_name: String,
    pub container_image: String,
    pub container_image_id: String,
    pub container_id: String,
    pub pod_ip: String,
    /// `<kind>/<name>` of the pod's first owner reference, if it has one.
    pub pod_owner: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    pub node_labels: BTreeMap<String, String>,
}

impl PodMeta {
    /// A user workspace pod in `coditect-app` with its `file-monitor` sidecar, labelled
    /// as `vector-config/README.md` describes (selector label plus attribution labels).
    pub fn workspace_sidecar(pod_name: &str, tenant: &str, user: &str, session: &str) -> Self {
        let uid = pseudo_uuid(pod_name);
        let mut pod_labels = BTreeMap::new();
        pod_labels.insert("app.kubernetes.io/name".into(), "user-workspace".into());
        pod_labels.insert("component".into(), "file-monitor".into());
        pod_labels.insert("coditect.ai/tenant-id".into(), tenant.into());
        pod_labels.insert("coditect.ai/user-id".into(), user.into());
        pod_labels.insert("coditect.ai/session-id".into(), session.into());
        let mut node_labels = BTreeMap::new();
        node_labels.insert(
            "kubernetes.io/hostname".into(),
            "gke-ide-pool-1-node-a".into(),
        );
        node_labels.insert("kubernetes.io/os".into(), "linux".into());
        node_labels.insert("topology.kubernetes.io/zone".into(), "us-central1-a".into());
        let mut pod_annotations = BTreeMap::new();
        pod_annotations.insert(
            "kubectl.kubernetes.io/default-container".into(),
            "workspace".into(),
        );
        PodMeta {
            namespace: "coditect-app".into(),
            pod_name: pod_name.into(),
            pod_uid: uid,
            node_name: "gke-ide-pool-1-node-a".into(),
            container_name: "file-monitor".into(),
            container_image: "us-central1-docker.pkg.dev/coditect/images/file-monitor:0.1.0".into(),
            container_image_id:
                "us-central1-docker.pkg.dev/coditect/images/file-monitor@sha256:0b4f5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f80910"
                    .into(),
            container_id: format!("containerd://{}", "5e1f".repeat(16)),
            pod_ip: "10.52.1.17".into(),
            // The workspace pods belong to the user-workspace StatefulSet (deploy/k8s).
            pod_owner: Some("StatefulSet/user-workspace".into()),
            pod_labels,
            pod_annotations,
            node_labels,
        }
    }

    /// The kubelet's log file for this container (first rotation generation).
    pub fn log_file(&self) -> String {
        format!(
            "/var/log/pods/{}_{}_{}/{}/0.log",
            self.namespace, self.pod_name, self.pod_uid, self.container_name
        )
    }
}

/// A stable UUID-shaped id derived from a name, so fixtures are reproducible.
fn pseudo_uuid(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let a = h.finish();
    "salt".hash(&mut h);
    let b = h.finish();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (KeyString::from(k.as_str()), Value::from(v.as_str())))
            .collect(),
    )
}

/// The event `kubernetes_logs` emits for one line (without its trailing newline) that
/// the container runtime received at `at`.
pub fn wrap_kubernetes_logs(
    line: &[u8],
    meta: &PodMeta,
    stream: Stream,
    at: DateTime<Utc>,
) -> Value {
    let mut k = ObjectMap::new();
    k.insert("container_id".into(), meta.container_id.as_str().into());
    k.insert(
        "container_image".into(),
        meta.container_image.as_str().into(),
    );
    k.insert(
        "container_image_id".into(),
        meta.container_image_id.as_str().into(),
    );
    k.insert("container_name".into(), meta.container_name.as_str().into());
    k.insert("node_labels".into(), string_map(&meta.node_labels));
    if !meta.pod_annotations.is_empty() {
        k.insert("pod_annotations".into(), string_map(&meta.pod_annotations));
    }
    k.insert("pod_ip".into(), meta.pod_ip.as_str().into());
    k.insert(
        "pod_ips".into(),
        Value::Array(vec![meta.pod_ip.as_str().into()]),
    );
    if !meta.pod_labels.is_empty() {
        k.insert("pod_labels".into(), string_map(&meta.pod_labels));
    }
    k.insert("pod_name".into(), meta.pod_name.as_str().into());
    k.insert("pod_namespace".into(), meta.namespace.as_str().into());
    k.insert("pod_node_name".into(), meta.node_name.as_str().into());
    if let Some(owner) = &meta.pod_owner {
        k.insert("pod_owner".into(), owner.as_str().into());
    }
    k.insert("pod_uid".into(), meta.pod_uid.as_str().into());

    let mut ev = ObjectMap::new();
    ev.insert("file".into(), meta.log_file().into());
    ev.insert("kubernetes".into(), Value::Object(k));
    ev.insert(
        "message".into(),
        Value::Bytes(bytes::Bytes::copy_from_slice(line)),
    );
    ev.insert("source_type".into(), "kubernetes_logs".into());
    ev.insert("stream".into(), stream.as_str().into());
    ev.insert("timestamp".into(), Value::Timestamp(at));
    Value::Object(ev)
}

/// The event `kubernetes_logs` emits when the pod's metadata is no longer in Vector's
/// cache (pod deleted longer than `delay_deletion_ms` ago): no `kubernetes` object,
/// only the log file path.
pub fn wrap_kubernetes_logs_unannotated(
    line: &[u8],
    meta: &PodMeta,
    stream: Stream,
    at: DateTime<Utc>,
) -> Value {
    let mut ev = ObjectMap::new();
    ev.insert("file".into(), meta.log_file().into());
    ev.insert(
        "message".into(),
        Value::Bytes(bytes::Bytes::copy_from_slice(line)),
    );
    ev.insert("source_type".into(), "kubernetes_logs".into());
    ev.insert("stream".into(), stream.as_str().into());
    ev.insert("timestamp".into(), Value::Timestamp(at));
    Value::Object(ev)
}

/// The event Vector's `stdin` source emits for one line.
pub fn wrap_stdin(line: &[u8], host: &str, at: DateTime<Utc>) -> Value {
    let mut ev = ObjectMap::new();
    ev.insert("host".into(), host.into());
    ev.insert(
        "message".into(),
        Value::Bytes(bytes::Bytes::copy_from_slice(line)),
    );
    ev.insert("source_type".into(), "stdin".into());
    ev.insert("timestamp".into(), Value::Timestamp(at));
    Value::Object(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_logs_event_has_the_fields_vector_adds() {
        let pod = PodMeta::workspace_sidecar("user-workspace-alice", "acme", "alice", "s-1");
        assert!(pod
            .log_file()
            .starts_with("/var/log/pods/coditect-app_user-workspace-alice_"));
        assert!(pod.log_file().ends_with("/file-monitor/0.log"));
        let ev = wrap_kubernetes_logs(b"{}", &pod, Stream::Stdout, Utc::now());
        let json = serde_json::to_value(&ev).unwrap_or_default();
        let top: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            top,
            [
                "file",
                "kubernetes",
                "message",
                "source_type",
                "stream",
                "timestamp"
            ]
        );
        for k in [
            "container_id",
            "container_image",
            "container_image_id",
            "container_name",
            "node_labels",
            "pod_ip",
            "pod_ips",
            "pod_labels",
            "pod_name",
            "pod_namespace",
            "pod_node_name",
            "pod_owner",
            "pod_uid",
        ] {
            assert!(json["kubernetes"].get(k).is_some(), "{k}");
        }
        assert_eq!(
            json["kubernetes"]["pod_labels"]["coditect.ai/tenant-id"],
            "acme"
        );
        assert_eq!(json["source_type"], "kubernetes_logs");
        assert_eq!(json["stream"], "stdout");
    }
}
