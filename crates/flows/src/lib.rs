//! dojot's flows (flowbroker): flow documents made of node-red nodes, and the engine that
//! runs them on the readings and device events of the bus.
//!
//! - [`context`] keeps what flows remember between messages (tenant, flow, node);
//! - [`document`] compiles a flow's node list into a graph, refusing what would not run;
//! - [`nodes`] holds the node types, each parsed from its saved settings and run on a
//!   message (no I/O);
//! - [`path`] reads and writes message properties as flowbroker's nodes did;
//! - [`engine`] is the durable bus consumer that runs them and carries out their outputs;
//! - [`service`] keeps flows in the store (the `/flows/v1/flow` API) and tells the engine,
//!   on every node of a cluster;
//! - [`trace`] is the debugger: what each node of a traced flow received, sent and failed on.

pub mod context;
pub mod document;
pub mod engine;
pub mod nodes;
pub mod path;
pub mod service;
pub mod trace;

use serde_json::{Map, Value};

pub use engine::{EngineConfig, FlowEngine};
pub use service::FlowService;

/// The one error type of the flows room.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The flow document breaks a rule (400, dojot's "Given flow is invalid" and why).
    #[error("{0}")]
    Invalid(String),
    /// A request without one of dojot's mandatory fields (400).
    #[error("Missing mandatory field: {0}")]
    Missing(&'static str),
    /// No such flow in the tenant (404).
    #[error("Unknown flow: {0}")]
    UnknownFlow(String),
    /// The flow's trace switch is off (409).
    #[error("tracing is off for flow {0}: PUT {{\"trace\": true}} on it first")]
    TraceOff(String),
    /// The tenant has as many flows as it may (400).
    #[error("a tenant may have at most {0} flows (--max-flows)")]
    TooMany(u64),
    /// A node could not handle a message: its branch stops (a run-time error, logged).
    #[error("{0}")]
    Node(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// What an output node asks the engine to do once the run is over.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish `attrs` as a reading of `device` (multi device out).
    Publish { device: String, attrs: Map<String, Value> },
    /// Send `attrs` to `device` as actuation (multi actuate).
    Actuate { device: String, attrs: Map<String, Value> },
}

/// A flow ready to run.
#[derive(Debug)]
pub struct CompiledFlow {
    pub id: String,
    pub enabled: bool,
    pub graph: document::Graph,
    /// Where its runs are traced, when its trace switch is on.
    pub trace: Option<std::sync::Arc<trace::Trace>>,
}
