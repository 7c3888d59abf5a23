//! History: where readings are kept and how they are read back.
//!
//! - [`writer::spawn`] starts the durable bus consumer, a thread of its own: it takes whatever readings are queued
//!   (up to a batch limit), writes them in one transaction and only then acks them, which
//!   releases the devices' acknowledgements (group commit).
//! - [`query`] implements dojot's `/history/device/{id}/history` parameters exactly.
//! - [`retention`] deletes readings older than each tenant's retention in the background.
//! - [`HistoryService`] is what the API reads history through.

pub mod query;
pub mod retention;
mod service;
pub mod writer;

pub use query::{HistoryParams, HistoryResult, Range, RangeQuery};
pub use service::HistoryService;
pub use store::history::Point;

/// The one error type of the history room.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
