//! [`MemoryBus`]: the in-process bus of a single node.
//!
//! The subscriber list is read on every publish and changed only when somebody
//! subscribes (or a lossy subscriber is found gone), so it is an [`ArcSwap`]: a publish
//! takes a reference-counted snapshot without any lock, and changes are serialised by a
//! mutex that publishers never touch.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge};
use model::{DeviceData, DeviceEvent};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::{Bus, BusError, Delivery, Durable, Interest, Mode, Subscription};

/// In-process bus: one bounded queue per subscriber.
#[derive(Clone)]
pub struct MemoryBus {
    data: Arc<Topic<DeviceData>>,
    events: Arc<Topic<DeviceEvent>>,
    capacity: usize,
}

struct Topic<T> {
    name: &'static str,
    subscribers: ArcSwap<Vec<Subscriber<T>>>,
    /// Serialises changes to `subscribers` (publishers only read it).
    changes: Mutex<()>,
}

/// Which messages a subscriber wants ([`Interest`] for any topic).
type Wants<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

struct Subscriber<T> {
    name: String,
    tx: mpsc::Sender<Delivery<T>>,
    mode: Mode,
    /// The messages it wants (all without).
    interest: Option<Wants<T>>,
    queued: Gauge,
    dropped: Counter,
}

impl<T> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            tx: self.tx.clone(),
            mode: self.mode,
            interest: self.interest.clone(),
            queued: self.queued.clone(),
            dropped: self.dropped.clone(),
        }
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
        Arc::new(Self { name, subscribers: ArcSwap::from_pointee(Vec::new()), changes: Mutex::new(()) })
    }

    /// Runs `f` on a copy of the subscriber list and publishes the result.
    fn change(&self, f: impl FnOnce(&mut Vec<Subscriber<T>>)) {
        // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
        let _guard = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let mut subs = Vec::clone(&self.subscribers.load());
        f(&mut subs);
        self.subscribers.store(Arc::new(subs));
    }

    /// A durable subscription replaces any earlier one of the same name: one consumer
    /// per durable group, the newest (a restarted consumer takes its group back).
    fn subscribe(&self, consumer: &str, mode: Mode, capacity: usize, interest: Option<Wants<T>>) -> Subscription<T> {
        // One process is one node: each node's group is the group.
        let mode = if mode == Mode::EachNode { Mode::Durable } else { mode };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let labels = [("topic", self.name.to_string()), ("consumer", consumer.to_string())];
        let sub = Subscriber {
            name: consumer.to_string(),
            tx,
            mode,
            interest,
            queued: metrics::gauge!("ingot_bus_queued_messages", &labels),
            dropped: metrics::counter!("ingot_bus_dropped_total", &labels),
        };
        self.change(|subs| {
            subs.retain(|s| match s.mode {
                Mode::Durable | Mode::EachNode => !(mode == Mode::Durable && s.name == consumer),
                Mode::Lossy => !s.tx.is_closed(),
            });
            subs.push(sub);
        });
        Subscription { rx }
    }

    fn forget_closed_lossy(&self) {
        self.change(|subs| subs.retain(|s| s.mode == Mode::Durable || !s.tx.is_closed()));
    }

    fn dead_groups(&self) -> impl Iterator<Item = String> {
        let subs = self.subscribers.load_full();
        let dead: Vec<String> = subs
            .iter()
            .filter(|s| s.mode == Mode::Durable && s.tx.is_closed())
            .map(|s| format!("{}/{}", self.name, s.name))
            .collect();
        dead.into_iter()
    }

    /// Queues `msg` for every subscriber; returns the ack receivers of durable ones.
    /// Fails, queueing nothing, when a durable group has no live consumer.
    async fn publish(&self, msg: T) -> Result<Vec<oneshot::Receiver<()>>, BusError> {
        let subs = self.subscribers.load_full();
        if let Some(dead) = subs.iter().find(|s| s.mode == Mode::Durable && s.tx.is_closed()) {
            return Err(BusError::NoConsumer(dead.name.clone()));
        }
        let msg = Arc::new(msg);
        let mut acks = Vec::new();
        for sub in subs.iter() {
            if sub.interest.as_ref().is_some_and(|wants| !wants(&msg)) {
                continue;
            }
            match sub.mode {
                Mode::Durable | Mode::EachNode => {
                    let (ack, rx) = oneshot::channel();
                    let delivery = Delivery { msg: msg.clone(), ack: Some(ack), id: None };
                    // Closed since the check above: the consumer died meanwhile.
                    sub.tx.send(delivery).await.map_err(|_| BusError::NoConsumer(sub.name.clone()))?;
                    acks.push(rx);
                }
                Mode::Lossy => match sub.tx.try_send(Delivery { msg: msg.clone(), ack: None, id: None }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => sub.dropped.increment(1),
                    Err(TrySendError::Closed(_)) => self.forget_closed_lossy(),
                },
            }
            sub.queued.set((sub.tx.max_capacity() - sub.tx.capacity()) as f64);
        }
        Ok(acks)
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn send_data(&self, data: DeviceData) -> Result<Durable, BusError> {
        let acks = self.data.publish(data).await?;
        Ok(Box::pin(async move {
            for ack in acks {
                ack.await.map_err(|_| BusError::NotAcked)?;
            }
            Ok(())
        }))
    }

    async fn publish_event(&self, event: DeviceEvent) -> Result<(), BusError> {
        // Events are not waited for: the API answers once every consumer has them queued.
        self.events.publish(event).await.map(drop)
    }

    fn subscribe_data(&self, name: &str, mode: Mode) -> Subscription<DeviceData> {
        self.data.subscribe(name, mode, self.capacity, None)
    }

    fn subscribe_data_where(&self, name: &str, mode: Mode, interest: Interest) -> Subscription<DeviceData> {
        self.data.subscribe(name, mode, self.capacity, Some(interest))
    }

    fn subscribe_events(&self, name: &str, mode: Mode) -> Subscription<DeviceEvent> {
        self.events.subscribe(name, mode, self.capacity, None)
    }

    fn dead_groups(&self) -> Vec<String> {
        self.data.dead_groups().chain(self.events.dead_groups()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use model::{DeviceData, DeviceEvent};
    use serde_json::Map;
    use std::time::Duration;

    fn reading(n: i64) -> DeviceData {
        let mut attrs = Map::new();
        attrs.insert("n".into(), n.into());
        DeviceData::new("t", "d", Utc::now(), attrs)
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
    async fn a_reading_sent_ahead_is_durable_only_once_acked() {
        use futures_util::FutureExt;
        let bus = MemoryBus::new(16);
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        let mut durable = bus.send_data(reading(1)).await.unwrap();
        let d = sub.recv().await.unwrap();
        assert!((&mut durable).now_or_never().is_none(), "not durable before the ack");
        d.ack();
        durable.await.unwrap();
        // A consumer that drops it unacked fails it.
        let durable = bus.send_data(reading(2)).await.unwrap();
        drop(sub.recv().await.unwrap());
        assert!(matches!(durable.await, Err(BusError::NotAcked)));
    }

    /// A consumer is handed only what it wants, and a durable one's ack is waited for
    /// only on those.
    #[tokio::test]
    async fn a_consumer_is_handed_only_the_readings_it_wants() {
        let bus = MemoryBus::new(16);
        let mut all = bus.subscribe_data("history", Mode::Durable);
        let wants: Interest = Arc::new(|d: &DeviceData| d.tenant == "watched");
        let mut some = bus.subscribe_data_where("flows", Mode::Durable, wants.clone());
        let mut lossy = bus.subscribe_data_where("realtime", Mode::Lossy, wants);
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(reading(1)).await });
        all.recv().await.unwrap().ack();
        let done = tokio::time::timeout(Duration::from_secs(5), publish).await;
        done.expect("the publish waited for a consumer that does not want the reading").unwrap().unwrap();

        let watched = DeviceData { tenant: "watched".into(), ..reading(2) };
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(watched).await });
        all.recv().await.unwrap().ack();
        let d = some.recv().await.unwrap();
        assert_eq!((d.msg.tenant.as_str(), &d.msg.attrs["n"]), ("watched", &serde_json::json!(2)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!publish.is_finished(), "publish must wait for the ack of a consumer that wants it");
        d.ack();
        publish.await.unwrap().unwrap();
        assert_eq!(lossy.recv().await.unwrap().msg.attrs["n"], serde_json::json!(2), "the first it gets");
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
    async fn closed_lossy_subscribers_are_forgotten() {
        let bus = MemoryBus::new(2);
        drop(bus.subscribe_data("gone", Mode::Lossy));
        bus.publish_data(reading(1)).await.unwrap();
        assert!(bus.data.subscribers.load().is_empty());
        assert!(bus.dead_groups().is_empty());
    }

    #[tokio::test]
    async fn a_durable_group_without_consumer_fails_publishes_until_it_resubscribes() {
        let bus = MemoryBus::new(16);
        let mut lossy = bus.subscribe_data("ws", Mode::Lossy);
        drop(bus.subscribe_data("history", Mode::Durable));
        let e = bus.publish_data(reading(1)).await.unwrap_err();
        assert!(matches!(e, BusError::NoConsumer(ref n) if n == "history"), "{e:?}");
        assert!(lossy.rx.try_recv().is_err(), "a refused publish reaches nobody");
        assert_eq!(bus.dead_groups(), ["device-data/history"]);

        // A restarted consumer takes the group back.
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        assert!(bus.dead_groups().is_empty());
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(reading(2)).await });
        sub.recv().await.unwrap().ack();
        publish.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_consumer_dying_with_queued_messages_fails_their_publishes() {
        let bus = MemoryBus::new(16);
        let sub = bus.subscribe_data("history", Mode::Durable);
        let b = bus.clone();
        let publish = tokio::spawn(async move { b.publish_data(reading(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sub); // queued, never acked: the consumer is gone
        assert!(matches!(publish.await.unwrap(), Err(BusError::NotAcked)));
        assert!(matches!(bus.publish_data(reading(2)).await, Err(BusError::NoConsumer(_))));
        assert!(matches!(bus.publish_event(DeviceEvent::configure("t", "d", Map::new(), Utc::now())).await, Ok(())));
    }
}
