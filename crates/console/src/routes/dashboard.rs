//! The signed-in user's dashboard layout (see [`crate::dashboard`]): read, and replaced
//! whole on every change (add, remove, reorder), checked by the server.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{ConsoleState, Csrf, SignedIn};
use crate::ConsoleError;
use crate::dashboard::Layout;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new().route("/console/api/dashboard", get(layout).put(save))
}

async fn layout(State(s): State<ConsoleState>, me: SignedIn) -> Result<Json<Layout>, ConsoleError> {
    Ok(Json(s.dashboards.get(&me.session.tenant, me.session.user_id).await?))
}

/// The whole layout, `{"widgets": [...]}`; answers it as kept.
async fn save(State(s): State<ConsoleState>, Csrf(me): Csrf, body: Bytes) -> Result<Json<Layout>, ConsoleError> {
    Ok(Json(s.dashboards.save(&me.session.tenant, me.session.user_id, &body).await?))
}
