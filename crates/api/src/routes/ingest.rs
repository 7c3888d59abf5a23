//! The HTTP device agent: `POST /http-agent/v1/incoming-messages` (dojot's http-agent
//! shape `{"ts"?, "data": {…}}`), authenticated with the device's credentials.
//!
//! The device is authenticated before a byte of the body is read, and the body is then
//! read only up to the device payload limit (`--max-payload-bytes`, as over MQTT): an
//! unknown caller cannot make the server buffer anything.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use ingest::{DeviceLogin, IngestError};
use serde_json::Value;

use crate::extract::{DeviceCredentials, is_json, read_limited};
use crate::{ApiError, AppState};

/// Answers 204 once the reading is durably stored.
pub async fn incoming_message(
    State(s): State<AppState>,
    creds: DeviceCredentials,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let login = DeviceLogin {
        username: Some(&creds.identity),
        password: Some(creds.secret.as_bytes()),
        client_id: "",
        certificate: None,
    };
    let device = s.ingest.authenticate(login).await.inspect_err(|e| {
        tracing::info!(identity = %creds.identity, reason = e.reason(), "HTTP device refused");
        metrics::counter!("ingot_http_devices_refused_total", "reason" => e.reason()).increment(1);
    })?;
    if !is_json(req.headers()) {
        return Err(ApiError::BadJson);
    }
    let max = s.ingest.max_payload();
    let bytes = read_limited(req, max).await.map_err(|_| {
        s.ingest.count_rejected("http", &device.tenant, "too_large");
        IngestError::TooLarge(max)
    })?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::BadJson)?;
    let attrs = model::data::http_agent_attrs(body).map_err(IngestError::from)?;
    s.ingest.ingest_attrs("http", &device, attrs).await?;
    Ok(StatusCode::NO_CONTENT)
}
