//! `/history/device/{id}/history` and the latest-values endpoint.

use axum::Json;
use axum::extract::{Path, State};
use history::{HistoryParams, HistoryResult};
use serde_json::Value;

use crate::extract::{Caller, QueryPairs};
use crate::{ApiError, AppState};

const DEVICE_NOT_FOUND: ApiError =
    ApiError::HistoryNotFound("Device not found", "No data for the given device could be found");

/// dojot's history query; see `history::query` for the parameters.
pub async fn history(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let params = HistoryParams::from_pairs(&q.0)?;
    let known = has_history(&s, &c.service, &id).await?;
    let labels = if known { s.devices.data_attr_labels(&c.service, &id).await? } else { vec![] };
    match s.history.device_history(&c.service, &id, &params, labels).await? {
        HistoryResult::Single(v) | HistoryResult::Many(v) => Ok(Json(v)),
        HistoryResult::AttrNotFound => {
            Err(ApiError::HistoryNotFound("Attr not found", "No data for the given attribute could be found"))
        }
    }
}

/// `GET /history/device/{id}/latest` (also `/device/{id}/latest`): newest value per attribute.
pub async fn latest(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    has_history(&s, &c.service, &id).await?;
    Ok(Json(s.history.latest(&c.service, &id).await?))
}

/// Whether `id` may have history: a device of the catalog (`Ok(true)`), or a seat
/// account's login device (`Ok(false)`). Anything else — a deleted device included —
/// is dojot's 404, whatever readings of it are still waiting for retention.
async fn has_history(s: &AppState, tenant: &str, id: &str) -> Result<bool, ApiError> {
    if s.devices.device_exists(tenant, id).await {
        Ok(true)
    } else if model::seats::is_account_device_id(id) {
        Ok(false)
    } else {
        Err(DEVICE_NOT_FOUND)
    }
}
