//! Ingot as a collector of load-test results (the `load` crate's `collector` holds the
//! rules): agents push go-lo Outputs, the console and the API read them back.
//!
//! - `POST /push/{job}`: a JSON array of Outputs → 200 `{"taken": n}`, with
//!   `Authorization: Bearer` a platform token, or an API token with the `loadtests` scope
//!   (`POST /auth/tokens`, long-lived: a load test may outlast a platform token).
//! - `POST /collect/{token}/push/{job}`: the same with the API token in the path, for
//!   go-lo's agent, which sends no header (its `--collector` is
//!   `http://<ingot>/collect/<token>`). The request log never shows that path's token.
//! - `GET /loadtests`, `GET /loadtests/{job}?since=<unix s>`, `DELETE /loadtests/{job}`:
//!   the caller's tenant's jobs, a job's totals and seconds, forgetting one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, QueryPairs, bearer_token};
use crate::{ApiError, AppState};

/// The API-token scope that may push results.
pub const SCOPE: &str = "loadtests";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/push/{job}", post(push))
        .route("/collect/{token}/push/{job}", post(push_with_token_in_path))
        .route("/loadtests", get(list))
        .route("/loadtests/{job}", get(job).delete(delete))
}

/// The tenant a pusher's token speaks for: a platform token's, or an API token's with
/// the `loadtests` scope.
async fn pusher(s: &AppState, token: Option<&str>) -> Result<String, ApiError> {
    let refused = || {
        ApiError::Unauthorized(format!(
            "pushing results needs a platform token or an API token with the {SCOPE:?} scope \
             (Authorization: Bearer <token>, or POST /collect/<API token>/push/<job>)"
        ))
    };
    let token = token.ok_or_else(refused)?;
    if let Ok(claims) = s.auth.verify_token(token) {
        return Ok(claims.service);
    }
    Ok(s.auth.verify_api_token(token, SCOPE).await?.ok_or_else(refused)?.tenant)
}

async fn push(
    State(s): State<AppState>,
    Path(job): Path<String>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let tenant = pusher(&s, bearer_token(&headers)).await?;
    Ok(Json(json!({"taken": s.collector.push(&tenant, &job, &body).await?})))
}

async fn push_with_token_in_path(
    State(s): State<AppState>,
    Path((token, job)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let tenant = pusher(&s, Some(&token)).await?;
    Ok(Json(json!({"taken": s.collector.push(&tenant, &job, &body).await?})))
}

async fn list(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"jobs": s.collector.jobs(&c.service).await?})))
}

async fn job(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(job): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let since = match q.get("since") {
        None => 0,
        Some(v) => v.parse().map_err(|_| ApiError::BadRequest("since must be a Unix time in seconds".into()))?,
    };
    let (view, seconds) = s.collector.job(&c.service, &job, since).await?;
    Ok(Json(json!({"job": view, "seconds": seconds})))
}

async fn delete(State(s): State<AppState>, Caller(c): Caller, Path(job): Path<String>) -> Result<StatusCode, ApiError> {
    s.collector.delete(&c.service, &job).await?;
    Ok(StatusCode::NO_CONTENT)
}
