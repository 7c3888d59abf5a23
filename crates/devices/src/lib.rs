//! Templates and devices (dojot's device-manager), device credentials and actuation.
//!
//! [`DeviceService`] keeps every tenant's catalog in memory and writes each change
//! through to the store in one transaction before applying it in memory, so a read after
//! a write always sees it (dojot #543: actuation right after creation was lost) and
//! device agents check credentials without a database round trip.

mod query;
mod service;

pub use query::{ListQuery, Page, Pagination};
pub use service::{CreatedDevices, DeviceService, DevicesConfig};

pub use model::catalog::CatalogError;

/// The one error type of the devices room.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("could not publish the event: {0}")]
    Bus(#[from] bus::BusError),
    #[error("Failed to generate unique device_id")]
    IdSpaceExhausted,
    /// Another node kept changing the same part of the catalog while this change was
    /// tried; nothing was written.
    #[error("the catalog was changed by another request meanwhile ({0}); retry")]
    Stale(store::catalog::CatalogConflict),
}
