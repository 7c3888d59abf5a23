//! The bus: how agents hand readings and events to the services that consume them.
//!
//! Two streams: [`DeviceData`] (readings) and [`DeviceEvent`] (lifecycle and actuation).
//! A subscriber is either
//! - **durable** ([`Mode::Durable`]): it must [`Delivery::ack`] every message, and a
//!   publish of device data resolves only once every durable subscriber acked it. This is
//!   how "acknowledge to the device only after the data is committed" is kept: the
//!   history writer is a durable subscriber that acks after its transaction commits.
//!   A durable subscriber with a full queue slows publishers down (backpressure).
//!   Its name is a **durable group**: once subscribed, the group exists until the bus
//!   ends. If its consumer goes away (its task panicked, its thread died), every publish
//!   fails with [`BusError::NoConsumer`] until a consumer of the same name subscribes
//!   again: a message nobody will store must never be acknowledged to a device.
//!   [`Bus::dead_groups`] names such groups for health checks.
//! - **lossy** ([`Mode::Lossy`]): best effort (real-time streams). A full queue drops the
//!   message for that subscriber only, and counts it.
//!
//! A consumer that wants only some readings (flows, for tenants that have flows; the
//! real-time streams, for tenants someone watches) says so when it subscribes
//! ([`Bus::subscribe_data_where`]): on one node, the others then cost nothing at all,
//! neither a queue slot nor, for a durable one, an ack the publisher waits for. At full
//! MQTT ingest that was ~30% of the throughput (issue 16).
//!
//! Each subscriber sees messages in publish order, so readings of one device (published
//! by one connection) stay in order. [`MemoryBus`] is the in-process implementation;
//! [`NatsBus`] the cluster's, on NATS JetStream, where "durable" means stored in a
//! JetStream stream (see its module docs).

#[cfg(test)]
mod contract;
mod memory;
pub mod nats;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use model::{DeviceData, DeviceEvent};
use tokio::sync::{mpsc, oneshot};

pub use memory::MemoryBus;
pub use nats::{NatsBus, NatsOptions};

/// Which readings a consumer wants ([`Bus::subscribe_data_where`]).
pub type Interest = Arc<dyn Fn(&DeviceData) -> bool + Send + Sync>;

/// How a subscriber consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every message must be acked; publishers wait for the ack (see crate docs).
    Durable,
    /// Messages may be dropped when this subscriber falls behind.
    Lossy,
    /// Durable, and every node of a cluster gets every message: for what each node
    /// keeps in memory (its MQTT sessions, its caches). On one node the same as
    /// [`Mode::Durable`]; on NATS the group is per node and starts with the messages
    /// published after its first subscription (the node loads its state from the store).
    EachNode,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A durable subscriber dropped the message without acking it (e.g. its write failed).
    #[error("a durable consumer failed to process the message")]
    NotAcked,
    /// A durable group has no live consumer (see crate docs); nothing was queued.
    #[error("the durable consumer '{0}' is not running")]
    NoConsumer(String),
    /// The message broker (NATS) cannot be reached or did not store the message.
    #[error("the message bus is unavailable: {0}")]
    Unavailable(String),
}

/// A reading on the bus, not yet durable: resolves once it is (see [`Bus::send_data`]).
pub type Durable = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>>;

/// The bus as services see it.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Puts one reading on the bus after those sent before it, and returns as soon as it
    /// is there, with a future that resolves once it is durable (see crate docs). Whoever
    /// sends readings one after another and awaits their futures later keeps their order
    /// and lets them be stored together: an MQTT connection with several publishes in
    /// flight. Dropping the future does not take the reading back.
    async fn send_data(&self, data: DeviceData) -> Result<Durable, BusError>;
    /// Publishes one reading; resolves when it is durable.
    async fn publish_data(&self, data: DeviceData) -> Result<(), BusError> {
        self.send_data(data).await?.await
    }
    /// Publishes a lifecycle or actuation event; resolves once queued for every subscriber.
    async fn publish_event(&self, event: DeviceEvent) -> Result<(), BusError>;
    /// Subscribes to readings. `name` identifies the consumer in metrics.
    fn subscribe_data(&self, name: &str, mode: Mode) -> Subscription<DeviceData>;
    /// [`Bus::subscribe_data`] for a consumer that wants only the readings `interest`
    /// says yes to (asked at publish time, so it must be cheap). The in-process bus does
    /// not hand it the others, nor, if durable, wait for its ack of them; a cluster's bus
    /// may deliver everything (the consumer then judges each reading itself, as it must
    /// anyway: its interest can change while a reading is on its way).
    fn subscribe_data_where(&self, name: &str, mode: Mode, interest: Interest) -> Subscription<DeviceData> {
        let _ = interest;
        self.subscribe_data(name, mode)
    }
    /// Subscribes to events.
    fn subscribe_events(&self, name: &str, mode: Mode) -> Subscription<DeviceEvent>;
    /// Durable groups (`topic/name`) that have no live consumer now: while one is listed,
    /// publishes on its topic fail.
    fn dead_groups(&self) -> Vec<String>;
    /// Whether the bus's server is out of reach now (a NATS bus whose connection is
    /// down): then publishes fail, and health checks say so. An in-process bus never is.
    fn unreachable(&self) -> bool {
        false
    }
    /// Resolves once every subscription made so far receives what is published from
    /// now on, on any node (a NATS consumer is made after `subscribe_*` returns). For a
    /// node that subscribes, then loads its state from the store: no change in between
    /// is missed.
    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// One message handed to a subscriber.
#[derive(Debug)]
pub struct Delivery<T> {
    pub msg: Arc<T>,
    ack: Option<oneshot::Sender<()>>,
    /// The message's id, on a bus that may deliver a message more than once.
    id: Option<u128>,
}

impl<T> Delivery<T> {
    /// The message's id where the bus may deliver it twice (NATS: set by the publisher,
    /// the same on every redelivery), so that a consumer can store it once; `None` on a
    /// bus that delivers each message once to a group ([`MemoryBus`]).
    pub fn id(&self) -> Option<u128> {
        self.id
    }

    /// Confirms the message is processed (for durable subscribers: durably stored).
    /// Dropping a delivery without acking tells the publisher it failed.
    pub fn ack(mut self) {
        if let Some(tx) = self.ack.take() {
            let _ = tx.send(());
        }
    }
}

/// A subscriber's queue of deliveries.
pub struct Subscription<T> {
    rx: mpsc::Receiver<Delivery<T>>,
}

impl<T> Subscription<T> {
    /// The next delivery; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Delivery<T>> {
        self.rx.recv().await
    }

    /// Waits for at least one delivery, then takes up to `limit` that are ready.
    /// Returns 0 once the bus is gone.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery<T>>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// [`Self::recv_many`] for a thread outside the async runtime (it blocks the thread).
    pub fn blocking_recv_many(&mut self, buf: &mut Vec<Delivery<T>>, limit: usize) -> usize {
        self.rx.blocking_recv_many(buf, limit)
    }
}

impl Subscription<DeviceEvent> {
    /// How a service of a cluster node follows the other nodes' changes: spawns a task
    /// that runs `apply` on each event for as long as `target` lives. An event `apply`
    /// fails on (the store out of reach) is left unacknowledged and comes again.
    pub fn follow<T, E, F, Fut>(mut self, target: std::sync::Weak<T>, apply: F)
    where
        T: Send + Sync + 'static,
        E: std::fmt::Display,
        F: Fn(Arc<T>, Arc<DeviceEvent>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
    {
        tokio::spawn(async move {
            while let Some(delivery) = self.recv().await {
                let Some(target) = target.upgrade() else { return };
                match apply(target, delivery.msg.clone()).await {
                    Ok(()) => delivery.ack(),
                    Err(e) => tracing::warn!(
                        error = %e,
                        event = delivery.msg.kind.as_str(),
                        "cannot apply another node's change yet; it comes again"
                    ),
                }
            }
        });
    }
}
