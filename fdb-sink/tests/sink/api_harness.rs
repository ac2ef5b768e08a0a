//! A sink with the API enabled, tokens, and event builders for API tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fdb_sink::api::auth::{mint_hs256, Claims, Role};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use crate::harness::{client, Sink};

pub const SECRET: &[u8] = b"api-test-secret-0123456789abcdef0123";

/// The test fixtures' key pairs.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// `fdb-sink serve` with ingest and the API on free ports, a store in
/// `dir`, and `--jwt-secret-file secret` when given: for tests of how it
/// starts (or refuses to).
pub fn serve_command(dir: &Path, secret: Option<&Path>) -> std::process::Command {
    let mut c = std::process::Command::new(crate::harness::BIN);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
    ]);
    if let Some(secret) = secret {
        c.arg("--jwt-secret-file").arg(secret);
    }
    c.arg("--store")
        .arg(format!("embedded:{}", dir.join("s").display()));
    c
}

/// A running sink with `--api-listen`.
pub struct Api {
    pub sink: Sink,
    pub api: String,
    _dir: tempfile::TempDir,
}

impl Api {
    /// HS256 with [`SECRET`].
    pub fn start(extra: &[&str]) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("jwt.key");
        std::fs::write(&secret, [SECRET, b"\n"].concat()).expect("secret");
        let store = dir.path().join("store");
        let mut args = vec![
            "--api-listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            secret.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        Self::start_with(dir, &store, &args)
    }

    /// HS256 with [`SECRET`], on a store that `prepare` fills first (given
    /// the store directory, before the server opens it).
    pub fn start_prepared(extra: &[&str], prepare: impl FnOnce(&Path)) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("jwt.key");
        std::fs::write(&secret, [SECRET, b"\n"].concat()).expect("secret");
        let store = dir.path().join("store");
        prepare(&store);
        let mut args = vec![
            "--api-listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            secret.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        Self::start_with(dir, &store, &args)
    }

    /// The HS256 secret file the server reads (for [`Api::start`]).
    pub fn secret_file(&self) -> PathBuf {
        self._dir.path().join("jwt.key")
    }

    /// The API's `host:port`.
    pub fn addr(&self) -> &str {
        self.api.trim_start_matches("http://")
    }

    /// With a PEM public key (RS256 or ES256).
    pub fn start_public_key(pem: &Path) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        Self::start_with(
            dir,
            &store,
            &[
                "--api-listen",
                "127.0.0.1:0",
                "--jwt-public-key-file",
                pem.to_str().expect("utf8"),
            ],
        )
    }

    fn start_with(dir: tempfile::TempDir, store: &Path, args: &[&str]) -> Api {
        let (sink, api) = Self::launch(store, args);
        Api {
            sink,
            api,
            _dir: dir,
        }
    }

    /// Stops the server and starts a new one on the same store, with the
    /// secret of [`Api::start`].
    pub fn restart(&mut self) {
        self.sink.stop();
        let secret = self._dir.path().join("jwt.key");
        let store = self.sink.dir.clone();
        let args = [
            "--api-listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            secret.to_str().expect("utf8"),
        ];
        let (sink, api) = Self::launch(&store, &args);
        self.sink = sink;
        self.api = api;
    }

    /// A sink on `store` and its API's base URL once it listens.
    fn launch(store: &Path, args: &[&str]) -> (Sink, String) {
        let sink = Sink::start(store, args);
        let deadline = Instant::now() + Duration::from_secs(20);
        let api = loop {
            let log = sink.log.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some(rest) = log.split("api_addr=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(Instant::now() < deadline, "API did not start; log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        };
        (sink, format!("http://{api}"))
    }

    pub fn store_dir(&self) -> PathBuf {
        self.sink.dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    /// Ingests event lines through the ingest endpoint.
    pub fn ingest(&self, lines: &[Value]) {
        let body: Vec<String> = lines.iter().map(Value::to_string).collect();
        let (s, r) = crate::harness::post(&self.sink, body.join("\n").into_bytes(), &[]);
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["dead_lettered"].as_u64(), Some(0), "{r}");
    }

    pub fn get(&self, token: &str, path: &str) -> (u16, Value) {
        send(client().get(self.url(path)).bearer_auth(token))
    }

    pub fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        send(client().post(self.url(path)).bearer_auth(token).json(body))
    }

    pub fn delete(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        send(
            client()
                .delete(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
    }
}

/// Sends and returns status and JSON body (or the text as a JSON string).
pub fn send(req: RequestBuilder) -> (u16, Value) {
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn http() -> Client {
    client()
}

/// An HS256 token with [`SECRET`].
pub fn token(tenant: &str, user: &str, role: Role) -> String {
    token_with(SECRET, tenant, user, role, 3600)
}

pub fn token_with(secret: &[u8], tenant: &str, user: &str, role: Role, ttl: i64) -> String {
    let exp = (jsonwebtoken::get_current_timestamp() as i64 + ttl) as u64;
    mint_hs256(
        secret,
        &Claims {
            tenant_id: tenant.into(),
            user_id: user.into(),
            role,
            exp,
        },
    )
    .expect("mint")
}

/// A `file-event/1` line with the given attribution and time.
#[allow(clippy::too_many_arguments)]
pub fn ev(
    tenant: &str,
    user: &str,
    session: &str,
    monitor: &str,
    seq: u64,
    ts: &str,
    event_type: &str,
    path: &str,
) -> Value {
    let mut v = json!({
        "schema": "file-event/1",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "monitor_id": monitor,
        "seq": seq,
        "timestamp": ts,
        "event_type": event_type,
        "kind": "file",
        "path": path,
        "size": seq,
        "checksum": format!("sha256:{:064x}", seq % 7),
        "tenant_id": tenant,
        "user_id": user,
        "session_id": session,
        "metadata": {"team": "core"},
        "cluster_name": "test",
        "namespace": "ide",
        "pod_name": format!("ws-{user}"),
        "node_name": "node-1",
        "container_name": "file-monitor",
        "pod_uid": "7f0c1a9e-0000-4000-8000-000000000001",
    });
    if event_type == "move" {
        v["from"] = json!(format!("{path}.old"));
        v["to"] = json!(path);
    }
    v
}

/// RFC 3339 time `secs` seconds after 2026-11-26T00:00:00Z.
pub fn ts(secs: u64) -> String {
    format!(
        "2026-11-26T{:02}:{:02}:{:02}.000000000Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}
