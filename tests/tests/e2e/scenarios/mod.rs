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
use e2e_tests::procs::{self, ApiConfig, Binaries, SinkProcess};
use e2e_tests::scenario::{read_store, StoreContents};

/// A sink, a collector pipeline in front of it, and a scratch directory.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub bins: Binaries,
    pub sink: SinkProcess,
    pub port: u16,
    pub api: ApiConfig,
    pub pipeline: Arc<Pipeline>,
}

/// The HS256 secret the scenarios' sinks verify query tokens with.
const JWT_SECRET: &str = "e2e-scenario-secret-not-for-production";

impl Stack {
    pub async fn start() -> Stack {
        let bins = tokio::task::spawn_blocking(procs::binaries)
            .await
            .expect("build task")
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = procs::free_port().expect("free port");
        let api = ApiConfig {
            port: procs::free_port().expect("free port"),
            jwt_secret_file: dir.path().join("jwt.key"),
        };
        std::fs::write(&api.jwt_secret_file, JWT_SECRET).expect("write the JWT secret");
        let store = dir.path().join("store");
        let sink = {
            let (bins, api) = (bins.clone(), api.clone());
            tokio::task::spawn_blocking(move || SinkProcess::start(&bins, &store, port, Some(&api)))
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
            api,
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
        let (bins, api) = (self.bins.clone(), self.api.clone());
        let store = self.dir.path().join("store");
        let port = self.port;
        self.sink = tokio::task::spawn_blocking(move || {
            SinkProcess::start(&bins, &store, port, Some(&api))
        })
        .await
        .expect("sink task")
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `GET <path>` on the sink's query API as `user` of `tenant` (role `user`),
    /// following `next_cursor` until the last page; returns the status of the first
    /// page and every record.
    pub async fn query_records(
        &self,
        path: &str,
        tenant: &str,
        user: &str,
    ) -> (u16, Vec<serde_json::Value>) {
        use fdb_sink::api::auth::{mint_hs256, Claims, Role};
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 600)
            .unwrap_or(u64::MAX);
        let token = mint_hs256(
            JWT_SECRET.as_bytes(),
            &Claims {
                tenant_id: tenant.to_owned(),
                user_id: user.to_owned(),
                role: Role::User,
                exp,
            },
        )
        .expect("mint a token");
        let api = self.sink.api_addr.expect("the API is on");
        let client = reqwest::Client::new();
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        let mut first_status = None;
        loop {
            let mut req = client
                .get(format!("http://{api}{path}"))
                .bearer_auth(&token);
            if let Some(c) = &cursor {
                req = req.query(&[("cursor", c.as_str())]);
            }
            let resp = req.send().await.expect("the API answers");
            let status = resp.status().as_u16();
            first_status.get_or_insert(status);
            let body: serde_json::Value = resp.json().await.expect("a JSON body");
            if status != 200 {
                return (status, records);
            }
            records.extend(body["records"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return (first_status.unwrap_or(status), records),
            }
        }
    }

    /// Polls [`Stack::query_records`] until it returns at least `want` records (the
    /// pipeline delivers within a batch timeout plus the sink's commit), or 60 s.
    pub async fn query_until(
        &self,
        path: &str,
        tenant: &str,
        user: &str,
        want: usize,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, records) = self.query_records(path, tenant, user).await;
            assert_eq!(status, 200, "GET {path} as {tenant}/{user}");
            if records.len() >= want || std::time::Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
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
