//! fakeiot's `POST /metrics` and the seat accounts API.
//!
//! fakeiot judges the Content-Type of every answer before its status: it must be exactly
//! `application/json`, errors included, which `ApiError` and `Json` both give.

use axum::Json;
use axum::extract::{Path, Request, State};
use model::seats::LoginEvent;
use seats::AccountView;
use serde_json::{Value, json};

use crate::extract::{Caller, bearer_token, is_json, read_limited};
use crate::{ApiError, AppState};

/// `POST /metrics` (and `//metrics`): a device reports that a user logged in.
/// 403 for any token problem (checked first), 400 for a bad body, 2xx once stored.
pub async fn report_login(State(s): State<AppState>, req: Request) -> Result<Json<AccountView>, ApiError> {
    let token = bearer_token(req.headers()).ok_or(ApiError::Forbidden("a bearer token is required"))?.to_string();
    let principal =
        s.auth.verify_api_token(&token, "metrics").await?.ok_or(ApiError::Forbidden("invalid or revoked token"))?;
    s.token_limiter.check(&principal.token_id).map_err(ApiError::RateLimited)?;
    let declared_json = is_json(req.headers());
    let body = read_limited(req, s.config.max_body_bytes).await?;
    if !declared_json {
        return Err(ApiError::BadRequest("Content-Type must be application/json".into()));
    }
    let event = LoginEvent::parse(&body).map_err(ApiError::BadRequest)?;
    Ok(Json(s.seats.record_login(&principal.tenant, &event).await?))
}

/// `GET /seats/accounts`: the caller's tenant's accounts.
pub async fn accounts(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"accounts": s.seats.accounts(&c.service).await?})))
}

/// `GET /seats/accounts/{account_id}`.
pub async fn account(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(s.seats.account(&c.service, &id).await?))
}

/// `POST /seats/accounts/{account_id}/upgrade`: to the Enterprise plan, keeping every user.
pub async fn upgrade(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    if !c.is_admin() {
        return Err(auth::AuthError::Forbidden("admin profile required".into()).into());
    }
    Ok(Json(s.seats.upgrade(&c.service, &id).await?))
}
