//! `/health` and `/metrics` (Prometheus exposition).

use auth::BOOTSTRAP_TENANT;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::extract::bearer_token;
use crate::{ApiError, AppState};

/// `GET /health`: 200 `{"status":"ok"}`, or 503 `{"status":"unavailable","reasons":[…]}`
/// when the database does not answer, the message bus (NATS) is out of reach, or a
/// durable consumer (the history writer) is not running — then devices are refused,
/// never acknowledged. The reasons are short and
/// fixed; details go to the log, not to unauthenticated callers.
pub async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    // A trivial read proves the database answers.
    if let Err(e) = s.history.check_store().await {
        tracing::warn!(error = %e, "health: the database does not answer");
        reasons.push("database unavailable".to_string());
    }
    if s.ingest.bus().unreachable() {
        reasons.push("message bus unavailable".to_string());
    }
    for group in s.ingest.bus().dead_groups() {
        reasons.push(format!("consumer {group} is not running"));
    }
    if reasons.is_empty() {
        (axum::http::StatusCode::OK, axum::Json(json!({"status": "ok"})))
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "unavailable", "reasons": reasons})))
    }
}

/// Liveness: answers without touching anything (also the "bare handler" benchmarks
/// compare `POST /metrics` with).
pub async fn ping() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /metrics`: Prometheus exposition. Its labels name every tenant, so only
/// operators may read it: an admin of the bootstrap tenant (JWT) or a `prometheus`-scoped
/// API token of that tenant (what a scraper is given).
pub async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let token = bearer_token(&headers).ok_or_else(|| {
        ApiError::Unauthorized("a bearer token (operator JWT or prometheus token) is required".into())
    })?;
    let operator = match s.auth.verify_api_token(token, "prometheus").await? {
        Some(p) => p.tenant == BOOTSTRAP_TENANT,
        None => {
            let claims = s.auth.verify_token(token)?;
            claims.is_admin() && claims.service == BOOTSTRAP_TENANT
        }
    };
    if !operator {
        return Err(auth::AuthError::Forbidden("metrics cover every tenant: operators only".into()).into());
    }
    let body = s.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
