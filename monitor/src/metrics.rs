//! Prometheus metrics (names are a contract: dashboards and alerts use them)
//! and the HTTP listener serving `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use file_event::EventType;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Reasons for `fs_monitor_events_dropped_total`.
pub const DROP_KERNEL_OVERFLOW: &str = "kernel_queue_overflow";
pub const DROP_UNREADABLE_DIR: &str = "unreadable_dir";

#[derive(Clone)]
pub struct Metrics {
    pub published: Family<TypeLabel, Counter>,
    /// The `published` counters, one per event type, in `EventType::ALL` order.
    by_type: Vec<Counter>,
    pub dropped: Family<ReasonLabel, Counter>,
    pub coalesced: Counter,
    pub rescans: Counter,
    pub watches: Gauge,
    pub watch_limit_reached: Counter,
    pub polled_subtrees: Gauge,
    pub queue_depth: Gauge,
    pub checksum_bytes: Counter,
    pub latency: Histogram,
    pub state_save_failures: Counter,
    pub state_load_failures: Counter,
    pub mount_changes: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them (counters get `_total`).
    pub fn register(reg: &mut Registry) -> Metrics {
        let buckets = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ];
        let mut m = Metrics {
            by_type: Vec::new(),
            published: Family::default(),
            dropped: Family::default(),
            coalesced: Counter::default(),
            rescans: Counter::default(),
            watches: Gauge::default(),
            watch_limit_reached: Counter::default(),
            polled_subtrees: Gauge::default(),
            queue_depth: Gauge::default(),
            checksum_bytes: Counter::default(),
            latency: Histogram::new(buckets),
            state_save_failures: Counter::default(),
            state_load_failures: Counter::default(),
            mount_changes: Counter::default(),
        };
        for t in EventType::ALL {
            let c = m
                .published
                .get_or_create(&TypeLabel {
                    event_type: t.as_str().to_owned(),
                })
                .clone();
            m.by_type.push(c);
        }
        for r in [DROP_KERNEL_OVERFLOW, DROP_UNREADABLE_DIR] {
            let _ = m.dropped.get_or_create(&ReasonLabel {
                reason: r.to_owned(),
            });
        }
        reg.register(
            "fs_monitor_events_published",
            "Events written to the stream, by type",
            m.published.clone(),
        );
        reg.register(
            "fs_monitor_events_dropped",
            "Events known to be lost, by reason (kernel_queue_overflow: at least one kernel event lost, state repaired by a rescan; unreadable_dir: a directory that cannot be read or watched)",
            m.dropped.clone(),
        );
        reg.register(
            "fs_monitor_events_coalesced",
            "Writes merged into an earlier update (debounce or rate limit)",
            m.coalesced.clone(),
        );
        reg.register(
            "fs_monitor_rescans",
            "Rescans of the tree after lost kernel events",
            m.rescans.clone(),
        );
        reg.register(
            "fs_monitor_watches",
            "inotify watches held",
            m.watches.clone(),
        );
        reg.register(
            "fs_monitor_watch_limit_reached",
            "Times a watch could not be placed because the inotify watch budget ran out",
            m.watch_limit_reached.clone(),
        );
        reg.register(
            "fs_monitor_polled_subtrees",
            "Subtrees polled instead of watched",
            m.polled_subtrees.clone(),
        );
        reg.register(
            "fs_monitor_queue_depth",
            "Events waiting to be written (debounce and rate limit)",
            m.queue_depth.clone(),
        );
        reg.register(
            "fs_monitor_checksum_bytes",
            "Bytes read to compute checksums",
            m.checksum_bytes.clone(),
        );
        reg.register(
            "fs_monitor_processing_latency_seconds",
            "Time from receiving the kernel event to writing its line, not counting the time it is held on purpose (--debounce, waiting for the writer to close, --max-events-per-sec, behind events held before it)",
            m.latency.clone(),
        );
        reg.register(
            "fs_monitor_state_save_failures",
            "Failed writes of the --state-file or of its journal (a crash then re-reports or loses changes since the last good write)",
            m.state_save_failures.clone(),
        );
        reg.register(
            "fs_monitor_state_load_failures",
            "Unusable --state-file found at start (kept aside as <state-file>.unusable-<seconds>; changes made while stopped were not reported)",
            m.state_load_failures.clone(),
        );
        reg.register(
            "fs_monitor_mount_changes",
            "File systems mounted or unmounted below the root after start (each one rescanned and watched again)",
            m.mount_changes.clone(),
        );
        m
    }

    pub fn published(&self, t: EventType) {
        if let Some(i) = EventType::ALL.iter().position(|x| *x == t) {
            if let Some(c) = self.by_type.get(i) {
                c.inc();
            }
        }
    }

    pub fn dropped(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Serves the registry until the runtime stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                let ready = ready.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &registry, &ready)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

fn route(
    req: &Request<hyper::body::Incoming>,
    registry: &Registry,
    ready: &AtomicBool,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let mut buf = String::new();
            match prometheus_client::encoding::text::encode(&mut buf, registry) {
                Ok(()) => text(
                    StatusCode::OK,
                    buf,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding failed\n",
                    "text/plain",
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => {
            if ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "initial watch not in place yet\n",
                    "text/plain",
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz\n",
            "text/plain",
        ),
    }
}

/// Binds the listener before anything else starts, so a taken port fails fast.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
