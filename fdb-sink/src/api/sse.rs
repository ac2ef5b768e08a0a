//! `follow=true`: the live activity feed as Server-Sent Events.
//!
//! The stream first sends every stored record after the cursor (or from
//! `start`), then polls the store every [`super::FOLLOW_POLL`] for new ones.
//! It walks the records in event-time order and stays `--api-follow-delay`
//! behind the present: a record is sent once its event time is that old, so
//! one committed after a later-stamped record (another node's batch, a
//! retried request) within that delay is not passed over. One committed
//! later than that, with an event time the stream has passed, is not sent
//! (a query with `start=` finds it).
//! Each record is one `event: record` whose `id` is its cursor, so a client
//! that reconnects with `Last-Event-ID` resumes exactly after the last record
//! it saw. A store error ends the stream with one `event: error` carrying the
//! usual error body. Comments every 15 s keep idle connections open.
//!
//! Each open stream holds a [`StreamSlot`]: a tenant may hold at most
//! `--api-max-streams-per-tenant` and the server `--api-max-streams`; a
//! stream over either limit is refused with 429 before it starts.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use prometheus_client::metrics::gauge::Gauge;

use super::cursor::Sealer;
use super::logs::{cursor_query, page, record_json, Filter, Scope};
use super::{ApiError, ApiState};
use crate::audit::StoredRecord;
use crate::keys::AuditLogKey;
use crate::store::StoreExt;

/// Records fetched per poll.
const FOLLOW_BATCH: usize = 500;

/// Open streams, counted per tenant and in total.
#[derive(Debug)]
pub struct StreamSlots {
    max_total: usize,
    max_per_tenant: usize,
    open: Mutex<OpenStreams>,
    /// `fdb_sink_api_streams_open`: the total, kept in step.
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_tenant: HashMap<String, usize>,
}

impl StreamSlots {
    pub fn new(max_total: usize, max_per_tenant: usize, gauge: Gauge) -> Self {
        StreamSlots {
            max_total,
            max_per_tenant,
            open: Mutex::new(OpenStreams::default()),
            gauge,
        }
    }

    /// A slot for one more stream of `tenant`, or 429 when a limit is reached.
    pub fn acquire(self: &Arc<Self>, tenant: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| ApiError::Internal("stream slots lock poisoned".into()))?;
        let of_tenant = open.per_tenant.get(tenant).copied().unwrap_or(0);
        if of_tenant >= self.max_per_tenant {
            return Err(ApiError::TooManyRequests(format!(
                "this tenant already has {of_tenant} follow=true streams open (the limit); \
                 close one or page with cursors"
            )));
        }
        if open.total >= self.max_total {
            return Err(ApiError::TooManyRequests(
                "the server holds as many follow=true streams as it allows; retry later".into(),
            ));
        }
        open.total += 1;
        self.gauge.set(open.total as i64);
        *open.per_tenant.entry(tenant.to_owned()).or_insert(0) += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

/// One open stream; released when the stream ends or its client goes away.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    tenant: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.open.lock() {
            open.total = open.total.saturating_sub(1);
            self.slots.gauge.set(open.total as i64);
            if let Some(n) = open.per_tenant.get_mut(&self.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.per_tenant.remove(&self.tenant);
                }
            }
        }
    }
}

struct Follow {
    _slot: StreamSlot,
    state: Arc<ApiState>,
    sealer: Arc<Sealer>,
    /// What the records' cursors (event ids) are sealed for.
    query: String,
    scope: Scope,
    filter: Filter,
    after: Option<AuditLogKey>,
    buffer: VecDeque<StoredRecord>,
    done: bool,
}

/// The SSE response for a follow query.
pub fn follow(
    slot: StreamSlot,
    state: Arc<ApiState>,
    sealer: Arc<Sealer>,
    scope: Scope,
    filter: Filter,
    after: Option<AuditLogKey>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let keep_alive = state.keep_alive;
    let f = Follow {
        _slot: slot,
        state,
        sealer,
        query: cursor_query(&scope),
        scope,
        filter,
        after,
        buffer: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(f, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if let Some(r) = f.buffer.pop_front() {
                let ev = match f.sealer.seal(&f.query, &r.raw_key) {
                    Ok(id) => Event::default()
                        .event("record")
                        .id(id)
                        .json_data(record_json(&r))
                        .unwrap_or_else(|_| Event::default().event("record")),
                    Err(e) => {
                        f.done = true;
                        Event::default().event("error").data(e.body().to_string())
                    }
                };
                return Some((Ok(ev), f));
            }
            if *f.state.stop.borrow() {
                return None;
            }
            match poll(&f).await {
                Ok((recs, last)) => {
                    if let Some(last) = last {
                        f.after = Some(last);
                    }
                    if recs.is_empty() {
                        let mut stop = f.state.stop.clone();
                        let wait: Duration = f.state.follow_poll;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.wait_for(|s| *s) => { return None; }
                        }
                    }
                    f.buffer.extend(recs);
                }
                Err(e) => {
                    f.done = true;
                    let ev = Event::default().event("error").data(e.body().to_string());
                    return Some((Ok(ev), f));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive))
}

/// Reads the next batch; returns the matching records and the key of the
/// last record examined (the new position, even if the filter rejected it).
async fn poll(f: &Follow) -> Result<(Vec<StoredRecord>, Option<AuditLogKey>), ApiError> {
    let scope = f.scope.clone();
    let mut filter = f.filter.clone();
    // Records are sent once their event time is the delay old.
    filter.end_ns = filter
        .end_ns
        .min(crate::timespec::ns_ago(f.state.follow_delay));
    let after = f.after.clone();
    f.state
        .blocking(move |store, keys| {
            let p =
                store.read(|txn| page(txn, keys, &scope, &filter, after.as_ref(), FOLLOW_BATCH))?;
            // Continue after the last record examined, even one the filter
            // rejected, so that it is not examined again.
            let (recs, last) = (p.records, p.last_examined);
            Ok((recs, last))
        })
        .await
}
