//! `/auth`, `/auth/user`, `/tenant/settings`.

use std::net::SocketAddr;

use auth::{AuthError, NewUser, TenantSettings, UserUpdate};
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, QueryPairs};
use crate::{ApiError, AppState};

fn field<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

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
    let username = body.get("username").and_then(Value::as_str).filter(|u| !u.is_empty());
    let passwd = body.get("passwd").and_then(Value::as_str);
    let username = username.ok_or_else(|| ApiError::BadRequest("missing username".into()))?;
    let passwd = passwd.ok_or_else(|| ApiError::BadRequest("missing password".into()))?;
    let jwt = s.auth.login(username, passwd, peer.ip()).await?;
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
    let new: NewUser = field(body)?;
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
    let update: UserUpdate = field(body)?;
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
    let old = body
        .get("oldpasswd")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("missing oldpasswd".into()))?;
    let new = body
        .get("newpasswd")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("missing newpasswd".into()))?;
    s.auth.change_password(&c, old, new).await?;
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
    let settings: TenantSettings =
        serde_json::from_value(body).map_err(|e| AuthError::BadRequest(format!("invalid settings: {e}")))?;
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
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewToken {
        name: String,
        scopes: Vec<String>,
    }
    let req: NewToken = field(body)?;
    let (view, token) = s.auth.create_token(&c, &req.name, &req.scopes).await?;
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
