//! The sink's Prometheus metrics (names are fixed: dashboards and alerts use
//! them). Labels have bounded values: dead-letter reason codes, batch
//! outcomes, HTTP status codes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::StoreMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// An API response: the route's path template (as in docs/openapi.yaml, or
/// `unmatched`) and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub route: String,
    pub code: u16,
}

/// Batch outcomes (`fdb_sink_batches_total{outcome}`).
pub mod outcome {
    /// Every line committed (records or dead letters).
    pub const COMMITTED: &str = "committed";
    /// The store failed; nothing acknowledged, the client retries.
    pub const STORE_ERROR: &str = "store_error";
    /// Refused before reading: too many batches in flight.
    pub const SATURATED: &str = "saturated";
    /// Refused or unreadable: no valid token, too large, bad compression,
    /// timeout.
    pub const REJECTED: &str = "rejected";
}

/// Every metric the sink exports.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub events_received: Counter,
    pub events_written: Counter,
    pub events_duplicate: Counter,
    pub events_late: Counter,
    pub dead_letter: Family<ReasonLabel, Counter>,
    pub dead_letter_duplicate: Counter,
    pub batches: Family<OutcomeLabel, Counter>,
    pub commit_latency: Histogram,
    pub store_errors: Counter,
    pub inflight_batches: Gauge,
    pub http_requests: Family<CodeLabel, Counter>,
    pub delivery_missing_events: Gauge,
    pub store_up: Gauge,
    pub api_requests: Family<ApiLabel, Counter>,
    pub api_streams_open: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them (and the store's retry
    /// counter) in `registry`.
    pub fn register(registry: &mut Registry, store: &StoreMetrics) -> Self {
        let m = Metrics {
            events_received: Counter::default(),
            events_written: Counter::default(),
            events_duplicate: Counter::default(),
            events_late: Counter::default(),
            dead_letter: Family::default(),
            dead_letter_duplicate: Counter::default(),
            batches: Family::default(),
            // 0.5 ms … ~16 s
            commit_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            store_errors: Counter::default(),
            inflight_batches: Gauge::default(),
            http_requests: Family::default(),
            delivery_missing_events: Gauge::default(),
            store_up: Gauge::default(),
            api_requests: Family::default(),
            api_streams_open: Gauge::default(),
        };
        // Every reason and outcome is exported from the start (at 0), so
        // that `increase()` sees the first one after a restart.
        for reason in crate::record::reason::ALL {
            let _ = m.dead_letter.get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            });
        }
        for outcome in [
            outcome::COMMITTED,
            outcome::STORE_ERROR,
            outcome::SATURATED,
            outcome::REJECTED,
        ] {
            let _ = m.batches.get_or_create(&OutcomeLabel { outcome });
        }
        let r = registry;
        r.register(
            "fdb_sink_events_received",
            "Lines received (records and dead letters)",
            m.events_received.clone(),
        );
        r.register(
            "fdb_sink_events_written",
            "Audit records newly stored",
            m.events_written.clone(),
        );
        r.register(
            "fdb_sink_events_duplicate",
            "Audit records received again and not stored twice",
            m.events_duplicate.clone(),
        );
        r.register(
            "fdb_sink_events_late",
            "Audit records received more than --late-after past the end of their UTC day: \
             the daily export of that day may have run without them",
            m.events_late.clone(),
        );
        r.register(
            "fdb_sink_dead_letter",
            "Lines stored in dead-letter, by reason",
            m.dead_letter.clone(),
        );
        r.register(
            "fdb_sink_dead_letter_duplicate",
            "Dead-lettered lines received again (redelivery) and not stored twice",
            m.dead_letter_duplicate.clone(),
        );
        r.register(
            "fdb_sink_batches",
            "Ingest batches by outcome",
            m.batches.clone(),
        );
        r.register(
            "fdb_sink_commit_latency_seconds",
            "Time to validate and durably commit one batch",
            m.commit_latency.clone(),
        );
        r.register(
            "fdb_sink_transaction_retries",
            "Store transactions retried after a retryable error",
            store.retries.clone(),
        );
        r.register(
            "fdb_sink_store_errors",
            "Store operations that failed (the batch was answered 503)",
            m.store_errors.clone(),
        );
        r.register(
            "fdb_sink_inflight_batches",
            "Batches being validated or committed now",
            m.inflight_batches.clone(),
        );
        r.register(
            "fdb_sink_http_requests",
            "Ingest HTTP responses by status code",
            m.http_requests.clone(),
        );
        r.register(
            "fdb_sink_delivery_missing_events",
            "Sum over monitors of highest seq minus events received (refreshed periodically)",
            m.delivery_missing_events.clone(),
        );
        r.register(
            "fdb_sink_store_up",
            "1 when the store answered the last check, else 0",
            m.store_up.clone(),
        );
        r.register(
            "fdb_sink_api_requests",
            "API responses by route (path template, or unmatched) and status code",
            m.api_requests.clone(),
        );
        r.register(
            "fdb_sink_api_streams_open",
            "follow=true event streams open now",
            m.api_streams_open.clone(),
        );
        m
    }

    /// A metrics set registered nowhere (for tools and tests).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default(), &StoreMetrics::default())
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letter
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts `n` lines dead-lettered for `reason`.
    pub fn dead_lettered_by(&self, reason: &str, n: u64) {
        self.dead_letter
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    pub fn batch(&self, outcome: &'static str) {
        self.batches.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn http(&self, code: u16) {
        self.http_requests.get_or_create(&CodeLabel { code }).inc();
    }

    pub fn api(&self, route: &str, code: u16) {
        self.api_requests
            .get_or_create(&ApiLabel {
                route: route.to_owned(),
                code,
            })
            .inc();
    }
}

/// Content type of [`to_text_0_0_4`]'s output.
pub const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition (what
/// `prometheus_client` writes), for scrapers that do not ask for
/// OpenMetrics. The samples are the same; a counter's `# HELP`/`# TYPE`
/// lines name it with its `_total` suffix, as its samples are named (a
/// parser that groups samples under their `# TYPE` line, such as Vector's
/// `prometheus_scrape`, would otherwise take the counters for untyped
/// metrics), and the `# UNIT` and `# EOF` lines, which 0.0.4 lacks, go.
pub fn to_text_0_0_4(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) && !name.ends_with("_total") {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_0_0_4_names_counter_families_as_their_samples() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg, &StoreMetrics::default());
        m.events_received.inc();
        m.commit_latency.observe(0.01);
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &reg).expect("encode");
        let text = to_text_0_0_4(&om);
        assert!(
            om.contains("# TYPE fdb_sink_events_received counter\n"),
            "{om}"
        );
        assert!(
            text.contains("# TYPE fdb_sink_events_received_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP fdb_sink_events_received_total Lines received"));
        assert!(text.contains("\nfdb_sink_events_received_total 1\n"));
        assert!(text.contains("# TYPE fdb_sink_commit_latency_seconds histogram\n"));
        assert!(text.contains("# TYPE fdb_sink_store_up gauge\n"));
        assert!(!text.contains("# EOF"));
        // Every sample line is kept as it was.
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&om), samples(&text));
    }

    #[test]
    fn exports_the_fixed_names() {
        let mut reg = Registry::default();
        let store = StoreMetrics::default();
        let m = Metrics::register(&mut reg, &store);
        m.dead_lettered("invalid_json");
        m.batch(outcome::COMMITTED);
        m.http(200);
        m.api("/api/v5/agents", 200);
        m.commit_latency.observe(0.01);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        for name in [
            "fdb_sink_events_received_total",
            "fdb_sink_events_written_total",
            "fdb_sink_events_duplicate_total",
            "fdb_sink_dead_letter_total{reason=\"invalid_json\"}",
            "fdb_sink_batches_total{outcome=\"committed\"}",
            "fdb_sink_commit_latency_seconds_bucket",
            "fdb_sink_transaction_retries_total",
            "fdb_sink_store_errors_total",
            "fdb_sink_inflight_batches",
            "fdb_sink_http_requests_total{code=\"200\"}",
            "fdb_sink_delivery_missing_events",
            "fdb_sink_store_up",
            "fdb_sink_api_requests_total{route=\"/api/v5/agents\",code=\"200\"}",
            "fdb_sink_api_streams_open",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
