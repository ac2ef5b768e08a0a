//! The design's test scenarios, end to end through the real binaries:
//! `file-monitor` processes on real directories → their stdout wrapped as
//! `kubernetes_logs` lines → `vector-config/vector.toml`'s transforms (VRL via the vrl
//! crate) → the Vector-faithful http sink → a real `fdb-sink serve` on an embedded
//! store → read back with fdb-sink's read helpers once the sink has stopped.

mod aggregation;
mod failover;
mod multi_tenant;
mod single_pod;
mod sink_contract;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::harness::http_sink::SinkReport;
use e2e_tests::harness::pipeline::{Pipeline, Topology};
use e2e_tests::paths;
use e2e_tests::procs::{self, Binaries, SinkProcess};
use e2e_tests::scenario::{read_store, StoreContents};

/// A sink, a collector pipeline in front of it, and a scratch directory.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub bins: Binaries,
    pub sink: SinkProcess,
    pub port: u16,
    pub pipeline: Arc<Pipeline>,
}

impl Stack {
    pub async fn start() -> Stack {
        let bins = tokio::task::spawn_blocking(procs::binaries)
            .await
            .expect("build task")
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = procs::free_port().expect("free port");
        let store = dir.path().join("store");
        let sink = {
            let bins = bins.clone();
            tokio::task::spawn_blocking(move || SinkProcess::start(&bins, &store, port))
                .await
                .expect("sink task")
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let topology = Topology::from_config_file(
            &paths::vector_config_dir().join("vector.toml"),
            "k8s_logs",
            "fdb_sink",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let pipeline = Arc::new(Pipeline::start(Arc::new(topology), &sink.ingest_url()));
        Stack {
            dir,
            bins,
            sink,
            port,
            pipeline,
        }
    }

    /// A workspace directory for one pod.
    pub fn workspace(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("ws").join(name);
        std::fs::create_dir_all(&p).expect("workspace dir");
        p
    }

    /// Kills the sink with SIGKILL (no chance to flush or answer in-flight requests).
    pub fn kill_sink(&mut self) {
        self.sink.guard.kill();
    }

    /// Starts the sink again on the same port and store.
    pub async fn restart_sink(&mut self) {
        let bins = self.bins.clone();
        let store = self.dir.path().join("store");
        let port = self.port;
        self.sink = tokio::task::spawn_blocking(move || SinkProcess::start(&bins, &store, port))
            .await
            .expect("sink task")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Once every monitor is stopped: flushes the pipeline (waiting for every batch to
    /// be acknowledged), stops the sink cleanly and reads its store.
    pub async fn finish(self) -> (SinkReport, StoreContents) {
        let Stack {
            dir,
            mut sink,
            pipeline,
            ..
        } = self;
        let pipeline = Arc::try_unwrap(pipeline)
            .unwrap_or_else(|_| panic!("monitors still hold the pipeline"));
        // A guard against hangs only: in a debug build on a loaded machine the sink
        // can take a minute or more to drain the aggregation scenario's backlog.
        let report = tokio::time::timeout(Duration::from_secs(600), pipeline.finish())
            .await
            .expect("every batch is delivered within 10 minutes");
        let log = sink.log();
        assert!(
            sink.guard.terminate(Duration::from_secs(20)).is_some(),
            "fdb-sink did not stop on SIGTERM:\n{log}"
        );
        let store = read_store(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}\n{log}"));
        (report, store)
    }
}
