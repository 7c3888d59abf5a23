//! Device-facing agents.
//!
//! [`IngestService`] holds the logic every agent shares: authenticate a device, check a
//! topic, turn a payload into [`model::DeviceData`] and publish it on the bus, waiting
//! until it is durable. Protocol modules (`mqtt`, `http`) stay thin and call it.

mod budget;
pub mod mqtt;
mod service;

pub use service::{
    CertificateRefusal, CertificateRegistry, ClientCertificate, DEFAULT_MAX_ATTRS_PER_DEVICE, DeviceAuth,
    DeviceAuthError, DeviceDirectory, DeviceLogin, IngestError, IngestService, Submitted,
};
