//! Building blocks for the design's end-to-end scenarios: real `file-monitor`
//! processes on real directories, their stdout delivered through the Vector-faithful
//! [`Pipeline`] to a real `fdb-sink`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use thiserror::Error;
use tokio::io::AsyncBufReadExt as _;
use tokio::task::JoinHandle;

use crate::harness::k8s_wrap::{wrap_kubernetes_logs, PodMeta, Stream};
use crate::harness::pipeline::Pipeline;
use crate::procs::{self, Binaries, ProcError};

/// A scenario step failed.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("file-monitor for {pod} wrote a line that is not a file-event: {line}")]
    NotAnEvent { pod: String, line: String },
    #[error("the pipeline stopped accepting events")]
    PipelineClosed,
}

/// What a monitor wrote on stdout, as read by the collector: one entry per line.
#[derive(Debug, Clone, Default)]
pub struct Emitted {
    pub monitor_id: String,
    /// `seq` of every line, in the order written.
    pub seqs: Vec<u64>,
    pub event_ids: Vec<String>,
    /// `event_type` and `path` of every line.
    pub events: Vec<(String, String)>,
}

/// A running `file-monitor` whose stdout feeds the pipeline (as the kubelet's log
/// file feeds Vector's `kubernetes_logs`).
pub struct Monitor {
    pub pod: PodMeta,
    pub root: PathBuf,
    child: tokio::process::Child,
    reader: JoinHandle<Result<(), ScenarioError>>,
    emitted: Arc<Mutex<Emitted>>,
}

/// How the sidecar learns its attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// `--metadata tenant_id=…,user_id=…,session_id=…` (the design's sidecar args).
    Metadata,
    /// None: the collector fills it from the pod labels.
    PodLabelsOnly,
}

impl Monitor {
    /// Starts `file-monitor <root>` for `pod` and waits until it serves `/readyz`.
    pub async fn start(
        bins: &Binaries,
        root: &Path,
        pod: PodMeta,
        attribution: Attribution,
        debounce_ms: u64,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, ScenarioError> {
        std::fs::create_dir_all(root)?;
        let port = procs::free_port()?;
        let mut cmd = tokio::process::Command::new(&bins.file_monitor);
        cmd.arg(root)
            .arg(format!("--debounce={debounce_ms}"))
            .arg(format!("--metrics-addr=127.0.0.1:{port}"))
            .env_remove("TENANT_ID")
            .env_remove("USER_ID")
            .env_remove("SESSION_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if attribution == Attribution::Metadata {
            let l = &pod.pod_labels;
            cmd.arg(format!(
                "--metadata=tenant_id={},user_id={},session_id={}",
                l.get("coditect.ai/tenant-id")
                    .map(String::as_str)
                    .unwrap_or_default(),
                l.get("coditect.ai/user-id")
                    .map(String::as_str)
                    .unwrap_or_default(),
                l.get("coditect.ai/session-id")
                    .map(String::as_str)
                    .unwrap_or_default(),
            ));
        }
        let mut child = cmd.spawn().map_err(|source| ProcError::Spawn {
            what: format!("file-monitor for {}", pod.pod_name),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| ProcError::Spawn {
            what: "file-monitor stdout".into(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let emitted = Arc::new(Mutex::new(Emitted::default()));
        let reader = tokio::spawn(read_stdout(stdout, pod.clone(), pipeline, emitted.clone()));
        let addr = ([127, 0, 0, 1], port).into();
        let what = format!("file-monitor {} /readyz", pod.pod_name);
        tokio::task::spawn_blocking(move || {
            procs::wait_http_ok(addr, "/readyz", Duration::from_secs(30), &what)
        })
        .await
        .map_err(std::io::Error::other)??;
        // The answer must have come from this monitor, not from another
        // process on the same port while this one gave up.
        if let Some(status) = child.try_wait()? {
            return Err(ProcError::Spawn {
                what: format!("file-monitor for {}", pod.pod_name),
                source: std::io::Error::other(format!("exited at start: {status}")),
            }
            .into());
        }
        Ok(Monitor {
            pod,
            root: root.to_path_buf(),
            child,
            reader,
            emitted,
        })
    }

    /// What the monitor has written so far.
    pub fn emitted(&self) -> Emitted {
        self.emitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the monitor (SIGTERM, so it flushes), waits until the collector has read
    /// its last line, and returns everything it wrote.
    /// How many lines the monitor has written so far.
    pub fn emitted_lines(&self) -> usize {
        self.emitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seqs
            .len()
    }

    pub async fn stop(mut self) -> Result<Emitted, ScenarioError> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let emitted = self.emitted.clone();
        self.reader.await.map_err(std::io::Error::other)??;
        let out = emitted.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(out)
    }
}

async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    pod: PodMeta,
    pipeline: Arc<Pipeline>,
    emitted: Arc<Mutex<Emitted>>,
) -> Result<(), ScenarioError> {
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let ev: serde_json::Value =
            serde_json::from_slice(&line).map_err(|_| ScenarioError::NotAnEvent {
                pod: pod.pod_name.clone(),
                line: String::from_utf8_lossy(&line).into_owned(),
            })?;
        {
            let mut e = emitted.lock().unwrap_or_else(|p| p.into_inner());
            e.monitor_id = ev["monitor_id"].as_str().unwrap_or_default().to_owned();
            e.seqs.push(ev["seq"].as_u64().unwrap_or_default());
            e.event_ids
                .push(ev["event_id"].as_str().unwrap_or_default().to_owned());
            e.events.push((
                ev["event_type"].as_str().unwrap_or_default().to_owned(),
                ev["path"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        pipeline
            .push(wrap_kubernetes_logs(
                &line,
                &pod,
                Stream::Stdout,
                Utc::now(),
            ))
            .await
            .map_err(|_| ScenarioError::PipelineClosed)?;
    }
}

/// The records of an embedded store, read with fdb-sink's own read helpers after the
/// sink has stopped (an embedded store has one writer at a time).
#[derive(Debug, Clone, Default)]
pub struct StoreContents {
    /// Every audit record, in key order (tenant, user, session, time): the tenant, user
    /// and session of its key, and the stored record as JSON.
    pub records: Vec<(String, String, String, serde_json::Value)>,
    /// `("monitors", id)` rows: id → (received, highest seq).
    pub monitors: BTreeMap<String, (i64, u64)>,
    pub dead_letters: Vec<serde_json::Value>,
}

/// Opens the embedded store in `dir` (the sink must be stopped) and reads it all.
pub fn read_store(dir: &Path) -> Result<StoreContents, fdb_sink::store::StoreError> {
    use fdb_sink::audit;
    use fdb_sink::keys::{Keys, DEFAULT_ROOT};
    use fdb_sink::store::{StoreExt as _, StoreSpec};
    let store = fdb_sink::store::open(&StoreSpec::Embedded {
        dir: dir.to_path_buf(),
    })?;
    let keys = Keys::new(DEFAULT_ROOT);
    store.read(|txn| {
        let records = audit::records_in(txn, &keys, &keys.audit_logs_all(), 0, false)?
            .into_iter()
            .map(|r| {
                let json = serde_json::to_value(&r.record).unwrap_or_default();
                (r.key.tenant, r.key.user, r.key.session, json)
            })
            .collect();
        let monitors = audit::monitors(txn, &keys)?
            .into_iter()
            .map(|m| (m.monitor_id, (m.received, m.max_seq)))
            .collect();
        let dead_letters = audit::dead_letters(txn, &keys, 0)?
            .into_iter()
            .map(|d| serde_json::to_value(&d).unwrap_or_default())
            .collect();
        Ok(StoreContents {
            records,
            monitors,
            dead_letters,
        })
    })
}

/// Checks that `emitted` (what one monitor wrote) is stored exactly once.
pub fn assert_stored_exactly_once(emitted: &Emitted, store: &StoreContents) {
    let n = emitted.seqs.len() as u64;
    assert!(n > 0, "the monitor wrote nothing");
    assert_eq!(
        emitted.seqs,
        (1..=n).collect::<Vec<_>>(),
        "the monitor's own seq has gaps or repeats"
    );
    let (received, max_seq) = store
        .monitors
        .get(&emitted.monitor_id)
        .copied()
        .unwrap_or_else(|| panic!("no monitors row for {}", emitted.monitor_id));
    assert_eq!(max_seq, n, "{}: highest stored seq", emitted.monitor_id);
    assert_eq!(
        received, n as i64,
        "{}: events received",
        emitted.monitor_id
    );
    let mut stored: Vec<u64> = store
        .records
        .iter()
        .filter(|r| r.3["monitor_id"] == emitted.monitor_id.as_str())
        .map(|r| r.3["seq"].as_u64().unwrap_or_default())
        .collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        (1..=n).collect::<Vec<_>>(),
        "{}: stored seqs",
        emitted.monitor_id
    );
}
