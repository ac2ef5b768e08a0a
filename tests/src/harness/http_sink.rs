//! Delivers events the way Vector 0.56.0's `http` sink does, for the settings this
//! project uses (json codec, `newline_delimited` or default framing, gzip or none):
//!
//! - batches close at `batch.max_events`, at `batch.max_bytes` of encoded events, or
//!   `batch.timeout_secs` after their first event;
//! - the body is the events encoded as JSON objects with sorted keys (Vector's log
//!   events are ordered maps), joined by `\n` with no trailing newline
//!   (`newline_delimited`), or a JSON array (the json codec's default framing);
//! - gzip at the default level, `Content-Type: application/x-ndjson` or
//!   `application/json`, `Content-Encoding: gzip`, `Accept-Encoding: zstd,gzip,deflate,br`,
//!   `User-Agent: Vector/0.56.0 (x86_64-unknown-linux-gnu)`;
//! - 2xx acknowledges the batch; 408, 429 and 5xx except 501, connection errors and
//!   timeouts are retried with the identical body after a Fibonacci backoff
//!   (`retry_initial_backoff_secs`, capped at `retry_max_duration_secs`, full jitter),
//!   forever; any other status drops the batch.
//!
//! One request is in flight at a time (Vector's adaptive concurrency starts at 1);
//! while a batch is being retried, new events wait in a bounded queue, the back-pressure
//! Vector's blocking disk buffer applies to its source.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vrl::value::Value;

/// The `User-Agent` Vector 0.56.0 sends.
pub const USER_AGENT: &str = "Vector/0.56.0 (x86_64-unknown-linux-gnu)";
/// The `Accept-Encoding` Vector 0.56.0 sends.
pub const ACCEPT_ENCODING: &str = "zstd,gzip,deflate,br";

/// How events are put together into one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `framing.method = "newline_delimited"`: NDJSON without a final newline.
    NewlineDelimited,
    /// No framing set with the json codec: a JSON array.
    JsonArray,
}

/// Body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Gzip at the default level (6), as `compression = "gzip"`.
    Gzip,
}

/// Randomisation of retry delays (`request.retry_jitter_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterMode {
    None,
    /// A uniformly random delay between zero and the backoff (Vector's default).
    Full,
}

/// The `http` sink settings the harness honours, with Vector's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSinkConfig {
    pub uri: String,
    pub framing: Framing,
    pub compression: Compression,
    /// `batch.max_events` (Vector: unlimited by default).
    pub max_events: usize,
    /// `batch.max_bytes` (Vector: 10 MB by default).
    pub max_bytes: usize,
    /// `batch.timeout_secs` (Vector: 1 s by default).
    pub batch_timeout: Duration,
    /// `request.retry_initial_backoff_secs` (1 s).
    pub retry_initial_backoff: Duration,
    /// `request.retry_max_duration_secs` (30 s).
    pub retry_max_duration: Duration,
    pub jitter: JitterMode,
    /// `request.timeout_secs` (60 s).
    pub request_timeout: Duration,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            uri: "http://127.0.0.1:8080/v1/events".into(),
            framing: Framing::JsonArray,
            compression: Compression::None,
            max_events: usize::MAX,
            max_bytes: 10_000_000,
            batch_timeout: Duration::from_secs(1),
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_duration: Duration::from_secs(30),
            jitter: JitterMode::Full,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A sink table the harness cannot reproduce.
#[derive(Debug, Error, PartialEq)]
pub enum SinkConfigError {
    #[error("sink type is {0:?}, the harness reproduces only \"http\"")]
    NotHttp(String),
    #[error("sink has no uri")]
    NoUri,
    #[error("encoding.codec is {0:?}, the harness reproduces only \"json\"")]
    Codec(String),
    #[error("framing.method {0:?} is not reproduced")]
    Framing(String),
    #[error("compression {0:?} is not reproduced")]
    Compression(String),
    #[error("{0} must be a non-negative number")]
    Number(&'static str),
}

fn number(
    table: &toml::Table,
    section: &str,
    key: &'static str,
) -> Result<Option<f64>, SinkConfigError> {
    let v = table
        .get(section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(key));
    match v {
        None => Ok(None),
        Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as f64)),
        Some(toml::Value::Float(f)) if *f >= 0.0 => Ok(Some(*f)),
        Some(_) => Err(SinkConfigError::Number(key)),
    }
}

impl HttpSinkConfig {
    /// Reads the settings of one `[sinks.<id>]` table of a Vector config.
    pub fn from_vector_sink(table: &toml::Table) -> Result<Self, SinkConfigError> {
        let kind = table
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if kind != "http" {
            return Err(SinkConfigError::NotHttp(kind.to_owned()));
        }
        let mut cfg = HttpSinkConfig {
            uri: table
                .get("uri")
                .and_then(|v| v.as_str())
                .ok_or(SinkConfigError::NoUri)?
                .to_owned(),
            ..Default::default()
        };
        let codec = table
            .get("encoding")
            .and_then(|e| e.get("codec"))
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        if codec != "json" {
            return Err(SinkConfigError::Codec(codec.to_owned()));
        }
        cfg.framing = match table
            .get("framing")
            .and_then(|f| f.get("method"))
            .and_then(|m| m.as_str())
        {
            None => Framing::JsonArray,
            Some("newline_delimited") => Framing::NewlineDelimited,
            Some(other) => return Err(SinkConfigError::Framing(other.to_owned())),
        };
        let compression = match table.get("compression") {
            None => "none",
            Some(toml::Value::String(s)) => s.as_str(),
            Some(toml::Value::Table(t)) => t
                .get("algorithm")
                .and_then(|a| a.as_str())
                .unwrap_or_default(),
            Some(_) => "",
        };
        cfg.compression = match compression {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            other => return Err(SinkConfigError::Compression(other.to_owned())),
        };
        if let Some(n) = number(table, "batch", "max_events")? {
            cfg.max_events = n as usize;
        }
        if let Some(n) = number(table, "batch", "max_bytes")? {
            cfg.max_bytes = n as usize;
        }
        if let Some(n) = number(table, "batch", "timeout_secs")? {
            cfg.batch_timeout = Duration::from_secs_f64(n);
        }
        if let Some(n) = number(table, "request", "retry_initial_backoff_secs")? {
            cfg.retry_initial_backoff = Duration::from_secs_f64(n);
        }
        if let Some(n) = number(table, "request", "retry_max_duration_secs")? {
            cfg.retry_max_duration = Duration::from_secs_f64(n);
        }
        if let Some(n) = number(table, "request", "timeout_secs")? {
            cfg.request_timeout = Duration::from_secs_f64(n);
        }
        if let Some(mode) = table
            .get("request")
            .and_then(|r| r.get("retry_jitter_mode"))
            .and_then(|m| m.as_str())
        {
            cfg.jitter = if mode == "None" {
                JitterMode::None
            } else {
                JitterMode::Full
            };
        }
        Ok(cfg)
    }
}

/// One event encoded by the json codec: a JSON object with sorted keys (VRL objects
/// are ordered maps, like Vector's log events), timestamps in RFC 3339 with as many
/// fractional digits as needed.
pub fn encode_event(event: &Value) -> Vec<u8> {
    // Serialising a VRL value cannot fail: maps have string keys and floats are finite.
    serde_json::to_vec(event).unwrap_or_default()
}

/// A request body before compression, and its `Content-Type`.
pub fn frame(encoded: &[Vec<u8>], framing: Framing) -> (Vec<u8>, &'static str) {
    match framing {
        Framing::NewlineDelimited => (encoded.join(&b'\n'), "application/x-ndjson"),
        Framing::JsonArray => {
            let mut body =
                Vec::with_capacity(encoded.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            body.extend_from_slice(&encoded.join(&b','));
            body.push(b']');
            (body, "application/json")
        }
    }
}

/// Compresses a body as the sink's `compression` setting says.
pub fn compress(body: Vec<u8>, compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => body,
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::default(),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&body);
            enc.finish().unwrap_or_default()
        }
    }
}

/// What Vector's http sink does with a response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// 2xx: the batch is acknowledged.
    Successful,
    /// 408, 429, 5xx except 501: sent again after a backoff.
    Retry,
    /// Anything else: the batch is dropped.
    DontRetry,
}

/// Vector's default retry strategy for the http sink.
pub fn retry_action(status: u16) -> RetryAction {
    match status {
        200..=299 => RetryAction::Successful,
        408 | 429 => RetryAction::Retry,
        501 => RetryAction::DontRetry,
        500..=599 => RetryAction::Retry,
        _ => RetryAction::DontRetry,
    }
}

/// One HTTP attempt for a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Status(u16),
    /// Connection refused, reset, or timed out: retried.
    Transport(String),
}

/// The fate of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Delivered,
    Dropped { status: u16 },
}

/// One batch: its events, its wire body, every attempt and the outcome.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub events: Vec<Value>,
    /// The body as sent (compressed if configured); identical on every attempt.
    pub body: Vec<u8>,
    pub attempts: Vec<Attempt>,
    pub outcome: BatchOutcome,
}

/// Everything the sink did, in order.
#[derive(Debug, Clone, Default)]
pub struct SinkReport {
    pub batches: Vec<BatchReport>,
}

impl SinkReport {
    /// Events in batches answered with 2xx.
    pub fn delivered_events(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.outcome == BatchOutcome::Delivered)
            .map(|b| b.events.len())
            .sum()
    }

    /// Events in batches dropped on a non-retryable status.
    pub fn dropped_events(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.outcome != BatchOutcome::Delivered)
            .map(|b| b.events.len())
            .sum()
    }

    /// Number of HTTP attempts that got a response or failed in transport.
    pub fn attempts(&self) -> usize {
        self.batches.iter().map(|b| b.attempts.len()).sum()
    }
}

/// A running sink: events go in with [`HttpSink::send`], [`HttpSink::finish`] flushes
/// the last batch, waits until every batch is acknowledged or dropped, and reports.
pub struct HttpSink {
    tx: mpsc::Sender<Value>,
    task: JoinHandle<SinkReport>,
}

/// The sink task has stopped (it only stops after [`HttpSink::finish`]).
#[derive(Debug, Error)]
#[error("the http sink task has stopped")]
pub struct SinkClosed;

/// Events that may wait while a batch is retried before `send` blocks.
const QUEUE_CAPACITY: usize = 50_000;

impl HttpSink {
    pub fn start(config: HttpSinkConfig) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(config, rx));
        HttpSink { tx, task }
    }

    /// Queues one event; waits while the queue is full.
    pub async fn send(&self, event: Value) -> Result<(), SinkClosed> {
        self.tx.send(event).await.map_err(|_| SinkClosed)
    }

    /// Flushes, waits for every batch to finish, and returns what happened.
    pub async fn finish(self) -> SinkReport {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

async fn run(config: HttpSinkConfig, mut rx: mpsc::Receiver<Value>) -> SinkReport {
    let mut report = SinkReport::default();
    let mut batch: Vec<Value> = Vec::new();
    let mut encoded: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    let mut rng = Jitter::new();
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = rx.recv() => match next {
                Some(event) => {
                    let bytes = encode_event(&event);
                    if !batch.is_empty() && batch_bytes + bytes.len() > config.max_bytes {
                        flush(&config, &mut batch, &mut encoded, &mut report, &mut rng).await;
                        batch_bytes = 0;
                        deadline = None;
                    }
                    batch_bytes += bytes.len();
                    batch.push(event);
                    encoded.push(bytes);
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + config.batch_timeout);
                    }
                    if batch.len() >= config.max_events || batch_bytes >= config.max_bytes {
                        flush(&config, &mut batch, &mut encoded, &mut report, &mut rng).await;
                        batch_bytes = 0;
                        deadline = None;
                    }
                }
                None => {
                    flush(&config, &mut batch, &mut encoded, &mut report, &mut rng).await;
                    return report;
                }
            },
            _ = timer => {
                flush(&config, &mut batch, &mut encoded, &mut report, &mut rng).await;
                batch_bytes = 0;
                deadline = None;
            }
        }
    }
}

async fn flush(
    config: &HttpSinkConfig,
    batch: &mut Vec<Value>,
    encoded: &mut Vec<Vec<u8>>,
    report: &mut SinkReport,
    rng: &mut Jitter,
) {
    if batch.is_empty() {
        return;
    }
    let events = std::mem::take(batch);
    let (body, content_type) = frame(encoded, config.framing);
    encoded.clear();
    let body = compress(body, config.compression);
    let (attempts, outcome) = deliver(config, &body, content_type, rng).await;
    report.batches.push(BatchReport {
        events,
        body,
        attempts,
        outcome,
    });
}

/// Sends one body until it is acknowledged or dropped.
pub async fn deliver(
    config: &HttpSinkConfig,
    body: &[u8],
    content_type: &str,
    rng: &mut Jitter,
) -> (Vec<Attempt>, BatchOutcome) {
    let mut attempts = Vec::new();
    let mut backoff = Fibonacci::new(config.retry_initial_backoff, config.retry_max_duration);
    loop {
        let result = tokio::time::timeout(
            config.request_timeout,
            post(&config.uri, body, content_type, config.compression),
        )
        .await;
        let attempt = match result {
            Ok(Ok(status)) => Attempt::Status(status),
            Ok(Err(e)) => Attempt::Transport(e),
            Err(_) => Attempt::Transport("request timed out".into()),
        };
        let action = match &attempt {
            Attempt::Status(s) => retry_action(*s),
            Attempt::Transport(_) => RetryAction::Retry,
        };
        attempts.push(attempt.clone());
        match action {
            RetryAction::Successful => return (attempts, BatchOutcome::Delivered),
            RetryAction::DontRetry => {
                let status = match attempt {
                    Attempt::Status(s) => s,
                    Attempt::Transport(_) => 0,
                };
                return (attempts, BatchOutcome::Dropped { status });
            }
            RetryAction::Retry => {
                let delay = backoff.next_delay();
                let delay = match config.jitter {
                    JitterMode::None => delay,
                    JitterMode::Full => rng.up_to(delay),
                };
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One POST over a fresh HTTP/1.1 connection, with exactly the headers Vector sends.
async fn post(
    uri: &str,
    body: &[u8],
    content_type: &str,
    compression: Compression,
) -> Result<u16, String> {
    let uri: hyper::Uri = uri.parse().map_err(|e| format!("bad uri {uri}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("uri {uri} has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| format!("{host}:{port}"));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let mut req = Request::post(path).header("content-type", content_type);
    if compression == Compression::Gzip {
        req = req.header("content-encoding", "gzip");
    }
    let req = req
        .header("accept-encoding", ACCEPT_ENCODING)
        .header("user-agent", USER_AGENT)
        .header("host", authority)
        .header("content-length", body.len())
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    // Read the answer to the end so the connection closes cleanly.
    let _ = resp.into_body().collect().await;
    conn_task.abort();
    Ok(status)
}

/// Fibonacci backoff: `initial`, `initial`, 2×, 3×, 5× … capped at `max`.
#[derive(Debug, Clone)]
pub struct Fibonacci {
    current: Duration,
    next: Duration,
    max: Duration,
}

impl Fibonacci {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Fibonacci {
            current: initial,
            next: initial,
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current.min(self.max);
        let sum = self.current.saturating_add(self.next);
        self.current = self.next;
        self.next = sum;
        delay
    }
}

/// A small random source for full jitter (no cryptographic quality needed).
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Jitter(h.finish() | 1)
    }

    /// A uniformly random duration in `[0, max]`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = max.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { self.0 % (nanos + 1) })
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_matches_vector_default_strategy() {
        for s in [200, 201, 204, 299] {
            assert_eq!(retry_action(s), RetryAction::Successful, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(retry_action(s), RetryAction::Retry, "{s}");
        }
        for s in [301, 400, 401, 403, 404, 409, 413, 422, 501] {
            assert_eq!(retry_action(s), RetryAction::DontRetry, "{s}");
        }
    }

    #[test]
    fn fibonacci_backoff_is_capped() {
        let mut b = Fibonacci::new(Duration::from_secs(1), Duration::from_secs(4));
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 1, 2, 3, 4, 4, 4]);
    }

    #[test]
    fn ndjson_has_no_trailing_newline_and_arrays_are_bracketed() {
        let e = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
        assert_eq!(
            frame(&e, Framing::NewlineDelimited).0,
            b"{\"a\":1}\n{\"b\":2}"
        );
        assert_eq!(frame(&e, Framing::JsonArray).0, b"[{\"a\":1},{\"b\":2}]");
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            assert!(j.up_to(Duration::from_millis(10)) <= Duration::from_millis(10));
        }
    }
}
