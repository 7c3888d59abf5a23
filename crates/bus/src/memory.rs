//! [`MemoryBus`]: the in-process bus of a single node.

use std::sync::{Arc, RwLock};

use metrics::{Counter, Gauge};
use model::{DeviceData, DeviceEvent};
use tokio::sync::{mpsc, oneshot};

use crate::{Bus, BusError, Delivery, Mode, Subscription};

/// In-process bus: one bounded queue per subscriber.
#[derive(Clone)]
pub struct MemoryBus {
    data: Arc<Topic<DeviceData>>,
    events: Arc<Topic<DeviceEvent>>,
    capacity: usize,
}

struct Topic<T> {
    name: &'static str,
    subscribers: RwLock<Vec<Subscriber<T>>>,
}

struct Subscriber<T> {
    tx: mpsc::Sender<Delivery<T>>,
    mode: Mode,
    queued: Gauge,
    dropped: Counter,
}

impl<T> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), mode: self.mode, queued: self.queued.clone(), dropped: self.dropped.clone() }
    }
}

impl MemoryBus {
    /// A bus whose subscriber queues hold `capacity` messages each.
    pub fn new(capacity: usize) -> Self {
        Self { data: Topic::new("device-data"), events: Topic::new("device-events"), capacity }
    }
}

impl<T: Send + Sync + 'static> Topic<T> {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, subscribers: RwLock::new(Vec::new()) })
    }

    fn subscribe(&self, consumer: &str, mode: Mode, capacity: usize) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let labels = [("topic", self.name.to_string()), ("consumer", consumer.to_string())];
        let sub = Subscriber {
            tx,
            mode,
            queued: metrics::gauge!("ingot_bus_queued_messages", &labels),
            dropped: metrics::counter!("ingot_bus_dropped_total", &labels),
        };
        self.subscribers.write().expect("bus lock").push(sub);
        Subscription { rx }
    }

    fn snapshot(&self) -> Vec<Subscriber<T>> {
        let mut subs = self.subscribers.write().expect("bus lock");
        subs.retain(|s| !s.tx.is_closed());
        subs.clone()
    }

    /// Queues `msg` for every subscriber; returns the ack receivers of durable ones.
    async fn publish(&self, msg: T) -> Result<Vec<oneshot::Receiver<()>>, BusError> {
        let msg = Arc::new(msg);
        let mut acks = Vec::new();
        for sub in self.snapshot() {
            match sub.mode {
                Mode::Durable => {
                    let (ack, rx) = oneshot::channel();
                    let delivery = Delivery { msg: msg.clone(), ack: Some(ack) };
                    sub.tx.send(delivery).await.map_err(|_| BusError::Closed)?;
                    acks.push(rx);
                }
                Mode::Lossy => {
                    if sub.tx.try_send(Delivery { msg: msg.clone(), ack: None }).is_err() {
                        sub.dropped.increment(1);
                    }
                }
            }
            sub.queued.set((sub.tx.max_capacity() - sub.tx.capacity()) as f64);
        }
        Ok(acks)
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn publish_data(&self, data: DeviceData) -> Result<(), BusError> {
        for ack in self.data.publish(data).await? {
            ack.await.map_err(|_| BusError::NotAcked)?;
        }
        Ok(())
    }

    async fn publish_event(&self, event: DeviceEvent) -> Result<(), BusError> {
        // Events are not waited for: the API answers once every consumer has them queued.
        self.events.publish(event).await.map(drop)
    }

    fn subscribe_data(&self, name: &str, mode: Mode) -> Subscription<DeviceData> {
        self.data.subscribe(name, mode, self.capacity)
    }

    fn subscribe_events(&self, name: &str, mode: Mode) -> Subscription<DeviceEvent> {
        self.events.subscribe(name, mode, self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use model::DeviceData;
    use serde_json::Map;
    use std::time::Duration;

    fn reading(n: i64) -> DeviceData {
        let mut attrs = Map::new();
        attrs.insert("n".into(), n.into());
        DeviceData { tenant: "t".into(), device_id: "d".into(), ts: Utc::now(), attrs }
    }

    #[tokio::test]
    async fn publish_waits_for_durable_ack() {
        let bus = MemoryBus::new(16);
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(reading(1)).await });
        let d = sub.recv().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!publish.is_finished(), "publish must wait for the ack");
        d.ack();
        publish.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn dropped_delivery_fails_the_publish() {
        let bus = MemoryBus::new(16);
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(reading(1)).await });
        drop(sub.recv().await.unwrap());
        assert!(matches!(publish.await.unwrap(), Err(BusError::NotAcked)));
    }

    #[tokio::test]
    async fn lossy_subscriber_drops_when_full_and_keeps_order() {
        let bus = MemoryBus::new(2);
        let mut lossy = bus.subscribe_data("ws", Mode::Lossy);
        for n in 0..5 {
            bus.publish_data(reading(n)).await.unwrap();
        }
        let mut got = Vec::new();
        while let Ok(d) = lossy.rx.try_recv() {
            got.push(d.msg.attrs["n"].as_i64().unwrap());
        }
        assert_eq!(got, vec![0, 1]);
    }

    #[tokio::test]
    async fn closed_subscribers_are_forgotten() {
        let bus = MemoryBus::new(2);
        drop(bus.subscribe_data("gone", Mode::Durable));
        bus.publish_data(reading(1)).await.unwrap();
    }
}
