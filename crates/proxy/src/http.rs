//! HTTP reporting: stats as JSON (or Prometheus text when asked for) and health checks.
//!
//! - `GET /stats`, `GET /metrics`: the stats JSON. Prometheus text instead when the query
//!   has `format=prometheus` or the `Accept` header asks for `text/plain` / OpenMetrics
//!   without also naming JSON (what a Prometheus scraper sends); browsers and curl
//!   (`*/*`) keep getting JSON.
//! - `GET /health`, `/heartbeat`, `/status`: `{"status":"OK!"}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::stats::Stats;

const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/stats", get(stats_handler))
        .route("/metrics", get(stats_handler))
        .route("/health", get(health))
        .route("/heartbeat", get(health))
        .route("/status", get(health))
        .with_state(stats)
}

async fn stats_handler(
    State(stats): State<Arc<Stats>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if wants_prometheus(query.get("format").map(String::as_str), headers.get(header::ACCEPT)) {
        ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], stats.prometheus()).into_response()
    } else {
        json_response(stats.report().to_json())
    }
}

async fn health() -> Response {
    json_response(String::from(r#"{"status":"OK!"}"#))
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn wants_prometheus(format: Option<&str>, accept: Option<&HeaderValue>) -> bool {
    match format {
        Some(format) => format.eq_ignore_ascii_case("prometheus"),
        None => {
            let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
            (accept.contains("text/plain") || accept.contains("application/openmetrics-text"))
                && !accept.contains("application/json")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(value))
    }

    #[test]
    fn content_negotiation() {
        assert!(!wants_prometheus(None, None));
        assert!(!wants_prometheus(None, accept("*/*").as_ref()));
        assert!(!wants_prometheus(None, accept("text/html,application/xhtml+xml,*/*;q=0.8").as_ref()));
        assert!(!wants_prometheus(None, accept("application/json, text/plain, */*").as_ref()));
        assert!(wants_prometheus(None, accept("text/plain").as_ref()));
        assert!(wants_prometheus(
            None,
            accept("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1").as_ref()
        ));
        assert!(wants_prometheus(Some("prometheus"), None));
        assert!(!wants_prometheus(Some("json"), accept("text/plain").as_ref()));
    }
}
