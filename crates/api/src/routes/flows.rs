//! dojot's flowbroker API (`/flows/v1/flow`): flows of the caller's tenant. The service
//! (`flows::FlowService`) holds the rules; answers keep dojot's shapes (`{"message":
//! "ok", "flow": F}`, 200 on create as flowbroker answered).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use flows::trace::Entry;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::extract::{Caller, JsonBody};
use crate::{ApiError, AppState};

/// `GET /flows/v1/flow` → `{"flows": [F]}`.
pub async fn list(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.flows.list(&c.service).await?))
}

/// `POST /flows/v1/flow {"name", "enabled"?, "flow"}` → `{"message": "ok", "flow": F}`.
pub async fn create(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let flow = s.flows.create(&c.service, &body).await?;
    Ok(Json(json!({"message": "ok", "flow": flow})))
}

/// `DELETE /flows/v1/flow` → `{"message": "All flows removed"}`.
pub async fn delete_all(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    s.flows.delete_all(&c.service).await?;
    Ok(Json(json!({"message": "All flows removed"})))
}

/// `GET /flows/v1/flow/{id}` → `{"message": "ok", "flow": F}`.
pub async fn get(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"message": "ok", "flow": s.flows.get(&c.service, &id).await?})))
}

/// `PUT /flows/v1/flow/{id}` (any of `name`, `enabled`, `flow`) → `{"message": "ok", "flow": F}`.
pub async fn update(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"message": "ok", "flow": s.flows.update(&c.service, &id, &body).await?})))
}

/// `DELETE /flows/v1/flow/{id}` → `{"message": "flow removed", "flow": F}`.
pub async fn delete(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"message": "flow removed", "flow": s.flows.delete(&c.service, &id).await?})))
}

/// `GET /flows/v1/flow/{id}/trace`: the debugger's last entries per node.
pub async fn trace(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.flows.trace(&c.service, &id).await?))
}

/// `GET /flows/v1/flow/{id}/trace/stream`: the debugger live, as Server-Sent Events
/// (`trace` events; `lagged` says how many a slow reader missed).
pub async fn trace_stream(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    Ok(trace_events(s.flows.trace_feed(&c.service, &id).await?))
}

/// A flow's live trace as Server-Sent Events: each entry a `trace` event, and a `lagged`
/// event with the count when a slow reader missed some. Also the console's.
pub fn trace_events(feed: Receiver<Entry>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = match feed.recv().await {
            Ok(entry) => Event::default().event("trace").json_data(&entry).unwrap_or_else(|_| Event::default()),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), feed))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
