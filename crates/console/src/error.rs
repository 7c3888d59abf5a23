//! The console's one error type and its one mapping to an answer: a status and
//! `{"error": "…"}` in plain words the page shows as they are. Internal failures are
//! logged here with their cause and shown as "internal error" (nothing of the server's
//! inside reaches the browser).

use auth::AuthError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devices::{CatalogError, DeviceError};
use flows::FlowError;
use history::HistoryError;
use seats::SeatError;
use serde_json::json;
use store::StoreError;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("not signed in")]
    NotSignedIn,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Seat(#[from] SeatError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Stream(#[from] realtime::HubError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    LoadTest(#[from] load::collector::CollectorError),
}

impl ConsoleError {
    /// The status and the words shown to the user.
    fn status_and_message(&self) -> (StatusCode, String) {
        use StatusCode as S;
        let said = |status| (status, self.to_string());
        match self {
            Self::NotSignedIn => said(S::UNAUTHORIZED),
            Self::Csrf | Self::Forbidden(_) => said(S::FORBIDDEN),
            Self::BadRequest(_) => said(S::BAD_REQUEST),
            Self::NotFound(_) => said(S::NOT_FOUND),
            Self::Auth(e) => match e {
                AuthError::TooManyAttempts { .. } => said(S::TOO_MANY_REQUESTS),
                AuthError::InvalidCredentials => said(S::UNAUTHORIZED),
                AuthError::BadRequest(_) => said(S::BAD_REQUEST),
                _ => self.internal(),
            },
            Self::Device(DeviceError::Catalog(e)) => catalog_message(e),
            Self::Device(DeviceError::Stale(_)) => said(S::CONFLICT),
            Self::Device(DeviceError::Bus(_)) => {
                (S::SERVICE_UNAVAILABLE, "the change could not be delivered; please retry".into())
            }
            Self::Device(_) => self.internal(),
            Self::History(HistoryError::BadRequest(_)) => said(S::BAD_REQUEST),
            Self::Seat(SeatError::NoSuchAccount) => said(S::NOT_FOUND),
            Self::Stream(realtime::HubError::UserLimit(_)) => said(S::TOO_MANY_REQUESTS),
            Self::Stream(_) => said(S::SERVICE_UNAVAILABLE),
            Self::Flow(FlowError::Invalid(_) | FlowError::Missing(_) | FlowError::TooMany(_)) => said(S::BAD_REQUEST),
            Self::Flow(FlowError::UnknownFlow(_)) => said(S::NOT_FOUND),
            Self::Flow(FlowError::TraceOff(_)) => said(S::CONFLICT),
            Self::LoadTest(load::collector::CollectorError::BadRequest(_)) => said(S::BAD_REQUEST),
            Self::LoadTest(load::collector::CollectorError::NotFound(_)) => said(S::NOT_FOUND),
            Self::History(_) | Self::Seat(_) | Self::Store(_) | Self::Pki(_) | Self::Flow(_) | Self::LoadTest(_) => {
                self.internal()
            }
        }
    }

    fn internal(&self) -> (StatusCode, String) {
        tracing::error!(error = %self, "console request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log".into())
    }
}

/// A refused catalog change in plain words: dojot's field errors become
/// "attrs.0.label: Field may not be empty." lines.
fn catalog_message(e: &CatalogError) -> (StatusCode, String) {
    use StatusCode as S;
    match e {
        CatalogError::Schema(fields) => {
            let lines: Vec<String> = fields.iter().map(|(field, why)| format!("{field}: {}", why.join(" "))).collect();
            (S::BAD_REQUEST, lines.join("; "))
        }
        CatalogError::NoSuchTemplate(_) | CatalogError::NoSuchDevice(_) => (S::NOT_FOUND, e.to_string()),
        CatalogError::NotConfigurable(attrs) => {
            (S::BAD_REQUEST, format!("not actuator attributes of this device: {}", attrs.join(", ")))
        }
        _ => (S::BAD_REQUEST, e.to_string()),
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        (status, Json(json!({"error": message}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: ConsoleError) -> (u16, String) {
        let (status, message) = e.status_and_message();
        (status.as_u16(), message)
    }

    #[test]
    fn refusals_are_said_in_plain_words_and_internal_errors_hide_their_cause() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("attrs.0.label".to_string(), vec!["Field may not be empty.".to_string()]);
        fields.insert("label".to_string(), vec!["Missing data for required field.".to_string()]);
        assert_eq!(
            answer(DeviceError::from(CatalogError::Schema(fields)).into()),
            (400, "attrs.0.label: Field may not be empty.; label: Missing data for required field.".into())
        );
        assert_eq!(
            answer(DeviceError::from(CatalogError::NotConfigurable(vec!["temperature".into()])).into()),
            (400, "not actuator attributes of this device: temperature".into())
        );
        assert_eq!(answer(DeviceError::from(CatalogError::NoSuchDevice("ab12".into())).into()).0, 404);
        assert_eq!(answer(DeviceError::from(CatalogError::TemplateInUse).into()).0, 400);
        let (status, message) = answer(StoreError::Task("secret detail".into()).into());
        assert_eq!(status, 500);
        assert!(!message.contains("secret detail"), "{message}");
        assert_eq!(answer(ConsoleError::NotSignedIn), (401, "not signed in".into()));
        assert_eq!(answer(realtime::HubError::UserLimit(32).into()).0, 429);
        assert_eq!(answer(realtime::HubError::ShuttingDown.into()).0, 503);
        assert_eq!(answer(FlowError::UnknownFlow("f1".into()).into()), (404, "Unknown flow: f1".into()));
        assert_eq!(answer(FlowError::TraceOff("f1".into()).into()).0, 409);
        assert_eq!(answer(FlowError::Invalid("Given flow is invalid: x".into()).into()).0, 400);
    }
}
