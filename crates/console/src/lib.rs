//! The web console at `/console/`: sign in with user name or e-mail and password, then
//! pages for templates, devices (search, paging, secrets), a device (attributes, latest
//! values, live and history charts, the CSV history report, actuation), a dashboard of
//! charts and value tiles kept per user ([`dashboard`]), and the "User Management
//! Dashboard" of seat metering (fakeiot, seed 000), live over SSE.
//!
//! Security: server-side sessions ([`session`], in the store: any node of a cluster
//! serves any browser) in an HttpOnly, SameSite=Strict cookie
//! (Secure when served over HTTPS) with an idle timeout and an absolute lifetime; logout
//! ends the session on the server, and so does removing its user; every request re-checks
//! the user through `auth` (a demoted admin loses admin actions at once); every state
//! change needs the session's CSRF token in `X-CSRF-Token` (compared in constant time); a strict
//! Content-Security-Policy with no inline script or style; the page writes only with
//! `textContent`, so nothing the server sends is interpreted as HTML. Assets are compiled
//! into the binary: no Node build step.

mod assets;
pub mod dashboard;
mod error;
mod report;
mod routes;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use dashboard::Dashboards;
pub use error::ConsoleError;
pub use session::SessionStore;

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// A session unused this long is over.
    pub idle_timeout: Duration,
    /// A session is over this long after sign-in, however busy.
    pub max_lifetime: Duration,
    /// Most sessions kept at once (the least recently used go first).
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
        }
    }
}

/// The console's routes, to merge into the API router; sessions and dashboards live in
/// `store`. A user removed through `auth` loses its console sessions at once (and every
/// request re-checks its user, so a removal on another node ends them too), and its
/// dashboard.
pub fn router(state: api::AppState, config: ConsoleConfig, store: store::SharedStore) -> Router {
    let sessions = Arc::new(SessionStore::new(config, store.clone()));
    let dashboards = Arc::new(Dashboards::new(store));
    let (weak_sessions, weak_dashboards) = (Arc::downgrade(&sessions), Arc::downgrade(&dashboards));
    state.auth.on_user_change(move |change| {
        let auth::UserChange::Removed { tenant, user_id } = change else { return };
        let (Some(sessions), Some(dashboards)) = (weak_sessions.upgrade(), weak_dashboards.upgrade()) else { return };
        let (tenant, user_id) = (tenant.clone(), *user_id);
        tokio::spawn(async move {
            match sessions.end_user(&tenant, user_id).await {
                Ok(ended) => tracing::info!(tenant, user_id, ended, "user removed: console sessions ended"),
                // Harmless: every request re-checks its user.
                Err(e) => tracing::warn!(error = %e, "could not delete a removed user's console sessions"),
            }
            // User ids are never reused, so a layout left behind is only untidy.
            if let Err(e) = dashboards.remove_user(&tenant, user_id).await {
                tracing::warn!(error = %e, "could not delete a removed user's dashboard");
            }
        });
    });
    routes::router(routes::ConsoleState { app: state, sessions, dashboards })
}
