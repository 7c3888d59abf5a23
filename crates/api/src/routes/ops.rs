//! `/health` and `/metrics` (Prometheus exposition).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::AppState;

pub async fn health(State(s): State<AppState>) -> impl IntoResponse {
    // A trivial read proves the database answers.
    match s.store.tenants().await {
        Ok(_) => (axum::http::StatusCode::OK, axum::Json(json!({"status": "ok"}))),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "error": e.to_string()})),
        ),
    }
}

/// Liveness: answers without touching anything (also the "bare handler" benchmarks
/// compare `POST /metrics` with).
pub async fn ping() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok"}))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
