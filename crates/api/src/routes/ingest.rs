//! The HTTP device agent: `POST /http-agent/v1/incoming-messages` (dojot's http-agent
//! shape `{"ts"?, "data": {…}}`), authenticated with the device's credentials.

use axum::extract::State;
use axum::http::StatusCode;
use ingest::DeviceLogin;
use serde_json::Value;

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
    let Value::Object(mut body) = body else {
        return Err(ApiError::BadRequest("body must be {\"data\": {attributes}, \"ts\"?: timestamp}".into()));
    };
    if let Some(k) = body.keys().find(|k| !matches!(k.as_str(), "data" | "ts")) {
        return Err(ApiError::BadRequest(format!("unknown field '{k}': the body is {{\"data\": {{…}}, \"ts\"?: …}}")));
    }
    let Some(Value::Object(mut attrs)) = body.remove("data") else {
        return Err(ApiError::BadRequest("'data' must be a JSON object of attribute values".into()));
    };
    if let Some(ts) = body.remove("ts") {
        attrs.insert("timestamp".into(), ts);
    }
    s.ingest.ingest_attrs("http", &device, attrs).await?;
    Ok(StatusCode::NO_CONTENT)
}
