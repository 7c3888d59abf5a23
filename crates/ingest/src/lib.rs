//! Device-facing agents.
//!
//! [`IngestService`] holds the logic every agent shares: authenticate a device, check a
//! topic, turn a payload into [`model::DeviceData`] and publish it on the bus, waiting
//! until it is durable. Protocol modules (`mqtt`, `http`) stay thin and call it.

pub mod mqtt;
mod service;

pub use service::{DeviceAuthError, DeviceDirectory, DeviceLogin, IngestError, IngestService};
