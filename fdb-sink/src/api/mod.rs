//! The query and agent-coordination API (`serve --api-listen`), SPEC §3.
//!
//! One module per route group; every handler authenticates the caller
//! ([`auth::Caller`]), reads only the caller's tenant, and runs its store
//! work on the blocking pool over the [`Store`] trait, so the API behaves the
//! same on the embedded store and on FoundationDB.
//!
//! | route | module |
//! |---|---|
//! | `GET /api/v5/agents/{session_id}/logs`, `GET /api/v5/agents/logs` | [`logs`] (+ [`sse`] with `follow=true`) |
//! | `GET /api/v5/files/history` | [`history`] |
//! | `GET /api/v5/files/duplicates` | [`files`] |
//! | `GET /api/v5/monitors/{monitor_id}/delivery` | [`monitors`] |
//! | `POST /api/v5/agents/heartbeat` | [`agents`] |
//! | `GET /api/v5/agents` | [`agent_list`] |
//! | `POST`/`DELETE /api/v5/agents/claims` | [`claims`] |
//!
//! Per-user caps on stored agent rows and claims: [`usage`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use clap::Args;

use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::store::Store;

pub mod agent_list;
pub mod agents;
pub mod auth;
pub mod claims;
#[cfg(test)]
pub(crate) mod counting;
pub mod cursor;
pub mod error;
pub mod files;
pub mod history;
pub mod logs;
pub mod monitors;
pub mod owner;
pub mod paths;
pub mod sse;
pub mod txn_size;
pub mod usage;

pub use error::ApiError;

/// The query of a route that takes no parameters: any parameter is a 400,
/// as on the routes that take some.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The `serve` flags of the API.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address of the query and agent API (/api/v5/...), e.g. 0.0.0.0:8081.
    /// Off unless given; needs --jwt-secret-file or --jwt-public-key-file.
    /// Port 0 picks a free port (logged as `api_addr=`).
    #[arg(long, env = "FDB_SINK_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,

    /// File holding the HS256 secret that signs API tokens (surrounding
    /// whitespace ignored). Tokens with any other algorithm are refused.
    #[arg(
        long,
        env = "FDB_SINK_JWT_SECRET_FILE",
        value_name = "PATH",
        conflicts_with = "jwt_public_key_file"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM public key (RSA for RS256, P-256 EC for ES256) that verifies API
    /// tokens. Tokens with any other algorithm are refused.
    #[arg(long, env = "FDB_SINK_JWT_PUBLIC_KEY_FILE", value_name = "PATH")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Required `aud` of API tokens (the audience the identity provider
    /// issues them for). Without it, a token that carries any `aud` is
    /// refused.
    #[arg(long, env = "FDB_SINK_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Required `iss` of API tokens. Without it, `iss` is not checked.
    #[arg(long, env = "FDB_SINK_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Longest token lifetime accepted: a token whose `exp` is further
    /// ahead than this is refused (e.g. 1d, 7d).
    #[arg(long, env = "FDB_SINK_JWT_MAX_LIFETIME", default_value = "7d",
          value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub jwt_max_lifetime: Duration,

    /// An agent with no heartbeat for this long is listed as `dead`, and its
    /// claims no longer block others (e.g. 60s, 5m; at least 1s).
    #[arg(long, env = "FDB_SINK_AGENT_TTL", default_value = "60s",
          value_parser = agent_ttl_arg, value_name = "DURATION")]
    pub agent_ttl: Duration,

    /// Agent sessions (agent rows) one user may have stored; a heartbeat or
    /// claim for a new session over it is 429 `limit_exceeded`. Sessions
    /// with no heartbeat for --agent-ttl and no unexpired claim do not
    /// count: the oldest of them make room for new ones.
    #[arg(long, env = "FDB_SINK_API_MAX_AGENTS_PER_USER",
          default_value_t = usage::DEFAULT_MAX_AGENTS,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub api_max_agents_per_user: u32,

    /// Unexpired claims (claimed paths) one user may hold over all of the
    /// user's sessions; a claim past it is 429 `limit_exceeded`. Expired
    /// claims do not count and are removed as the user claims again.
    #[arg(long, env = "FDB_SINK_API_MAX_CLAIMS_PER_USER",
          default_value_t = usage::DEFAULT_MAX_CLAIMS,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub api_max_claims_per_user: u32,

    /// Run retention inside serve (with or without the API): at start and
    /// every --retention-interval, remove audit records older than this
    /// (e.g. 90d). Off unless given.
    #[arg(long, env = "FDB_SINK_RETENTION_OLDER_THAN",
          value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub retention_older_than: Option<Duration>,

    /// With --retention-older-than: run even when more than 90 % of the
    /// store's sessions would lose all their records, which is what a clock
    /// set far ahead looks like (see `fdb-sink retention --help`). Off: such
    /// a run removes nothing and is logged as an error.
    #[arg(long, env = "FDB_SINK_RETENTION_ALLOW_REMOVING_ALL")]
    pub retention_allow_removing_all: bool,

    /// API connections open at the same time at most; more wait until one
    /// closes.
    #[arg(
        long,
        env = "FDB_SINK_API_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub api_max_connections: usize,

    /// An API connection on which nothing is read or written for this long
    /// is closed (e.g. 60s); a handler's work before its answer starts counts
    /// as idle, so keep it well above the slowest query.
    #[arg(long, env = "FDB_SINK_API_IDLE_TIMEOUT", default_value = "60s",
          value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub api_idle_timeout: Duration,

    /// `follow=true` streams open at the same time at most, over all
    /// tenants; more get 429.
    #[arg(
        long,
        env = "FDB_SINK_API_MAX_STREAMS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub api_max_streams: usize,

    /// `follow=true` streams one tenant may hold open at the same time;
    /// more get 429.
    #[arg(
        long,
        env = "FDB_SINK_API_MAX_STREAMS_PER_TENANT",
        default_value_t = 32,
        value_name = "N"
    )]
    pub api_max_streams_per_tenant: usize,

    /// How far behind the present a `follow=true` stream stays: it sends a
    /// record only once its event time is this old, so that records
    /// committed out of event-time order within that time are sent in
    /// order and none is skipped. The default covers the collector's own
    /// delays: Vector finds a new pod's log file within 15 s and batches for
    /// 1 s (e.g. 5s, 1m; 0s sends at once; at most 1h).
    #[arg(long, env = "FDB_SINK_API_FOLLOW_DELAY", default_value = "20s",
          value_parser = follow_delay_arg, value_name = "DURATION")]
    pub api_follow_delay: Duration,

    /// How often the in-process retention runs (with --retention-older-than).
    #[arg(long, env = "FDB_SINK_RETENTION_INTERVAL", default_value = "1h",
          value_parser = crate::timespec::duration_arg, value_name = "DURATION")]
    pub retention_interval: Duration,
}

/// Shortest `--agent-ttl`.
pub const MIN_AGENT_TTL: Duration = Duration::from_secs(1);

/// Clap value parser of `--api-follow-delay`: a duration of at most
/// [`MAX_FOLLOW_DELAY`].
pub fn follow_delay_arg(s: &str) -> Result<Duration, String> {
    let d = crate::timespec::duration_arg(s)?;
    if d > MAX_FOLLOW_DELAY {
        return Err(format!(
            "{s:?} is too long: a follow stream would send nothing for that long (at most 1h)"
        ));
    }
    Ok(d)
}

/// Longest `--api-follow-delay`.
pub const MAX_FOLLOW_DELAY: Duration = Duration::from_secs(3600);

/// Clap value parser of `--agent-ttl`: a duration of at least
/// [`MIN_AGENT_TTL`] (shorter, every agent would be `dead` as soon as its
/// heartbeat is stored, and could never claim).
pub fn agent_ttl_arg(s: &str) -> Result<Duration, String> {
    let d = crate::timespec::duration_arg(s)?;
    if d < MIN_AGENT_TTL {
        return Err(format!(
            "{s:?} is too short: an agent with no heartbeat for this long is dead and cannot \
             claim, so it must be at least 1s (e.g. 60s)"
        ));
    }
    Ok(d)
}

impl ApiArgs {
    /// Loads the token verifier named by the flags.
    pub fn verifier(&self) -> anyhow::Result<auth::Verifier> {
        let v = match (&self.jwt_secret_file, &self.jwt_public_key_file) {
            (Some(p), None) => auth::Verifier::from_secret_file(p)?,
            (None, Some(p)) => auth::Verifier::from_public_key_file(p)?,
            _ => {
                return Err(crate::cli::UsageError(
                    "--api-listen needs --jwt-secret-file (HS256) or --jwt-public-key-file (RS256/ES256)"
                        .into(),
                )
                .into())
            }
        };
        Ok(v.with_audience(self.jwt_audience.as_deref())
            .with_issuer(self.jwt_issuer.as_deref())
            .with_max_lifetime(self.jwt_max_lifetime))
    }

    /// The per-user caps of the flags.
    pub fn usage_limits(&self) -> usage::Limits {
        usage::Limits {
            max_agents: self.api_max_agents_per_user.into(),
            max_claims: self.api_max_claims_per_user.into(),
            agent_ttl: self.agent_ttl,
        }
    }

    /// The key file the verifier is read from.
    pub fn key_file(&self) -> Option<&PathBuf> {
        self.jwt_secret_file
            .as_ref()
            .or(self.jwt_public_key_file.as_ref())
    }
}

/// How often `follow=true` streams look for new records.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Longest interval between keep-alive comments on `follow=true` streams
/// (shorter when `--api-idle-timeout` is short, so a stream is never idle).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every handler shares.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    /// Verifies tokens; replaced when the key file changes.
    pub verifier: Arc<auth::SharedVerifier>,
    pub agent_ttl: Duration,
    /// Per-user caps on agent rows and claims.
    pub limits: usage::Limits,
    pub follow_poll: Duration,
    /// `--api-follow-delay`.
    pub follow_delay: Duration,
    /// Interval of the keep-alive comments on `follow=true` streams.
    pub keep_alive: Duration,
    /// Open `follow=true` streams, bounded per tenant and in total.
    pub streams: Arc<sse::StreamSlots>,
    /// Turns true at shutdown; ends `follow=true` streams.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// `fdb_sink_api_requests_total` and `fdb_sink_api_streams_open`.
    pub metrics: Metrics,
    /// Seals the cursors of pages and streams.
    pub cursors: cursor::Cursors,
}

impl ApiState {
    /// Runs blocking store work on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn Store, &Keys) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(s.store.as_ref(), &s.keys))
            .await
            .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
    }
}

/// Every route served: (method, path template as in docs/openapi.yaml).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v5/agents/{session_id}/logs"),
    ("get", "/api/v5/agents/logs"),
    ("get", "/api/v5/files/history"),
    ("get", "/api/v5/files/duplicates"),
    ("get", "/api/v5/monitors/{monitor_id}/delivery"),
    ("post", "/api/v5/agents/heartbeat"),
    ("get", "/api/v5/agents"),
    ("post", "/api/v5/agents/claims"),
    ("delete", "/api/v5/agents/claims"),
];

/// Counts every response in `fdb_sink_api_requests_total` by the route's
/// path template (bounded: the routes of [`ROUTES`] and `unmatched`).
async fn count_response(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let resp = next.run(req).await;
    state.metrics.api(&route, resp.status().as_u16());
    resp
}

/// The API router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v5/agents/{session_id}/logs", get(logs::session_logs))
        .route("/api/v5/agents/logs", get(logs::user_logs))
        .route("/api/v5/files/history", get(history::history))
        .route("/api/v5/files/duplicates", get(files::duplicates))
        .route(
            "/api/v5/monitors/{monitor_id}/delivery",
            get(monitors::delivery),
        )
        .route(
            "/api/v5/agents/heartbeat",
            axum::routing::post(agents::heartbeat),
        )
        .route("/api/v5/agents", get(agent_list::list))
        .route(
            "/api/v5/agents/claims",
            axum::routing::post(claims::claim).delete(claims::release),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_response,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `stop` turns true.
pub async fn serve(
    listener: crate::conn::Listener,
    state: Arc<ApiState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// Binds `addr`, logs `api_addr=<addr>`, and serves the API until `stop`
/// turns true.
pub async fn spawn(
    addr: SocketAddr,
    args: &ApiArgs,
    verifier: auth::Verifier,
    store: Arc<dyn Store>,
    keys: Keys,
    metrics: Metrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --api-listen {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(api_addr = %local, algorithm = ?verifier.algorithm(), "API server ready");
    let idle = args.api_idle_timeout.max(Duration::from_secs(1));
    let verifier = Arc::new(auth::SharedVerifier::new(verifier));
    if let Some(path) = args.key_file() {
        let reload_args = args.clone();
        tokio::spawn(auth::reload_loop(
            path.clone(),
            verifier.clone(),
            move || reload_args.verifier().map_err(|e| format!("{e:#}")),
            stop.clone(),
        ));
    }
    let state = Arc::new(ApiState {
        store,
        keys,
        verifier,
        agent_ttl: args.agent_ttl,
        limits: args.usage_limits(),
        follow_poll: FOLLOW_POLL,
        follow_delay: args.api_follow_delay,
        keep_alive: KEEP_ALIVE.min(idle / 3),
        streams: Arc::new(sse::StreamSlots::new(
            args.api_max_streams,
            args.api_max_streams_per_tenant,
            metrics.api_streams_open.clone(),
        )),
        stop: stop.clone(),
        metrics,
        cursors: cursor::Cursors::default(),
    });
    let listener = crate::conn::Listener::new(
        listener,
        crate::conn::Limits::api(idle, args.api_max_connections),
        "api",
    );
    Ok(tokio::spawn(serve(listener, state, stop)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    /// Every entry of [`ROUTES`] reaches a handler (which asks for a token),
    /// not the fallback; other methods on the same paths are 405.
    #[tokio::test]
    async fn every_listed_route_is_served() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> =
            Arc::new(crate::store::embedded::EmbeddedStore::open(dir.path()).expect("store"));
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let app = router(Arc::new(ApiState {
            store,
            keys: Keys::default(),
            verifier: Arc::new(auth::SharedVerifier::new(auth::Verifier::hs256(b"k"))),
            agent_ttl: Duration::from_secs(60),
            limits: usage::Limits {
                max_agents: 10,
                max_claims: 10,
                agent_ttl: Duration::from_secs(60),
            },
            follow_poll: FOLLOW_POLL,
            follow_delay: Duration::ZERO,
            keep_alive: KEEP_ALIVE,
            streams: Arc::new(sse::StreamSlots::new(8, 8, Default::default())),
            stop,
            metrics: Metrics::unregistered(),
            cursors: cursor::Cursors::default(),
        }));
        for (method, path) in ROUTES {
            let uri = path
                .replace("{session_id}", "s")
                .replace("{monitor_id}", "m");
            let m: Method = method.to_uppercase().parse().expect("method");
            let resp = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(m)
                        .uri(&uri)
                        .body(Body::empty())
                        .expect("req"),
                )
                .await
                .expect("response");
            assert_eq!(resp.status(), 401, "{method} {path}");
            let put = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(Method::PUT)
                        .uri(&uri)
                        .body(Body::empty())
                        .expect("req"),
                )
                .await
                .expect("response");
            assert_eq!(put.status(), 405, "PUT {path}");
            let body = axum::body::to_bytes(put.into_body(), 4096)
                .await
                .expect("body");
            assert!(String::from_utf8_lossy(&body).contains("method_not_allowed"));
        }
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/api/v5/nope")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 404);
    }
}
