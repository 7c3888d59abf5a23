//! The flows page's endpoints: the flow service's own calls (the same rules and answers
//! as `/flows/v1/flow`, with the session's tenant), and the debugger's trace, as a
//! snapshot and live (Server-Sent Events), for the editor to show on its nodes.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde_json::{Value, json};

use super::{Body, ConsoleState, Csrf, SignedIn};
use crate::ConsoleError;

type JsonResult = Result<Json<Value>, ConsoleError>;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/api/flows", get(list).post(create))
        .route("/console/api/flows/{id}", get(one).put(update).delete(remove))
        .route("/console/api/flows/{id}/trace", get(trace))
        .route("/console/api/flows/{id}/trace/stream", get(trace_stream))
}

/// `{"flows": [F]}`, F as dojot shows a flow.
async fn list(State(s): State<ConsoleState>, me: SignedIn) -> JsonResult {
    Ok(Json(s.app.flows.list(&me.session.tenant).await?))
}

/// `{"name", "enabled"?, "trace"?, "flow"}` → F.
async fn create(State(s): State<ConsoleState>, Csrf(me): Csrf, Body(body): Body<Value>) -> JsonResult {
    Ok(Json(s.app.flows.create(&me.session.tenant, &body).await?))
}

async fn one(State(s): State<ConsoleState>, me: SignedIn, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.app.flows.get(&me.session.tenant, &id).await?))
}

/// Any of `name`, `enabled`, `trace`, `flow` → F.
async fn update(
    State(s): State<ConsoleState>,
    Csrf(me): Csrf,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> JsonResult {
    Ok(Json(s.app.flows.update(&me.session.tenant, &id, &body).await?))
}

async fn remove(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(id): Path<String>) -> JsonResult {
    let gone = s.app.flows.delete(&me.session.tenant, &id).await?;
    Ok(Json(json!({"removed": gone["id"]})))
}

/// `{"flow", "trace", "nodes": {node id: [entry…]}, "dropped"}`.
async fn trace(State(s): State<ConsoleState>, me: SignedIn, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.app.flows.trace(&me.session.tenant, &id).await?))
}

/// The trace live (409 while the flow's trace switch is off).
async fn trace_stream(
    State(s): State<ConsoleState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    Ok(api::trace_events(s.app.flows.trace_feed(&me.session.tenant, &id).await?))
}
