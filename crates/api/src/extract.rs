//! Extractors: who is calling, and request bodies/queries parsed with the API's rules.

use auth::Claims;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use base64::Engine;
use serde_json::Value;

use crate::{ApiError, AppState};

/// The authenticated user, from a verified `Authorization: Bearer <jwt>`.
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Self::from_headers(&parts.headers, state).map(Caller)
    }
}

impl Caller {
    /// The verified claims of the request's `Authorization: Bearer <jwt>`.
    pub fn from_headers(headers: &HeaderMap, state: &AppState) -> Result<Claims, ApiError> {
        if !headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::Unauthorized("No authorization token has been supplied".into()));
        }
        let token = bearer_token(headers)
            .ok_or_else(|| ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into()))?;
        Ok(state.auth.verify_token(token)?)
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is a non-empty one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// Whether the Content-Type's media type is `application/json` (parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON body, read up to the configured size limit.
///
/// `STRICT`: the Content-Type must be exactly `application/json`, as dojot's
/// device-manager required (a `; charset=…` suffix is refused). Otherwise any
/// `application/json` media type is accepted.
pub struct JsonBody<const STRICT: bool = false>(pub Value);

/// [`JsonBody`] with device-manager's exact Content-Type rule.
pub type StrictJson = JsonBody<true>;

impl<const STRICT: bool> FromRequest<AppState> for JsonBody<STRICT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
        let is_json = if STRICT {
            content_type == "application/json"
        } else {
            content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        };
        let bytes = read_limited(req, state.config.max_body_bytes).await?;
        if !is_json {
            return Err(ApiError::BadJson);
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|_| ApiError::BadJson)
    }
}

/// Reads a body, refusing it with 413 past `limit` bytes.
pub async fn read_limited(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ApiError::TooLarge(limit))
}

/// The raw query as `(key, value)` pairs, keys possibly repeated (dojot's `attr=…&attr=…`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q).map(QueryPairs).map_err(|_| ApiError::BadRequest("malformed query string".into()))
    }
}

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A device's HTTP credentials: `Authorization: Basic base64("tenant:device:secret")`.
/// The secret never contains ':', so the split is at the last colon; `tenant@device` is
/// accepted as the user part too, for clients that split at the first colon.
pub struct DeviceCredentials {
    pub identity: String,
    pub secret: String,
}

impl<S: Send + Sync> FromRequestParts<S> for DeviceCredentials {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let (user, secret) =
            basic_credentials(&parts.headers).ok_or(ApiError::DeviceAuth(ingest::DeviceAuthError::BadIdentity))?;
        Ok(Self { identity: user.replacen('@', ":", 1), secret })
    }
}

/// `Authorization: Basic base64("user:password")` as (user, password), split at the last
/// colon (passwords here are secrets and tokens, which have none); None if absent or
/// malformed.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, b64) = headers.get(AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (user, password) = decoded.rsplit_once(':')?;
    Some((user.to_string(), password.to_string()))
}
