//! The console's HTTP side: the router, security headers, the session extractors
//! ([`SignedIn`], [`Csrf`]), sign-in and sign-out, and the seats dashboard's endpoints.
//! The device pages' endpoints are in [`catalog`], [`readings`] and [`dashboard`], the
//! flows page's in [`flows`], the load tests page's in [`loadtests`]; the files in
//! [`crate::assets`].
//!
//! Every endpoint under `/console/api/` takes the tenant from the session's user, never
//! from the request, and calls services only (`api::AppState`, the session and dashboard
//! services), never the store.

mod catalog;
mod dashboard;
mod flows;
mod loadtests;
mod readings;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::https::ViaTls;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;

use crate::ConsoleError;
use crate::dashboard::Dashboards;
use crate::session::{Session, SessionStore};

const COOKIE_NAME: &str = "ingot_session";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
pub(crate) struct ConsoleState {
    pub app: api::AppState,
    pub sessions: Arc<SessionStore>,
    pub dashboards: Arc<Dashboards>,
}

pub(crate) fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .merge(crate::assets::routes())
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/session", get(session))
        .route("/console/api/accounts", get(accounts))
        .route("/console/api/accounts/{id}", get(account))
        .route("/console/api/accounts/{id}/upgrade", post(upgrade))
        .route("/console/api/events", get(events))
        .merge(catalog::routes())
        .merge(readings::routes())
        .merge(dashboard::routes())
        .merge(flows::routes())
        .merge(loadtests::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
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

/// A JSON request body; a body that is not JSON is a 400 saying why.
pub(crate) struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ConsoleError> {
        let Json(value) =
            Json::<T>::from_request(req, state).await.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
        Ok(Self(value))
    }
}

/// The query string as `(key, value)` pairs (keys may repeat), as the services parse them.
pub(crate) struct Pairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Pairs {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        let axum::extract::Query(pairs) = axum::extract::Query::from_request_parts(parts, state)
            .await
            .map_err(|_| ConsoleError::BadRequest("malformed query string".into()))?;
        Ok(Self(pairs))
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
pub(crate) struct SignedIn {
    id: String,
    pub session: Session,
}

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let id = cookie_value(&parts.headers, COOKIE_NAME).ok_or(ConsoleError::NotSignedIn)?.to_string();
        let mut session = state.sessions.get(&id).await?.ok_or(ConsoleError::NotSignedIn)?;
        // Cached briefly by auth, and invalidated there when the user changes.
        match state.app.auth.current_user(&session.tenant, session.user_id).await? {
            Some(user) if user.username == session.username => session.profile = user.profile,
            _ => {
                state.sessions.remove(&id).await?;
                return Err(ConsoleError::NotSignedIn);
            }
        }
        Ok(Self { id, session })
    }
}

/// A signed-in user whose request carries the session's CSRF token: for state changes.
pub(crate) struct Csrf(pub SignedIn);

impl FromRequestParts<ConsoleState> for Csrf {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        let sent = parts.headers.get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
        let matches: bool = sent.ct_eq(signed_in.session.csrf.as_bytes()).into();
        if sent.is_empty() || !matches {
            return Err(ConsoleError::Csrf);
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
    Body(form): Body<LoginForm>,
) -> Result<Response, ConsoleError> {
    let jwt = s.app.auth.login(&form.login, &form.password, peer.ip()).await?;
    let claims = s.app.auth.verify_token(&jwt)?;
    let (id, session) = s.sessions.create(claims.userid, &claims.username, &claims.service, &claims.profile).await?;
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
) -> Result<Response, ConsoleError> {
    s.sessions.remove(&signed_in.id).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(SET_COOKIE, session_cookie("", tls.is_some(), Some(0)));
    Ok(resp)
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
        return Err(ConsoleError::Forbidden("only admins can change plans".into()));
    }
    Ok(Json(s.app.seats.upgrade(&signed_in.session.tenant, &id).await?))
}

/// `GET /console/api/events`: every change to the signed-in tenant's accounts, as SSE
/// `account` events carrying the account view.
async fn events(State(s): State<ConsoleState>, signed_in: SignedIn) -> Response {
    let tenant = signed_in.session.tenant.clone();
    let stream = BroadcastStream::new(s.app.seats.subscribe())
        // A lagging receiver skips what it missed; the page re-reads on the next event.
        .filter_map(move |update| std::future::ready(update.ok().filter(|u| u.tenant == tenant)))
        .map(|update| {
            Ok::<_, Infallible>(Event::default().event("account").json_data(&update.account).unwrap_or_default())
        });
    let events = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    while_signed_in(&s, signed_in, events.into_response())
}

/// How long a server push trusts its session's last check: a session that ends (sign-out,
/// user removed, lifetime over) stops its pushes before their first chunk (an event or a
/// keep-alive) after this, without a store read per event of a busy stream.
const PUSH_RECHECK: Duration = Duration::from_secs(1);

/// `resp`, a server push (SSE), ended once its session is over: before each chunk the
/// session is checked in the store, at most every [`PUSH_RECHECK`].
pub(crate) fn while_signed_in(s: &ConsoleState, signed_in: SignedIn, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let sessions = s.sessions.clone();
    let checked = Arc::new(std::sync::Mutex::new(Instant::now()));
    let session = Arc::new((signed_in.id, signed_in.session));
    let body = body.into_data_stream().take_while(move |_| {
        let (sessions, checked, session) = (sessions.clone(), checked.clone(), session.clone());
        async move {
            if checked.lock().expect("push check lock").elapsed() < PUSH_RECHECK {
                return true;
            }
            let open = sessions.is_open(&session.0, &session.1).await;
            if open {
                *checked.lock().expect("push check lock") = Instant::now();
            }
            open
        }
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}
