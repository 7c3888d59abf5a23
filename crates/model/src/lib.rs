//! Ingot's domain model: the types every room shares, and the rules that need no I/O.
//!
//! - [`DeviceData`]: the one message every device agent produces (dojot's `device-data`).
//! - [`DeviceEvent`]: lifecycle events of devices (dojot's `dojot.device-manager.device`).
//! - [`topic`]: the MQTT topic forms devices use (`tenant:device/attrs`, `/tenant/device/attrs`).
//! - [`time`]: the timestamp forms devices send (ms, s, ISO 8601).
//! - [`account`]: the auth API's request bodies (users, passwords, tokens, tenant settings).

pub mod account;
pub mod catalog;
pub mod data;
pub mod event;
pub mod ids;
pub mod seats;
pub mod secret;
pub mod time;
pub mod topic;

pub use data::{DeviceData, PayloadError};
pub use event::{DeviceEvent, EventKind};
pub use ids::{DeviceRef, IdError};
