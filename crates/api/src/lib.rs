//! The HTTP gateway: dojot v0.5's public API on one port.
//!
//! Handlers are thin: parse (extractors in [`extract`]), call a service, render. Every
//! error becomes an HTTP status and JSON body in one place, [`error`], in the shape the
//! dojot service behind that path used (`{"message","status"}` for device-manager and
//! auth, `{"title","description"}` for history).

pub mod drain;
pub mod error;
pub mod extract;
pub mod https;
pub mod ratelimit;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use auth::AuthService;
use axum::Router;
use devices::DeviceService;
use history::HistoryService;
use ingest::IngestService;
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
pub use routes::flows::trace_events;

/// Limits and settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How long a stream ticket (kafka-ws, socket.io, SSE) stays valid; dojot's was 60 s.
    pub ticket_ttl: Duration,
    /// Longest life of a WebSocket or SSE stream (kafka-ws: 7200 s, then close 4408).
    pub stream_max_life: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            ticket_ttl: Duration::from_secs(60),
            stream_max_life: Duration::from_secs(7200),
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<AuthService>,
    pub devices: Arc<DeviceService>,
    pub seats: Arc<seats::SeatService>,
    pub ingest: Arc<IngestService>,
    pub history: Arc<HistoryService>,
    /// Device certificates under the installation's CA (x509).
    pub certificates: Arc<pki::certificates::CertificateService>,
    /// Flows (flowbroker's API) and their engine.
    pub flows: Arc<flows::FlowService>,
    /// The auction API (seed 003).
    pub market: Arc<market::MarketService>,
    /// Load-test results pushed by agents.
    pub collector: Arc<load::collector::Collector>,
    /// The real-time hub every stream reads from.
    pub realtime: Arc<realtime::Hub>,
    pub metrics: Option<PrometheusHandle>,
    pub config: Arc<ApiConfig>,
    /// Per-token limit of `POST /metrics`.
    pub token_limiter: Arc<ratelimit::RateLimiter>,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}
