//! Console pages, assets and the session-authenticated JSON/SSE endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::https::ViaTls;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;

use crate::session::{Session, SessionStore};

const COOKIE_NAME: &str = "ingot_session";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

static INDEX_HTML: &str = include_str!("../assets/index.html");
static CONSOLE_JS: &str = include_str!("../assets/console.js");
static CONSOLE_CSS: &str = include_str!("../assets/console.css");

#[derive(Clone)]
pub(crate) struct ConsoleState {
    pub app: api::AppState,
    pub sessions: Arc<SessionStore>,
}

pub(crate) fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/console/console.js", get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }))
        .route("/console/console.css", get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }))
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/session", get(session))
        .route("/console/api/accounts", get(accounts))
        .route("/console/api/accounts/{id}", get(account))
        .route("/console/api/accounts/{id}/upgrade", post(upgrade))
        .route("/console/api/events", get(events))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A console error: status and `{"error": …}`.
struct ConsoleError(StatusCode, String);

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl ConsoleError {
    fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "console request failed");
        Self(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

impl From<seats::SeatError> for ConsoleError {
    fn from(e: seats::SeatError) -> Self {
        match e {
            seats::SeatError::NoSuchAccount => Self(StatusCode::NOT_FOUND, e.to_string()),
            e => Self::internal(&e),
        }
    }
}

impl From<auth::AuthError> for ConsoleError {
    fn from(e: auth::AuthError) -> Self {
        use auth::AuthError as E;
        match e {
            E::TooManyAttempts { .. } => Self(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            E::InvalidCredentials => Self(StatusCode::UNAUTHORIZED, e.to_string()),
            E::BadRequest(m) => Self(StatusCode::BAD_REQUEST, m),
            e => Self::internal(&e),
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in user of a request (from the session cookie), re-checked: a session
/// whose user no longer exists ends, and `session.profile` is the user's current profile.
struct SignedIn {
    id: String,
    session: Session,
}

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let not_signed_in = || ConsoleError(StatusCode::UNAUTHORIZED, "not signed in".into());
        let id = cookie_value(&parts.headers, COOKIE_NAME).ok_or_else(not_signed_in)?.to_string();
        let mut session =
            state.sessions.get(&id).await.map_err(|e| ConsoleError::internal(&e))?.ok_or_else(not_signed_in)?;
        // Cached briefly by auth, and invalidated there when the user changes.
        match state.app.auth.current_user(&session.tenant, session.user_id).await? {
            Some(user) if user.username == session.username => session.profile = user.profile,
            _ => {
                state.sessions.remove(&id).await.map_err(|e| ConsoleError::internal(&e))?;
                return Err(not_signed_in());
            }
        }
        Ok(Self { id, session })
    }
}

/// A signed-in user whose request carries the session's CSRF token: for state changes.
struct Csrf(SignedIn);

impl FromRequestParts<ConsoleState> for Csrf {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        let sent = parts.headers.get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
        let matches: bool = sent.ct_eq(signed_in.session.csrf.as_bytes()).into();
        if sent.is_empty() || !matches {
            return Err(ConsoleError(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into()));
        }
        Ok(Csrf(signed_in))
    }
}

fn session_cookie(value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{COOKIE_NAME}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    /// User name or e-mail.
    login: String,
    password: String,
}

/// `POST /console/api/login` (JSON only: a cross-site form cannot send it without CORS).
async fn login(
    State(s): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<axum::Extension<ViaTls>>,
    body: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ConsoleError> {
    let Json(form) = body.map_err(|e| ConsoleError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let jwt = s.app.auth.login(&form.login, &form.password, peer.ip()).await?;
    let claims = s.app.auth.verify_token(&jwt).map_err(|e| ConsoleError::internal(&e))?;
    let (id, session) = s
        .sessions
        .create(claims.userid, &claims.username, &claims.service, &claims.profile)
        .await
        .map_err(|e| ConsoleError::internal(&e))?;
    let mut resp = Json(session_json(&session)).into_response();
    // The browser forgets the cookie when the server ends the session at the latest.
    let max_age = s.sessions.max_lifetime().as_secs();
    resp.headers_mut().insert(SET_COOKIE, session_cookie(&id, tls.is_some(), Some(max_age)));
    Ok(resp)
}

fn session_json(s: &Session) -> serde_json::Value {
    json!({"username": s.username, "tenant": s.tenant, "profile": s.profile, "csrf": s.csrf})
}

async fn session(signed_in: SignedIn) -> Json<serde_json::Value> {
    Json(session_json(&signed_in.session))
}

/// `POST /console/api/logout`: ends the session on the server and clears the cookie.
async fn logout(
    State(s): State<ConsoleState>,
    tls: Option<axum::Extension<ViaTls>>,
    Csrf(signed_in): Csrf,
) -> Response {
    if let Err(e) = s.sessions.remove(&signed_in.id).await {
        return ConsoleError::internal(&e).into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(SET_COOKIE, session_cookie("", tls.is_some(), Some(0)));
    resp
}

async fn accounts(State(s): State<ConsoleState>, signed_in: SignedIn) -> Result<Json<serde_json::Value>, ConsoleError> {
    Ok(Json(json!({"accounts": s.app.seats.accounts(&signed_in.session.tenant).await?})))
}

async fn account(
    State(s): State<ConsoleState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<seats::AccountView>, ConsoleError> {
    Ok(Json(s.app.seats.account(&signed_in.session.tenant, &id).await?))
}

async fn upgrade(
    State(s): State<ConsoleState>,
    Csrf(signed_in): Csrf,
    Path(id): Path<String>,
) -> Result<Json<seats::AccountView>, ConsoleError> {
    if signed_in.session.profile != "admin" {
        return Err(ConsoleError(StatusCode::FORBIDDEN, "only admins can change plans".into()));
    }
    Ok(Json(s.app.seats.upgrade(&signed_in.session.tenant, &id).await?))
}

/// `GET /console/api/events`: every change to the signed-in tenant's accounts, as SSE
/// `account` events carrying the account view.
async fn events(
    State(s): State<ConsoleState>,
    signed_in: SignedIn,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let tenant = signed_in.session.tenant.clone();
    let (sessions, id, session) = (s.sessions.clone(), signed_in.id, signed_in.session);
    let stream = BroadcastStream::new(s.app.seats.subscribe())
        // A lagging receiver skips what it missed; the page re-reads on the next event.
        .filter_map(move |update| std::future::ready(update.ok().filter(|u| u.tenant == tenant)))
        // A session that ended (sign-out, user removed, lifetime over) gets nothing more:
        // checked in the store before each event of its tenant.
        .take_while(move |_| {
            let (sessions, id, session) = (sessions.clone(), id.clone(), session.clone());
            async move { sessions.is_open(&id, &session).await }
        })
        .map(|update| Ok(Event::default().event("account").json_data(&update.account).unwrap_or_default()));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
