//! The ingest HTTP server: `POST /v1/events` for Vector's `http` sink, plus
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Status codes follow SPEC §3. Vector retries 408, 429 and 5xx and drops a
//! batch on any other status, so: bad data is never a 5xx (it is
//! dead-lettered and answered 200), and a transient fault is never a 4xx.
//!
//! | outcome | status |
//! |---|---|
//! | every line durably committed (invalid ones in dead-letter) | 200 + JSON summary |
//! | missing or wrong bearer token | 401 |
//! | body (or decompressed body) over `--max-body-bytes` | 413 |
//! | unknown `Content-Encoding` | 415 |
//! | body that is not valid gzip/zstd | 400 |
//! | body not received within the request timeout | 408 |
//! | too many batches in flight, decompressed bodies over the shared budget, store unavailable, or commit not finished within the request timeout | 503 + `Retry-After` |
//!
//! While the store is known to be down (the state `/readyz` reports: the
//! last commit, check or probe write failed), a request is answered 503 +
//! `Retry-After` at once, before its body is read and without taking an
//! in-flight slot: requests that would each wait for a store that does not
//! answer cannot hold every slot. The readiness loop keeps probing the
//! store meanwhile, and ingest resumes as soon as a probe succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use super::decode::{decode, DecodeBudget, DecodeError};
use super::Ingestor;
use crate::metrics::{outcome, Metrics};

mod tokens;
pub use tokens::{IngestTokens, TokenFileError, RECHECK_EVERY};

/// Ingest settings (validated from the command line).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest request body, compressed or decompressed.
    pub max_body_bytes: usize,
    /// Batches validated or committed at once; more get 503.
    pub max_inflight_batches: usize,
    /// Deadline for receiving and committing one request.
    pub request_timeout: Duration,
    /// `Retry-After` seconds on 503.
    pub retry_after_secs: u64,
    /// The bearer tokens clients must send one of, if any
    /// (`--ingest-token-file`, re-read when it changes).
    pub token: Option<Arc<IngestTokens>>,
}

/// Shared state of the ingest routes.
pub struct IngestState {
    pub ingestor: Arc<Ingestor>,
    pub config: IngestConfig,
    pub registry: Arc<Registry>,
    inflight: Arc<Semaphore>,
    decoded: Arc<DecodeBudget>,
}

/// The default budget for decompressed bodies held at once
/// ([`IngestState::with_decode_budget`]).
pub const DEFAULT_DECODE_BUDGET: usize = 128 << 20;

impl IngestState {
    pub fn new(ingestor: Arc<Ingestor>, config: IngestConfig, registry: Arc<Registry>) -> Self {
        let inflight = Arc::new(Semaphore::new(config.max_inflight_batches.max(1)));
        let decoded = DecodeBudget::new(decode_budget(DEFAULT_DECODE_BUDGET, &config));
        IngestState {
            ingestor,
            config,
            registry,
            inflight,
            decoded,
        }
    }

    /// Bounds the bytes of decompressed bodies held at once, across
    /// requests, to `bytes` (at least one body of the largest size, so that
    /// a body that is fine alone always fits once it is alone). A request
    /// that would go beyond gets 503 with `Retry-After`.
    pub fn with_decode_budget(mut self, bytes: usize) -> Self {
        self.decoded = DecodeBudget::new(decode_budget(bytes, &self.config));
        self
    }

    /// The budget for decompressed bodies, in bytes.
    pub fn decode_budget(&self) -> usize {
        self.decoded.limit()
    }

    fn metrics(&self) -> &Metrics {
        self.ingestor.metrics()
    }
}

/// The router: `POST /v1/events`, `GET /metrics`, `/healthz`, `/readyz`.
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        // The handler enforces its own limit (and answers 413 itself).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// An error answer. A 4xx is also logged: Vector drops such a batch for
/// good (408 and 429 aside, which it retries), so the sink's log is where an
/// operator finds why.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let retried = matches!(
        status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
    );
    if retried {
        tracing::info!(
            status = status.as_u16(),
            error = code,
            detail = %message,
            "ingest request refused for now; the client retries it"
        );
    } else if status.is_client_error() {
        tracing::warn!(
            status = status.as_u16(),
            error = code,
            detail = %message,
            "ingest request refused; the client will not retry it"
        );
    }
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

fn unavailable(state: &IngestState, code: &str, message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(state.config.retry_after_secs),
    );
    r
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 7235).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Whether the request carries one of `tokens` (read again from their file
/// when due, [`IngestTokens::accepts`]).
async fn authorized(tokens: &IngestTokens, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    tokens.accepts(presented).await
}

async fn ingest(State(state): State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Response {
    let response = ingest_inner(&state, headers, body).await;
    state.metrics().http(response.status().as_u16());
    response
}

async fn ingest_inner(state: &Arc<IngestState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let cfg = &state.config;
    if let Some(tokens) = &cfg.token {
        if !authorized(tokens, &headers).await {
            state.metrics().batch(outcome::REJECTED);
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            );
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes) {
        state.metrics().batch(outcome::REJECTED);
        return too_large(cfg.max_body_bytes);
    }
    if state.ingestor.health().is_down() {
        state.metrics().batch(outcome::STORE_ERROR);
        return unavailable(state, "store_unavailable", STORE_DOWN);
    }
    let Ok(permit) = state.inflight.clone().try_acquire_owned() else {
        state.metrics().batch(outcome::SATURATED);
        return unavailable(
            state,
            "saturated",
            "too many batches in flight; retry later",
        );
    };
    let collected = tokio::time::timeout(
        cfg.request_timeout,
        read_body(body, cfg.max_body_bytes, declared),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(b)) => b,
        Ok(Err(ReadError::TooLarge)) => {
            state.metrics().batch(outcome::REJECTED);
            return too_large(cfg.max_body_bytes);
        }
        Ok(Err(ReadError::Body(e))) => {
            state.metrics().batch(outcome::REJECTED);
            return error(
                StatusCode::BAD_REQUEST,
                "body_read_error",
                format!("reading the body failed: {e}"),
            );
        }
        Err(_) => {
            state.metrics().batch(outcome::REJECTED);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body was not received in time",
            );
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ingestor = state.ingestor.clone();
    let limit = cfg.max_body_bytes;
    let budget = state.decoded.clone();
    let metrics = state.metrics().clone();
    let task = tokio::task::spawn_blocking(move || {
        // The permit lives until the commit is over, even if the client
        // has been answered (timeout), so in-flight work stays bounded.
        let _permit = permit;
        metrics.inflight_batches.inc();
        let r = match decode(encoding.as_deref(), &bytes, limit, &budget) {
            Ok(decoded) => Ok(ingestor.ingest_body(&decoded.bytes)),
            Err(e) => Err(e),
        };
        metrics.inflight_batches.dec();
        r
    });
    let remaining = cfg.request_timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, task).await {
        Ok(Ok(Ok(Ok(summary)))) => (StatusCode::OK, Json(summary)).into_response(),
        Ok(Ok(Ok(Err(e)))) => {
            // The cause (store paths, the error's chain) is for the
            // operator's log, not for the client.
            tracing::warn!(
                error = %crate::store::ErrorChain(&e),
                unavailable = e.unavailable(),
                "batch not committed"
            );
            unavailable(state, "store_unavailable", STORE_UNAVAILABLE)
        }
        Ok(Ok(Err(DecodeError::TooLarge { limit }))) => {
            state.metrics().batch(outcome::REJECTED);
            too_large(limit)
        }
        Ok(Ok(Err(e @ DecodeError::Unsupported(_)))) => {
            state.metrics().batch(outcome::REJECTED);
            error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                e.to_string(),
            )
        }
        Ok(Ok(Err(e @ DecodeError::Busy { .. }))) => {
            state.metrics().batch(outcome::SATURATED);
            tracing::debug!(error = %e, "compressed body refused for now");
            unavailable(state, "saturated", DECODE_BUSY)
        }
        Ok(Ok(Err(e @ DecodeError::Corrupt { .. }))) => {
            state.metrics().batch(outcome::REJECTED);
            error(StatusCode::BAD_REQUEST, "bad_encoding", e.to_string())
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "ingest task failed");
            unavailable(
                state,
                "internal",
                "the batch could not be processed; retry it later",
            )
        }
        Err(_) => {
            tracing::warn!(timeout = ?cfg.request_timeout, "commit still running at the request deadline");
            unavailable(
                state,
                "timeout",
                "the commit did not finish within the request timeout; retry it later \
                 (what is already stored is not stored twice)",
            )
        }
    }
}

/// The message of a 503 for a batch the store did not commit (wholly). What
/// went wrong in the store (its paths, the error's chain) is logged, not
/// told to clients.
pub const STORE_UNAVAILABLE: &str = "the store could not commit the batch (it is unavailable or \
     failing); retry it later: what is already stored is not stored twice. The sink's log has \
     the cause";

/// The message of a 503 for a batch refused because the store is known to
/// be down (not tried).
pub const STORE_DOWN: &str = "the store is unavailable, so the batch was not committed; retry it \
     later: what is already stored is not stored twice. The sink's log has the cause";

/// The message of a 503 for a compressed body that does not fit the budget
/// for decompressed bodies now.
pub const DECODE_BUSY: &str =
    "too many compressed bodies are being decompressed at once; retry it later";

/// Why a request body could not be read.
enum ReadError {
    /// Over the size limit.
    TooLarge,
    /// The connection failed while the body was sent.
    Body(axum::Error),
}

/// Reads a body of at most `limit` bytes into one buffer, sized by the
/// declared `Content-Length` when there is one: each received frame is
/// copied in and freed at once, so a body costs its own size, not its
/// frames plus a copy of them.
async fn read_body(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len().saturating_add(data.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

/// `bytes`, raised to what one body of the largest size takes.
fn decode_budget(bytes: usize, config: &IngestConfig) -> usize {
    bytes.max(config.max_body_bytes.saturating_add(1))
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body exceeds {limit} bytes; send smaller batches"),
    )
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the
/// Prometheus text format 0.0.4 for the others (Vector's `prometheus_scrape`,
/// curl).
async fn metrics(State(state): State<Arc<IngestState>>, headers: HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string());
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, crate::metrics::TEXT_0_0_4)],
            crate::metrics::to_text_0_0_4(&text),
        )
            .into_response()
    }
}

async fn readyz(State(state): State<Arc<IngestState>>) -> Response {
    if state.ingestor.health().is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
    }
}
