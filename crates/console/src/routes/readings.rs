//! A device's readings for the console: latest values, a time range for the charts, the
//! CSV history report (all through the history service: bounded answers), and live
//! readings as Server-Sent Events from the node's real-time hub; only for devices of the
//! session's tenant's catalog.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use history::RangeQuery;
use realtime::{Filter, Request, Topic};
use serde_json::{Value, json};

use super::{ConsoleState, Pairs, SignedIn};
use crate::{ConsoleError, report};

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/api/devices/{id}/latest", get(latest))
        .route("/console/api/devices/{id}/history", get(range))
        .route("/console/api/devices/{id}/report.csv", get(report_csv))
        .route("/console/api/devices/{id}/stream", get(stream))
}

/// The device's labels for a query that names none, or 404 if the tenant has no such
/// device (a deleted device's readings awaiting retention included).
async fn device_labels(s: &ConsoleState, tenant: &str, id: &str) -> Result<Vec<String>, ConsoleError> {
    if !s.app.devices.device_exists(tenant, id).await {
        return Err(ConsoleError::NotFound(format!("No such device: {id}")));
    }
    Ok(s.app.devices.data_attr_labels(tenant, id).await?)
}

/// The newest value of each attribute, as history shows them.
async fn latest(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>, ConsoleError> {
    device_labels(&s, &me.session.tenant, &id).await?;
    Ok(Json(s.app.history.latest(&me.session.tenant, &id).await?))
}

/// `?attr=…&from=…&to=…&limit=…` (see [`RangeQuery`]): `{"points": [{"attr", "ts" (ms),
/// "value"}], "truncated"}`, oldest first; `truncated` when older readings of the range
/// were left out.
async fn range(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(id): Path<String>,
    q: Pairs,
) -> Result<Json<Value>, ConsoleError> {
    let tenant = &me.session.tenant;
    let labels = device_labels(&s, tenant, &id).await?;
    let found = s.app.history.range(tenant, &id, &RangeQuery::from_pairs(&q.0)?, labels).await?;
    let points: Vec<Value> =
        found.points.into_iter().map(|p| json!({"attr": p.attr, "ts": p.ts_ms, "value": p.value})).collect();
    Ok(Json(json!({"points": points, "truncated": found.truncated})))
}

/// The history report (dojot GUI, chapter 9.6): `?attr=…&from=…&to=…` as CSV, a file to
/// save. A report is complete or refused: a range holding more readings than one answer
/// may is a 400 asking for a shorter one, never a file silently missing rows.
async fn report_csv(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(id): Path<String>,
    q: Pairs,
) -> Result<Response, ConsoleError> {
    let tenant = &me.session.tenant;
    let labels = device_labels(&s, tenant, &id).await?;
    let mut query = RangeQuery::from_pairs(&q.0)?;
    query.limit = None;
    let found = s.app.history.range(tenant, &id, &query, labels).await?;
    if found.truncated {
        return Err(ConsoleError::BadRequest(format!(
            "this range holds more readings than one report may ({} over all its attributes, shared equally); \
             choose a shorter range or fewer attributes",
            s.app.history.max_points()
        )));
    }
    let disposition = format!("attachment; filename=\"{}\"", report::file_name(&id));
    let mut resp = report::csv(&found.points).into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    let disposition = HeaderValue::from_str(&disposition).expect("the file name is letters, digits, '-' and '_'");
    headers.insert(CONTENT_DISPOSITION, disposition);
    Ok(resp)
}

/// The device's readings as they arrive, as Server-Sent Events (`realtime::sse`: `event:
/// device-data` with dojot's device-data JSON, `gap` when some were missed, `close` when
/// the server ends it). The browser's `Last-Event-ID` on reconnecting resumes after the
/// last reading it saw. The stream ends with the session (see `routes::while_signed_in`).
async fn stream(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    device_labels(&s, &me.session.tenant, &id).await?;
    let request = Request {
        tenant: me.session.tenant.clone(),
        user_id: me.session.user_id,
        topic: Topic::DeviceData,
        device: Some(id),
        filter: Filter::default(),
        resume: headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    let stream = s.app.realtime.subscribe(request)?;
    let events = realtime::sse::response(stream, "device-data", s.app.config.stream_max_life);
    Ok(super::while_signed_in(&s, me, events.into_response()))
}
