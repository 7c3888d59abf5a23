//! The route table. One module per dojot service behind the gateway.

mod auth;
mod catalog;
pub(crate) mod flows;
mod history;
mod ingest;
mod loadtests;
mod market;
mod ops;
mod seats;
mod stream;
mod x509;

use axum::Router;
use axum::routing::{get, post, put};

use crate::{ApiError, AppState};

pub fn router(state: AppState) -> Router {
    // socket.io (under /socket.io/) is a layer of its own: socketioxide serves it.
    let socketio = stream::socketio_layer(&state);
    Router::new()
        // auth (dojot: /auth, /auth/user via Kong)
        .route("/auth", post(auth::login))
        .route("/auth/user", get(auth::list_users).post(auth::create_user))
        .route("/auth/user/{id}", get(auth::get_user).put(auth::update_user).delete(auth::delete_user))
        .route("/auth/password/update", post(auth::change_password))
        .route("/auth/tokens", get(auth::list_tokens).post(auth::create_token))
        .route("/auth/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/tenant/settings", get(auth::tenant_settings).put(auth::update_tenant_settings))
        // device-manager
        .route(
            "/template",
            get(catalog::list_templates).post(catalog::create_template).delete(catalog::delete_templates),
        )
        .route(
            "/template/{id}",
            get(catalog::get_template).put(catalog::update_template).delete(catalog::delete_template),
        )
        .route("/device", get(catalog::list_devices).post(catalog::create_devices).delete(catalog::delete_devices))
        .route("/device/{id}", get(catalog::get_device).put(catalog::update_device).delete(catalog::delete_device))
        .route("/device/template/{tid}", get(catalog::devices_of_template))
        .route("/device/{id}/template/{tid}", post(catalog::add_template).delete(catalog::remove_template))
        .route("/device/{id}/actuate", put(catalog::actuate))
        .route("/device/{id}/secret", post(catalog::new_secret))
        .route("/device/{id}/latest", get(history::latest))
        // history
        .route("/history/device/{id}/history", get(history::history))
        .route("/history/device/{id}/latest", get(history::latest))
        // real time: kafka-ws, data-broker's socket.io token, Server-Sent Events
        .route("/kafka-ws/v1/ticket", get(stream::ticket).post(stream::ticket))
        .route("/kafka-ws/v1/topics/{topic}", get(stream::topic))
        .route("/stream/socketio", get(stream::socketio_token))
        .route("/stream/devices", get(stream::tenant_events))
        .route("/stream/devices/{id}", get(stream::device_events))
        // flowbroker
        .route("/flows/v1/flow", get(flows::list).post(flows::create).delete(flows::delete_all))
        .route("/flows/v1/flow/{id}", get(flows::get).put(flows::update).delete(flows::delete))
        .route("/flows/v1/flow/{id}/trace", get(flows::trace))
        .route("/flows/v1/flow/{id}/trace/stream", get(flows::trace_stream))
        // x509-identity-mgmt
        .route("/x509/v1/ca", get(x509::ca))
        .route("/x509/v1/ca/crl", get(x509::crl))
        .route("/x509/v1/certificates", get(x509::list).post(x509::issue))
        .route("/x509/v1/certificates/{fingerprint}", get(x509::get).patch(x509::set_owner).delete(x509::revoke))
        .route("/x509/v1/trusted-cas", get(x509::list_cas).post(x509::register_ca))
        .route("/x509/v1/trusted-cas/{fingerprint}", get(x509::get_ca).patch(x509::set_ca).delete(x509::remove_ca))
        // device agent over HTTP
        .route("/http-agent/v1/incoming-messages", post(ingest::incoming_message))
        // seat metering (fakeiot): POST /metrics shares its path with the Prometheus GET
        .route("/metrics", get(ops::metrics).post(seats::report_login))
        .route("//metrics", post(seats::report_login))
        .route("/seats/accounts", get(seats::accounts))
        .route("/seats/accounts/{id}", get(seats::account))
        .route("/seats/accounts/{id}/upgrade", post(seats::upgrade))
        // operations
        .route("/health", get(ops::health))
        .route("/ping", get(ops::ping).post(ops::ping))
        // the auction API (seed 003)
        .merge(market::routes())
        // load-test results (Ingot as a collector)
        .merge(loadtests::routes())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(socketio)
        // A failed request is logged where it fails (an internal error once, with its
        // cause; an outage once by the part that lost its database or bus), not again
        // per response: an outage would print an ERROR line per refused reading.
        // Spans name the path, never the query: stream tickets and socket.io tokens travel
        // in it (a WebSocket or EventSource cannot send a header), and never go to logs.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}
