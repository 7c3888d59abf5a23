//! Ingot as a collector of load-test results (the `load` crate's `collector` holds the
//! rules): agents push go-lo Outputs, the console and the API read them back.
//!
//! - `POST /push/{job}`: a JSON array of Outputs (or one Output, as go-lo's first agents
//!   sent) → 200 `{"taken": n}`. The token is a platform token or an API token with the
//!   `loadtests` scope (`POST /auth/tokens`, long-lived: a load test may outlast a
//!   platform token), as `Authorization: Bearer <token>`, or as the password of
//!   `Authorization: Basic` — what an HTTP client sends for a collector URL with the
//!   token in it, `http://agents:<token>@<ingot>`. That is the form go-lo's agent can
//!   carry: it sends no header of its own, no Content-Type (none is required here), and
//!   replaces the collector URL's path with `/push/<job>`, so a token in the path would
//!   be lost. `?token=<token>` works too (the request log shows paths, never queries).
//! - `GET /loadtests`, `GET /loadtests/{job}?since=<unix s>`, `DELETE /loadtests/{job}`:
//!   the caller's tenant's jobs, a job's totals and seconds, forgetting one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::extract::{Caller, QueryPairs, basic_credentials, bearer_token, read_limited};
use crate::{ApiError, AppState};

/// The API-token scope that may push results.
pub const SCOPE: &str = "loadtests";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/push/{job}", post(push))
        .route("/loadtests", get(list))
        .route("/loadtests/{job}", get(job).delete(delete))
}

/// The token a pusher sent: Bearer, Basic's password, or `?token=`.
fn pusher_token(headers: &axum::http::HeaderMap, q: &QueryPairs) -> Option<String> {
    if let Some(t) = bearer_token(headers) {
        return Some(t.to_string());
    }
    if let Some((_, password)) = basic_credentials(headers) {
        return Some(password);
    }
    q.get("token").map(str::to_string)
}

/// The tenant a pusher's token speaks for: a platform token's, or an API token's with
/// the `loadtests` scope.
async fn pusher(s: &AppState, token: Option<&str>) -> Result<String, ApiError> {
    let refused = || {
        ApiError::Unauthorized(format!(
            "pushing results needs a platform token or an API token with the {SCOPE:?} scope: \
             Authorization: Bearer <token>, or the collector URL http://agents:<token>@host:port"
        ))
    };
    let token = token.filter(|t| !t.is_empty()).ok_or_else(refused)?;
    if let Ok(claims) = s.auth.verify_token(token) {
        return Ok(claims.service);
    }
    Ok(s.auth.verify_api_token(token, SCOPE).await?.ok_or_else(refused)?.tenant)
}

/// `POST /push/{job}`. The body is JSON whatever its Content-Type says, if it says
/// nothing (go-lo's agent sends none); another declared type is refused.
async fn push(
    State(s): State<AppState>,
    Path(job): Path<String>,
    q: QueryPairs,
    req: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let tenant = pusher(&s, pusher_token(req.headers(), &q).as_deref()).await?;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"));
    if declared == Some(false) {
        return Err(ApiError::BadJson);
    }
    let bytes = read_limited(req, s.config.max_body_bytes).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::BadJson)?;
    // go-lo's first agents pushed one Output at a time.
    let body = if body.is_object() { Value::Array(vec![body]) } else { body };
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
