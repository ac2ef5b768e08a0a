//! End-to-end delivery of one monitor: events received versus the highest
//! `seq` it numbered. Monitors belong to the tenant of their events; this
//! route is for admins (a monitor is not tied to one user's records).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, ApiState, NoParams};
use crate::audit;
use crate::store::StoreExt;

/// Answer of `GET /api/v5/monitors/{monitor_id}/delivery`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub monitor_id: String,
    /// Distinct events stored.
    pub received: i64,
    /// Highest `seq` stored.
    pub highest_seq: u64,
    /// `highest_seq - received`: events not (yet) stored.
    pub missing: i64,
    /// `received / highest_seq` (1 when nothing was numbered yet).
    pub ratio: f64,
}

/// `GET /api/v5/monitors/{monitor_id}/delivery`.
pub async fn delivery(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    monitor_id: Result<Path<String>, PathRejection>,
    params: Result<Query<NoParams>, QueryRejection>,
) -> Result<Json<Delivery>, ApiError> {
    let Path(monitor_id) = monitor_id?;
    if !crate::record::valid_id(&monitor_id) {
        return Err(ApiError::bad_request(
            "the monitor id in the path is not a valid id (1-128 characters of A-Z a-z 0-9 . _ : @ -)",
        ));
    }
    params?;
    if !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "delivery counters need role `admin`".into(),
        ));
    }
    let id = monitor_id.clone();
    let row = state
        .blocking(move |store, keys| Ok(store.read(|txn| audit::monitor(txn, keys, &id))?))
        .await?;
    let row = row
        .filter(|r| r.tenant == caller.tenant)
        .ok_or_else(|| ApiError::NotFound(format!("monitor {monitor_id:?} not found")))?;
    let ratio = if row.max_seq == 0 {
        1.0
    } else {
        row.received as f64 / row.max_seq as f64
    };
    Ok(Json(Delivery {
        missing: row.missing(),
        monitor_id: row.monitor_id,
        received: row.received,
        highest_seq: row.max_seq,
        ratio,
    }))
}
