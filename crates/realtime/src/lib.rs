//! Real-time streams: what a browser or an application sees as readings arrive.
//!
//! - [`hub`]: one lossy bus subscription per node fanned out to every open stream, each
//!   with a bounded queue (a slow client is ended, never waited for), per-device order,
//!   per-user and total limits, and a bounded replay window for resuming;
//! - [`filter`]: dojot kafka-ws's `fields` and `where` (no I/O);
//! - [`message`]: dojot's message shapes;
//! - the protocols, thin: [`kafka_ws`] (plain WebSocket, kafka-ws's close codes),
//!   [`socketio`] (data-broker's socket.io 2 stream, on socketioxide) and [`sse`]
//!   (Server-Sent Events with `Last-Event-ID`).
//!
//! Who may open which stream (JWTs, tickets) is decided by the routes in `api` before a
//! stream is opened; a stream only ever carries its own tenant's messages.

pub mod filter;
pub mod hub;
pub mod kafka_ws;
pub mod message;
pub mod socketio;
pub mod sse;

pub use filter::{Filter, FilterError};
pub use hub::{End, EventId, Hub, HubConfig, HubError, Item, Message, Request, Stream, Topic};
pub use kafka_ws::Holder;
