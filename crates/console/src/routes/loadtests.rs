//! The load tests page's endpoints: the collector service's reads (the same as
//! `/loadtests`, with the session's tenant), polled by the page once a second while a
//! job runs, and forgetting a job.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ConsoleState, Csrf, SignedIn};
use crate::ConsoleError;

type JsonResult = Result<Json<Value>, ConsoleError>;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/api/loadtests", get(list))
        .route("/console/api/loadtests/{job}", get(one).delete(remove))
}

/// `{"jobs": [{name, first_second, last_second, updated_ms, totals}]}`, newest first.
async fn list(State(s): State<ConsoleState>, me: SignedIn) -> JsonResult {
    Ok(Json(json!({"jobs": s.app.collector.jobs(&me.session.tenant).await?})))
}

/// `{"job": {…, totals}, "seconds": [{second, count, errors, p50_ms, p90_ms, p99_ms, max_ms}]}`
/// from `?since=` (Unix seconds) on.
async fn one(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(job): Path<String>,
    RawQuery(q): RawQuery,
) -> JsonResult {
    let since = match q.as_deref().and_then(|q| q.strip_prefix("since=")) {
        None => 0,
        Some(v) => v.parse().map_err(|_| ConsoleError::BadRequest("since must be a Unix time in seconds".into()))?,
    };
    let (view, seconds) = s.app.collector.job(&me.session.tenant, &job, since).await?;
    Ok(Json(json!({"job": view, "seconds": seconds})))
}

async fn remove(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(job): Path<String>) -> JsonResult {
    s.app.collector.delete(&me.session.tenant, &job).await?;
    Ok(Json(json!({"removed": job})))
}
