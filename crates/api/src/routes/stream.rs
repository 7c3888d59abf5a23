//! Real-time streams (the `realtime` crate does the streaming; these routes decide who
//! may open what): kafka-ws's ticket and WebSocket, data-broker's socket.io token, and
//! Server-Sent Events per device or per tenant.

use std::sync::Arc;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use realtime::kafka_ws::{Holder, Subscription};
use realtime::{Filter, Request, Topic};
use serde_json::{Value, json};

use crate::extract::{Caller, QueryPairs, bearer_token};
use crate::{ApiError, AppState};

/// `GET|POST /kafka-ws/v1/ticket`: a single-use ticket for one WebSocket (kafka-ws).
pub async fn ticket(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    let ticket = s.auth.issue_ticket(&c, s.config.ticket_ttl).await?;
    Ok(Json(json!({"ticket": ticket})))
}

/// `GET /stream/socketio`: data-broker's token for a socket.io connection (single use).
pub async fn socketio_token(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    let token = s.auth.issue_ticket(&c, s.config.ticket_ttl).await?;
    Ok(Json(json!({"token": token})))
}

/// `GET /kafka-ws/v1/topics/{topic}?ticket=&fields=&where=`: the WebSocket. Not a
/// WebSocket request: 426. No valid ticket: 401 (before the upgrade). Everything else is
/// answered on the socket with kafka-ws's close codes (`realtime::kafka_ws`).
pub async fn topic(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    q: QueryPairs,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Ok(upgrade) = upgrade else { return Err(ApiError::UpgradeRequired) };
    let ticket = q.get("ticket").ok_or_else(|| ApiError::Unauthorized("Missing ticket".into()))?;
    let holder = s.auth.take_ticket(ticket).await?;
    let sub = Subscription {
        topic,
        fields: q.get("fields").map(str::to_string),
        conditions: q.get("where").map(str::to_string),
    };
    let (hub, max_life) = (s.realtime.clone(), s.config.stream_max_life);
    let holder = Holder { tenant: holder.tenant, user_id: holder.user_id };
    // Clients send nothing on this socket: a small read buffer (tungstenite's default
    // is 128 KiB per socket) and a bounded write buffer keep a subscriber cheap.
    Ok(upgrade
        .max_message_size(64 * 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| realtime::kafka_ws::serve(socket, hub, holder, sub, max_life))
        .into_response())
}

/// `GET /stream/devices/{id}`: one device's readings as Server-Sent Events.
pub async fn device_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    let holder = stream_caller(&s, &headers, &q).await?;
    s.devices.get_device(&holder.tenant, &id).await?;
    events(&s, holder, Some(id), &headers, &q)
}

/// `GET /stream/devices`: every reading of the caller's tenant as Server-Sent Events.
pub async fn tenant_events(State(s): State<AppState>, headers: HeaderMap, q: QueryPairs) -> Result<Response, ApiError> {
    let holder = stream_caller(&s, &headers, &q).await?;
    events(&s, holder, None, &headers, &q)
}

fn events(
    s: &AppState,
    who: Holder,
    device: Option<String>,
    headers: &HeaderMap,
    q: &QueryPairs,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(q.get("fields"), q.get("where")).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let resume =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).or_else(|| q.get("lastEventId")).map(str::to_string);
    let request =
        Request { tenant: who.tenant, user_id: who.user_id, topic: Topic::DeviceData, device, filter, resume };
    let stream = s.realtime.subscribe(request)?;
    Ok(realtime::sse::response(stream, "device-data", s.config.stream_max_life).into_response())
}

/// Who opens an SSE stream: a Bearer JWT (curl, applications) or a ticket in the URL
/// (`EventSource` cannot send headers).
async fn stream_caller(s: &AppState, headers: &HeaderMap, q: &QueryPairs) -> Result<Holder, ApiError> {
    if bearer_token(headers).is_none()
        && let Some(ticket) = q.get("ticket")
    {
        let h = s.auth.take_ticket(ticket).await?;
        return Ok(Holder { tenant: h.tenant, user_id: h.user_id });
    }
    let c = Caller::from_headers(headers, s)?;
    Ok(Holder { tenant: c.service, user_id: c.userid })
}

/// The socket.io layer, taking tokens through the auth service.
pub fn socketio_layer(s: &AppState) -> socketioxide::layer::SocketIoLayer {
    let auth = s.auth.clone();
    let redeem: realtime::socketio::Redeem = Arc::new(move |token: String| {
        let auth = auth.clone();
        Box::pin(async move {
            let h = auth.take_ticket(&token).await.ok()?;
            Some(Holder { tenant: h.tenant, user_id: h.user_id })
        })
    });
    realtime::socketio::layer(s.realtime.clone(), redeem)
}
