//! `/auth`, `/auth/user`, `/tenant/settings`. The bodies and their rules are
//! `model::account`'s (also what the fuzz targets run).

use std::net::SocketAddr;

use auth::TenantSettings;
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use model::account::{LoginRequest, NewToken, NewUser, PasswordChange, UserUpdate};
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, QueryPairs};
use crate::{ApiError, AppState};

/// `POST /auth` `{"username","passwd"}` → `{"jwt"}`.
pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonBody(body) = body.map_err(|e| match e {
        ApiError::BadJson => ApiError::BadRequest("invalid mimetype".into()),
        e => e,
    })?;
    let req = LoginRequest::parse(&body).map_err(auth::AuthError::from)?;
    let jwt = s.auth.login(&req.username, &req.passwd, peer.ip()).await?;
    Ok(Json(json!({"jwt": jwt})))
}

/// `GET /auth/user[?username=]`.
pub async fn list_users(State(s): State<AppState>, Caller(c): Caller, q: QueryPairs) -> Result<Json<Value>, ApiError> {
    let users = s.auth.list_users(&c, q.get("username")).await?;
    Ok(Json(json!({"users": users})))
}

/// `POST /auth/user` → dojot's `[{"user","groups","could not add","message"}, 200]`.
pub async fn create_user(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let new = NewUser::from_json(body).map_err(auth::AuthError::from)?;
    let (user, temporary_password) = s.auth.create_user(&c, new).await?;
    let groups: Vec<i64> = auth::group_id(&user.profile).into_iter().collect();
    let mut result = json!({"user": user, "groups": groups, "could not add": [], "message": "user created"});
    if let Some(p) = temporary_password {
        // dojot gave every new user the password "temppwd"; Ingot makes a random one, shown once.
        result["temporary_password"] = json!(p);
    }
    Ok(Json(json!([result, 200])))
}

/// `GET /auth/user/{id or username}`.
pub async fn get_user(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"user": s.auth.get_user(&c, &id).await?})))
}

/// `PUT /auth/user/{id}`.
pub async fn update_user(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let update = UserUpdate::from_json(body).map_err(auth::AuthError::from)?;
    s.auth.update_user(&c, &id, update).await?;
    Ok(Json(json!({"message": "ok", "status": 200})))
}

/// `DELETE /auth/user/{id}`.
pub async fn delete_user(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.auth.delete_user(&c, &id).await?;
    Ok(Json(json!({"message": "User removed", "status": 200})))
}

/// `POST /auth/password/update` `{"oldpasswd","newpasswd"}`.
pub async fn change_password(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let req = PasswordChange::parse(&body).map_err(auth::AuthError::from)?;
    s.auth.change_password(&c, &req.oldpasswd, &req.newpasswd).await?;
    Ok(Json(json!({"message": "ok", "status": 200})))
}

/// `GET /tenant/settings`: the caller's tenant.
pub async fn tenant_settings(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<TenantSettings>, ApiError> {
    Ok(Json(s.auth.tenant_settings(&c.service).await?))
}

/// `PUT /tenant/settings` `{"unsecured_mqtt","history_retention_days"}` (admin profile).
pub async fn update_tenant_settings(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<TenantSettings>, ApiError> {
    let settings = TenantSettings::from_json(body).map_err(auth::AuthError::from)?;
    let updated = s.auth.update_tenant_settings(&c, settings).await?;
    if !updated.unsecured_mqtt {
        // Devices let in without a secret while the tenant was unsecured must go now.
        s.devices.tenant_secured(&c.service).await;
    }
    Ok(Json(updated))
}

/// `POST /auth/tokens` `{"name","scopes"}` → 201 `{"id","name","token"}` (token shown once).
pub async fn create_token(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let req = NewToken::from_json(body).map_err(auth::AuthError::from)?;
    let (view, token) = s.auth.create_token(&c, &req).await?;
    let body = json!({"id": view.id, "name": view.name, "scopes": view.scopes, "token": token});
    Ok((axum::http::StatusCode::CREATED, Json(body)))
}

/// `GET /auth/tokens`: without secrets.
pub async fn list_tokens(State(s): State<AppState>, Caller(c): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"tokens": s.auth.list_tokens(&c).await?})))
}

/// `DELETE /auth/tokens/{id}`: revoked at once.
pub async fn revoke_token(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.auth.revoke_token(&c, &id).await?;
    Ok(Json(json!({"message": "token revoked", "status": 200})))
}
