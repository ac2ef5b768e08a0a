//! `follow=true`: the live activity feed as Server-Sent Events.
//!
//! The stream first sends every stored record after the cursor (or from
//! `start`), then polls the store every [`super::FOLLOW_POLL`] for new ones.
//! Each record is one `event: record` whose `id` is its cursor, so a client
//! that reconnects with `Last-Event-ID` resumes exactly after the last record
//! it saw. A store error ends the stream with one `event: error` carrying the
//! usual error body. Comments every 15 s keep idle connections open.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use super::logs::{encode_cursor, page, record_json, Filter, Scope};
use super::{ApiError, ApiState};
use crate::audit::StoredRecord;
use crate::keys::AuditLogKey;
use crate::store::StoreExt;

/// Records fetched per poll.
const FOLLOW_BATCH: usize = 500;

struct Follow {
    state: Arc<ApiState>,
    scope: Scope,
    filter: Filter,
    after: Option<AuditLogKey>,
    buffer: VecDeque<StoredRecord>,
    done: bool,
}

/// The SSE response for a follow query.
pub fn follow(
    state: Arc<ApiState>,
    scope: Scope,
    filter: Filter,
    after: Option<AuditLogKey>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let f = Follow {
        state,
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
                let ev = Event::default()
                    .event("record")
                    .id(encode_cursor(&r.raw_key))
                    .json_data(record_json(&r))
                    .unwrap_or_else(|_| Event::default().event("record"));
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
                    let body = serde_json::json!({"error": e.code(), "message": e.to_string()});
                    let ev = Event::default().event("error").data(body.to_string());
                    return Some((Ok(ev), f));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Reads the next batch; returns the matching records and the key of the
/// last record examined (the new position, even if the filter rejected it).
async fn poll(f: &Follow) -> Result<(Vec<StoredRecord>, Option<AuditLogKey>), ApiError> {
    let scope = f.scope.clone();
    let filter = f.filter.clone();
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
