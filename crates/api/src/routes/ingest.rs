//! The HTTP device agent: `POST /http-agent/v1/incoming-messages` (dojot's http-agent
//! shape `{"ts"?, "data": {…}}`), authenticated with the device's credentials.

use axum::extract::State;
use axum::http::StatusCode;
use ingest::DeviceLogin;

use crate::extract::{DeviceCredentials, JsonBody};
use crate::{ApiError, AppState};

/// Answers 204 once the reading is durably stored.
pub async fn incoming_message(
    State(s): State<AppState>,
    creds: DeviceCredentials,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let login = DeviceLogin { username: Some(&creds.identity), password: Some(creds.secret.as_bytes()), client_id: "" };
    let device = s.ingest.authenticate(login).await.inspect_err(|e| {
        tracing::info!(identity = %creds.identity, reason = e.reason(), "HTTP device refused");
        metrics::counter!("ingot_http_devices_refused_total", "reason" => e.reason()).increment(1);
    })?;
    let attrs = model::data::http_agent_attrs(body).map_err(ingest::IngestError::from)?;
    s.ingest.ingest_attrs("http", &device, attrs).await?;
    Ok(StatusCode::NO_CONTENT)
}
