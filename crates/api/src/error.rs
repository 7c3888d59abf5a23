//! Every error the API can answer with, and its status and body: the one mapping place.

use auth::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use devices::{CatalogError, DeviceError};
use history::HistoryError;
use ingest::{DeviceAuthError, IngestError};
use seats::SeatError;
use serde_json::{Value, json};

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    DeviceAuth(#[from] DeviceAuthError),
    #[error(transparent)]
    Seat(#[from] SeatError),
    /// fakeiot's contract: a missing, empty, wrong or revoked token is 403, not 401.
    #[error("access denied: {0}")]
    Forbidden(&'static str),
    /// Not JSON, or not declared as JSON (dojot's wording).
    #[error("Payload must be valid JSON, and Content-Type set accordingly")]
    BadJson,
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many requests for this token; retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unauthorized(String),
    #[error("history: {0}")]
    HistoryNotFound(&'static str, &'static str),
    #[error(transparent)]
    Stream(#[from] realtime::HubError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Flow(#[from] flows::FlowError),
    #[error(transparent)]
    Market(#[from] market::MarketError),
    #[error(transparent)]
    Collector(#[from] load::collector::CollectorError),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "this route is a WebSocket: send a WebSocket upgrade request (GET, Connection: Upgrade, Upgrade: websocket)"
    )]
    UpgradeRequired,
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
}

fn message(status: StatusCode, msg: impl Into<Value>) -> (StatusCode, Value) {
    (status, json!({"message": msg.into(), "status": status.as_u16()}))
}

impl ApiError {
    fn status_and_body(&self) -> (StatusCode, Value) {
        use StatusCode as S;
        match self {
            Self::Auth(e) => match e {
                AuthError::BadRequest(m) => message(S::BAD_REQUEST, m.as_str()),
                AuthError::InvalidCredentials => message(S::UNAUTHORIZED, e.to_string()),
                AuthError::TooManyAttempts { .. } | AuthError::TooManyTickets(_) => {
                    message(S::TOO_MANY_REQUESTS, e.to_string())
                }
                AuthError::Unauthorized(m) => message(S::UNAUTHORIZED, m.as_str()),
                AuthError::Forbidden(m) => message(S::FORBIDDEN, m.as_str()),
                AuthError::NotFound(m) => message(S::NOT_FOUND, m.as_str()),
                AuthError::Conflict(m) => message(S::CONFLICT, m.as_str()),
                AuthError::KeyFile(_) | AuthError::Store(_) | AuthError::Bus(_) => internal(self),
            },
            Self::Device(DeviceError::Catalog(e)) => match e {
                CatalogError::Schema(errors) => {
                    (S::BAD_REQUEST, json!({"message": "failed to parse input", "errors": errors}))
                }
                CatalogError::RepeatedDeviceAttrs(_) => message(S::BAD_REQUEST, json!([e.to_string()])),
                CatalogError::NoSuchTemplate(_) | CatalogError::NoSuchDevice(_) => message(S::NOT_FOUND, e.to_string()),
                CatalogError::NotConfigurable(attrs) => {
                    (S::FORBIDDEN, json!({"status": e.to_string(), "attrs": attrs}))
                }
                _ => message(S::BAD_REQUEST, e.to_string()),
            },
            Self::Device(DeviceError::Stale(_)) => message(S::CONFLICT, self.to_string()),
            Self::Device(DeviceError::IdSpaceExhausted) => message(S::INTERNAL_SERVER_ERROR, self.to_string()),
            Self::Device(DeviceError::Bus(_)) => {
                message(S::SERVICE_UNAVAILABLE, "the change could not be delivered; retry")
            }
            Self::Device(_) => internal(self),
            Self::History(HistoryError::BadRequest(m)) => {
                (S::BAD_REQUEST, json!({"title": "Bad request", "description": m}))
            }
            Self::History(HistoryError::Store(_)) => internal(self),
            Self::HistoryNotFound(title, description) => {
                (S::NOT_FOUND, json!({"title": title, "description": description}))
            }
            Self::Ingest(e) => match e {
                IngestError::Payload(_) | IngestError::BadTopic => message(S::BAD_REQUEST, e.to_string()),
                IngestError::ForeignTopic => message(S::FORBIDDEN, e.to_string()),
                IngestError::TooLarge(_) => message(S::PAYLOAD_TOO_LARGE, e.to_string()),
                IngestError::TooManyAttributes(_) => message(S::BAD_REQUEST, e.to_string()),
                IngestError::Revoked => message(S::UNAUTHORIZED, "invalid device credentials"),
                IngestError::Bus(_) | IngestError::Unavailable => {
                    message(S::SERVICE_UNAVAILABLE, "the reading could not be stored; retry")
                }
            },
            Self::DeviceAuth(DeviceAuthError::Unavailable) => message(S::SERVICE_UNAVAILABLE, self.to_string()),
            Self::DeviceAuth(_) => message(S::UNAUTHORIZED, "invalid device credentials"),
            Self::Seat(e) => match e {
                SeatError::NoSuchAccount => message(S::NOT_FOUND, e.to_string()),
                SeatError::TooManyAccounts(_) => message(S::TOO_MANY_REQUESTS, e.to_string()),
                SeatError::Bus(_) => message(S::SERVICE_UNAVAILABLE, "the login could not be stored; retry"),
                SeatError::Store(_) | SeatError::Write(_) | SeatError::WriterGone => internal(self),
            },
            Self::Forbidden(_) => message(S::FORBIDDEN, self.to_string()),
            Self::BadJson => message(S::BAD_REQUEST, self.to_string()),
            Self::TooLarge(_) => message(S::PAYLOAD_TOO_LARGE, self.to_string()),
            Self::BadRequest(m) => message(S::BAD_REQUEST, m.as_str()),
            Self::RateLimited(_) => message(S::TOO_MANY_REQUESTS, self.to_string()),
            Self::Unauthorized(m) => message(S::UNAUTHORIZED, m.as_str()),
            Self::Stream(realtime::HubError::ShuttingDown) => message(S::SERVICE_UNAVAILABLE, self.to_string()),
            Self::Stream(_) => message(S::TOO_MANY_REQUESTS, self.to_string()),
            Self::UpgradeRequired => message(S::UPGRADE_REQUIRED, self.to_string()),
            Self::Pki(pki::PkiError::BadCsr(m) | pki::PkiError::BadCertificate(m)) => {
                message(S::BAD_REQUEST, m.as_str())
            }
            Self::Pki(pki::PkiError::Exists(m)) => message(S::CONFLICT, m.as_str()),
            Self::Flow(e) => match e {
                flows::FlowError::Invalid(_) | flows::FlowError::Missing(_) | flows::FlowError::TooMany(_) => {
                    message(S::BAD_REQUEST, e.to_string())
                }
                flows::FlowError::TraceOff(_) => message(S::CONFLICT, e.to_string()),
                flows::FlowError::UnknownFlow(id) => {
                    (S::NOT_FOUND, json!({"message": e.to_string(), "flow": id, "status": 404}))
                }
                flows::FlowError::Node(_) | flows::FlowError::Store(_) => internal(self),
            },
            Self::Pki(_) => internal(self),
            Self::Market(e) => {
                use market::MarketError as M;
                match e {
                    M::BadRequest(_) | M::UserExists => message(S::BAD_REQUEST, e.to_string()),
                    M::Unauthorized(_) => message(S::UNAUTHORIZED, e.to_string()),
                    M::BadCredentials | M::Forbidden(_) => message(S::FORBIDDEN, e.to_string()),
                    M::TooManyAttempts(_) => message(S::TOO_MANY_REQUESTS, e.to_string()),
                    M::NotFound(_) => message(S::NOT_FOUND, e.to_string()),
                    M::Conflict(_) => message(S::CONFLICT, e.to_string()),
                    M::Busy => message(S::SERVICE_UNAVAILABLE, e.to_string()),
                    M::Store(_) | M::Bus(_) => internal(self),
                }
            }
            Self::Collector(e) => {
                use load::collector::CollectorError as C;
                match e {
                    C::BadRequest(_) => message(S::BAD_REQUEST, e.to_string()),
                    C::NotFound(_) => message(S::NOT_FOUND, e.to_string()),
                    C::Store(_) => internal(self),
                }
            }
            Self::NotFound(m) => message(S::NOT_FOUND, m.as_str()),
            Self::NoRoute => message(S::NOT_FOUND, "no such endpoint"),
            Self::MethodNotAllowed => message(S::METHOD_NOT_ALLOWED, "method not allowed on this endpoint"),
        }
    }
}

fn internal(e: &ApiError) -> (StatusCode, Value) {
    tracing::error!(error = %e, "internal error");
    message(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        let mut resp = (status, axum::Json(body)).into_response();
        let retry_after = match &self {
            Self::Auth(AuthError::TooManyAttempts { retry_after_secs })
            | Self::RateLimited(retry_after_secs)
            | Self::Market(market::MarketError::TooManyAttempts(retry_after_secs)) => Some(*retry_after_secs),
            Self::Market(market::MarketError::Busy) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if matches!(
            self,
            Self::DeviceAuth(_) | Self::Unauthorized(_) | Self::Market(market::MarketError::Unauthorized(_))
        ) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
