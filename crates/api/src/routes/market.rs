//! The auction API of seed 003 (the `market` crate holds the rules): signup and login,
//! offers and bids, the WebSocket, and the test page. Paths are the seed README's
//! (`/v1/offer`, `/v1/bid/{id}`) and the original code's (`/v1/bids`, `/v1/bids/{id}`,
//! `/vi/bid/{id}`, `/v1/offer/offer`). Market routes take market tokens only
//! ([`Bidder`]); a platform token is refused here and a market token on platform routes.

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use market::MarketError;
use serde_json::{Value, json};

use crate::extract::{JsonBody, QueryPairs, bearer_token};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/signup", post(signup))
        .route("/v1/login", post(login))
        .route("/v1/offer", post(create_offer).get(offers))
        .route("/v1/offer/offer", get(offers))
        .route("/v1/offer/{id}", get(offer))
        .route("/v1/offer/{id}/bids", get(bids))
        .route("/v1/bid", post(place_bid))
        .route("/v1/bids", post(place_bid))
        .route("/v1/bid/{id}", put(accept_bid))
        .route("/v1/bids/{id}", put(accept_bid))
        .route("/vi/bid/{id}", put(accept_bid))
        .route("/v1/stream", get(stream))
        .route("/ws", get(stream))
        .route("/index", get(|| async { asset("text/html; charset=utf-8", market::page::HTML) }))
        .route("/index.js", get(|| async { asset("text/javascript; charset=utf-8", market::page::JS) }))
        .route("/index.css", get(|| async { asset("text/css; charset=utf-8", market::page::CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(market::page::CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The market user a request's `Authorization: Bearer <market token>` names.
pub struct Bidder(pub String);

impl FromRequestParts<AppState> for Bidder {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            MarketError::Unauthorized("Authorization: Bearer <token from POST /v1/login> is required".into())
        })?;
        Ok(Bidder(state.market.accounts.verify(token)?.sub))
    }
}

/// A string field of a JSON body ("" when absent or not a string: the rules then refuse it).
fn field<'a>(body: &'a Value, key: &str) -> &'a str {
    body.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `POST /v1/signup {"username", "password"}` → 201 `{"username"}`.
async fn signup(State(s): State<AppState>, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    s.market.accounts.signup(field(&body, "username"), field(&body, "password")).await?;
    Ok((StatusCode::CREATED, Json(json!({"username": field(&body, "username")}))).into_response())
}

/// `POST /v1/login {"username", "password"}` → `{"token"}`.
async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let token = s.market.accounts.login(field(&body, "username"), field(&body, "password"), peer.ip()).await?;
    Ok(Json(json!({"token": token})))
}

/// `POST /v1/offer` → 201 with the offer.
async fn create_offer(
    State(s): State<AppState>,
    Bidder(user): Bidder,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, Json(s.market.create_offer(&user, body).await?)).into_response())
}

/// `GET /v1/offer?size=&page=&sortKey=` → a list (`[]` when empty).
async fn offers(State(s): State<AppState>, _: Bidder, q: QueryPairs) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = market::service::page(q.get("page"), q.get("size"))?;
    let order = market::service::order(q.get("sortKey").or(q.get("sort_key")))?;
    Ok(Json(s.market.offers(order, offset, limit).await?))
}

/// `GET /v1/offer/{id}`.
async fn offer(State(s): State<AppState>, _: Bidder, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.market.offer(&id).await?))
}

/// `GET /v1/offer/{id}/bids?size=&page=`: its bids, by time.
async fn bids(
    State(s): State<AppState>,
    _: Bidder,
    Path(id): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = market::service::page(q.get("page"), q.get("size"))?;
    Ok(Json(s.market.bids(&id, offset, limit).await?))
}

/// `POST /v1/bid {"bid_price", "offer_id"}` → 201 with the bid, once stored.
async fn place_bid(
    State(s): State<AppState>,
    Bidder(user): Bidder,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, Json(s.market.place_bid(&user, body).await?)).into_response())
}

/// `PUT /v1/bid/{id}`: the offer's creator accepts the bid → the bid, `"accepted": true`.
async fn accept_bid(
    State(s): State<AppState>,
    Bidder(user): Bidder,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.market.accept_bid(&user, &id).await?))
}

/// `GET /v1/stream` (also `/ws`): the WebSocket (`market::ws`). Not a WebSocket request: 426.
async fn stream(
    State(s): State<AppState>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Ok(upgrade) = upgrade else { return Err(ApiError::UpgradeRequired) };
    let market = s.market.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| market::ws::serve(socket, market))
        .into_response())
}
