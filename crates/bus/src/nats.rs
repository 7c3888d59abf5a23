//! [`NatsBus`]: the bus of a cluster, on NATS JetStream, so that several `ingot serve`
//! nodes share one stream of readings and events (issue 10).
//!
//! ## What "durable" means here
//!
//! A publish resolves once JetStream acknowledged it: the message is in a file-backed
//! stream (replicated as configured), so a device's acknowledgement no longer waits for
//! the history writer, which consumes the stream afterwards. That is the cluster's
//! contract: acknowledged means stored in JetStream; history catches up, also after the
//! database or a node was away.
//!
//! - Two streams, `<PREFIX>_DATA` (subjects `<prefix>.data.<tenant>.<device>`) and
//!   `<PREFIX>_EVENTS` (`<prefix>.events.<tenant>`), file storage. Retention by interest:
//!   a message stays until every durable consumer acked it. A stream at its byte limit
//!   refuses publishes (`DiscardPolicy::New`) rather than dropping unconsumed messages.
//! - A **durable** subscriber is a JetStream pull consumer named after its group: every
//!   node subscribing with the same name shares it (each message to one of them), it
//!   outlives the process, and what a node took but did not ack is redelivered after
//!   `ack_wait`. A delivery dropped without [`crate::Delivery::ack`] is NAKed with a
//!   delay, so a failing writer is retried, not spun.
//! - A **lossy** subscriber is a plain NATS subscription on the same subjects: live
//!   messages only, dropped when its queue is full (real-time streams).
//! - Acknowledgements go back in delivery order, from one task per subscription.
//!
//! Subject tokens may not hold `.`, `*`, `>` or whitespace: a tenant or device id with
//! any character outside `[A-Za-z0-9_-]` is written as `~` and its hex ([`token`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use model::{DeviceData, DeviceEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::{Bus, BusError, Delivery, Durable, Mode, Subscription};

/// Settings of [`NatsBus::connect`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://HOST:PORT` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// Prefix of subjects, stream and consumer names, so that installations can share
    /// one NATS: `ingot` gives subjects `ingot.data.…` and streams `INGOT_DATA`, ….
    pub prefix: String,
    /// Copies of each stream in a NATS cluster (1 for a single server).
    pub replicas: usize,
    /// Most bytes each stream holds; publishes beyond are refused.
    pub max_bytes: i64,
    /// How long a durable consumer may hold a message unacknowledged before it goes to
    /// another (or the same) node again.
    pub ack_wait: Duration,
    /// Messages a durable group may hold unacknowledged at once.
    pub max_ack_pending: i64,
    /// Deliveries queued in this process per subscriber.
    pub capacity: usize,
    /// This node's name in the cluster: names its [`Mode::EachNode`] consumers. Must be
    /// unique per node and stable across its restarts.
    pub node: String,
    /// A [`Mode::EachNode`] consumer whose node has not pulled for this long is deleted
    /// by NATS (the node is gone for good; it would hold every event for ever).
    pub node_gone_after: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "ingot".into(),
            replicas: 1,
            max_bytes: 4 << 30,
            ack_wait: Duration::from_secs(10),
            max_ack_pending: 65_536,
            capacity: 65_536,
            node: "node".into(),
            node_gone_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The JetStream bus; cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    options: NatsOptions,
    /// Durable groups of this process (`topic/name`) and whether their consumer runs.
    groups: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
    /// Per topic, durable groups subscribed here whose JetStream consumer does not exist
    /// yet: publishes wait for 0 (see [`NatsBus::publish`]).
    unmade: [tokio::sync::watch::Sender<usize>; 2],
}

/// One of the two streams.
#[derive(Clone, Copy)]
enum Topic {
    Data,
    Events,
}

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Topic::Data => "device-data",
            Topic::Events => "device-events",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn word(self) -> &'static str {
        match self {
            Topic::Data => "data",
            Topic::Events => "events",
        }
    }
}

/// `url` without user and password, for messages: `nats://user:pw@host:4222` gives
/// `nats://host:4222`.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &one[..scheme + 3], &one[at + 1..]),
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {e}"))
}

impl NatsBus {
    /// Connects and makes sure both streams exist (created, or kept as they are).
    pub async fn connect(options: NatsOptions) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("ingot")
            .connection_timeout(Duration::from_secs(5))
            .connect(options.url.as_str())
            .await
            .map_err(|e| unavailable(&format!("cannot connect to NATS at {}", redacted(&options.url)), e))?;
        let js = jetstream::new(client.clone());
        let unmade = [tokio::sync::watch::Sender::new(0), tokio::sync::watch::Sender::new(0)];
        let bus = Self { inner: Arc::new(Inner { client, js, options, groups: Mutex::default(), unmade }) };
        for topic in [Topic::Data, Topic::Events] {
            let config = stream::Config {
                name: bus.stream(topic),
                subjects: vec![format!("{}.{}.>", bus.inner.options.prefix, topic.word())],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Interest,
                discard: stream::DiscardPolicy::New,
                num_replicas: bus.inner.options.replicas.max(1),
                max_bytes: bus.inner.options.max_bytes,
                ..Default::default()
            };
            bus.inner
                .js
                .get_or_create_stream(config)
                .await
                .map_err(|e| unavailable(&format!("cannot create the JetStream stream {}", bus.stream(topic)), e))?;
        }
        Ok(bus)
    }

    /// Waits (at most 10 s) until every durable group subscribed on `topic` in this
    /// process has its JetStream consumer.
    async fn consumers_made(&self, topic: Topic) -> Result<(), BusError> {
        let mut unmade = self.inner.unmade[topic.index()].subscribe();
        if *unmade.borrow() > 0 {
            tokio::time::timeout(Duration::from_secs(10), unmade.wait_for(|n| *n == 0))
                .await
                .map_err(|_| BusError::Unavailable("a durable consumer could not be created in 10 s".into()))?
                .map_err(|_| BusError::Unavailable("the bus is gone".into()))?;
        }
        Ok(())
    }

    fn stream(&self, topic: Topic) -> String {
        format!("{}_{}", self.inner.options.prefix.to_uppercase(), topic.word().to_uppercase())
    }

    fn subject(&self, topic: Topic, tokens: &[&str]) -> String {
        let mut subject = format!("{}.{}", self.inner.options.prefix, topic.word());
        for t in tokens {
            subject.push('.');
            subject.push_str(&token(t));
        }
        subject
    }

    /// Publishes once every durable group subscribed in this process has its consumer:
    /// the streams keep a message only for the consumers that exist when it arrives
    /// (retention by interest), so a reading published in the moment between a group's
    /// subscription and the creation of its consumer would be acknowledged and kept for
    /// nobody. After the first start the consumers exist already and this costs nothing.
    /// Each message gets a random 128-bit id (`Nats-Msg-Id`): JetStream drops a second
    /// publish of it within its duplicate window, and consumers get it with every
    /// delivery ([`Delivery::id`]) to store a redelivered message once.
    async fn publish<T: Serialize>(&self, topic: Topic, subject: String, msg: &T) -> Result<(), BusError> {
        self.send(topic, subject, msg).await?.await
    }

    /// Hands a message to the NATS client, in order after those handed to it before;
    /// the future resolves once JetStream stored it.
    async fn send<T: Serialize>(&self, topic: Topic, subject: String, msg: &T) -> Result<Durable, BusError> {
        self.consumers_made(topic).await?;
        let payload = serde_json::to_vec(msg).map_err(|e| unavailable("cannot encode the message", e))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, model::secret::random_hex(16).as_str());
        let ack = self
            .inner
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| unavailable("publish", e))?;
        Ok(Box::pin(async move {
            ack.await.map_err(|e| unavailable("JetStream did not store the message", e))?;
            Ok(())
        }))
    }

    fn subscribe<T>(&self, topic: Topic, name: &str, mode: Mode) -> Subscription<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel(self.inner.options.capacity.max(1));
        let bus = self.clone();
        match mode {
            Mode::Durable | Mode::EachNode => {
                let alive = Arc::new(AtomicBool::new(false));
                let group = format!("{}/{name}", topic.name());
                bus.inner.groups.lock().expect("groups lock").insert(group, alive.clone());
                let mut consumer = format!("{}-{}-{name}", self.inner.options.prefix, topic.word());
                let each_node = mode == Mode::EachNode;
                if each_node {
                    consumer = format!("{consumer}-{}", token(&self.inner.options.node));
                }
                self.inner.unmade[topic.index()].send_modify(|n| *n += 1);
                tokio::spawn(async move { bus.run_durable(topic, consumer, each_node, tx, alive).await });
            }
            Mode::Lossy => {
                let subject = format!("{}.{}.>", self.inner.options.prefix, topic.word());
                let name = name.to_string();
                self.inner.unmade[topic.index()].send_modify(|n| *n += 1);
                tokio::spawn(async move { bus.run_lossy(topic, subject, name, tx).await });
            }
        }
        Subscription { rx }
    }

    /// Feeds a durable subscription until it is dropped, reconnecting the consumer after
    /// any failure.
    async fn run_durable<T>(
        self,
        topic: Topic,
        consumer: String,
        each_node: bool,
        tx: mpsc::Sender<Delivery<T>>,
        alive: Arc<AtomicBool>,
    ) where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let mut backoff = Duration::from_millis(200);
        let mut made = false;
        loop {
            let result = self.consume(topic, &consumer, each_node, &tx, &alive, &mut made).await;
            alive.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => return, // the subscription is gone
                Err(e) => {
                    tracing::warn!(consumer, error = %e, retry_in = ?backoff, "JetStream consumer failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    }

    async fn consume<T>(
        &self,
        topic: Topic,
        name: &str,
        each_node: bool,
        tx: &mpsc::Sender<Delivery<T>>,
        alive: &AtomicBool,
        made: &mut bool,
    ) -> Result<(), BusError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let stream = self.inner.js.get_stream(self.stream(topic)).await.map_err(|e| unavailable("stream", e))?;
        let mut config = consumer::pull::Config {
            durable_name: Some(name.to_string()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.inner.options.ack_wait,
            max_ack_pending: self.inner.options.max_ack_pending,
            ..Default::default()
        };
        if each_node {
            // A node's own group: from now on (its state comes from the store), and gone
            // with the node.
            config.deliver_policy = consumer::DeliverPolicy::New;
            config.inactive_threshold = self.inner.options.node_gone_after;
        }
        let consumer = stream.get_or_create_consumer(name, config).await.map_err(|e| unavailable("consumer", e))?;
        if !std::mem::replace(made, true) {
            self.inner.unmade[topic.index()].send_modify(|n| *n -= 1);
        }
        let mut messages = consumer.messages().await.map_err(|e| unavailable("pull", e))?;
        alive.store(true, Ordering::Relaxed);
        // Acks in delivery order, so a slow write never lets a later ack overtake it.
        let (acks, mut pending) = mpsc::unbounded_channel::<(oneshot::Receiver<()>, jetstream::Message)>();
        tokio::spawn(async move {
            while let Some((done, message)) = pending.recv().await {
                let kind = match done.await {
                    Ok(()) => AckKind::Ack,
                    Err(_) => AckKind::Nak(Some(Duration::from_secs(1))),
                };
                if let Err(e) = message.ack_with(kind).await {
                    tracing::warn!(error = %e, "could not acknowledge a JetStream message; it will come again");
                }
            }
        });
        loop {
            let message = tokio::select! {
                next = messages.next() => match next {
                    Some(m) => m.map_err(|e| unavailable("receive", e))?,
                    None => break,
                },
                // Unsubscribed: stop pulling at once (what this process pulled and did not
                // hand out goes to another consumer after `ack_wait`).
                () = tx.closed() => return Ok(()),
            };
            let value: T = match serde_json::from_slice(&message.payload) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(subject = %message.subject, error = %e, "undecodable message on the bus; dropped");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let (done, ack) = oneshot::channel();
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .and_then(|v| u128::from_str_radix(v.as_str(), 16).ok());
            if tx.send(Delivery { msg: Arc::new(value), ack: Some(done), id }).await.is_err() {
                let _ = message.ack_with(AckKind::Nak(None)).await; // unsubscribed: to another, now
                return Ok(());
            }
            let _ = acks.send((ack, message));
        }
        Err(BusError::Unavailable("the JetStream consumer's message stream ended".into()))
    }

    async fn run_lossy<T>(self, topic: Topic, subject: String, name: String, tx: mpsc::Sender<Delivery<T>>)
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let subscribed = self.inner.client.subscribe(subject.clone()).await;
        // The server has the subscription before `ready` says so: a flush may only write it
        // out, so also make a request on the same connection and wait for its answer (the
        // server handles one connection's messages in order). CI saw a publish from
        // another connection overtake the SUB without it.
        let flushed = match self.inner.client.flush().await {
            Ok(()) => self.inner.js.get_stream(self.stream(topic)).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.inner.unmade[topic.index()].send_modify(|n| *n -= 1);
        let mut sub = match (subscribed, flushed) {
            (Ok(sub), Ok(())) => sub,
            (Err(e), _) => {
                tracing::error!(subject, error = %e, "cannot subscribe on NATS");
                return;
            }
            (_, Err(e)) => {
                tracing::error!(subject, error = %e, "cannot subscribe on NATS");
                return;
            }
        };
        let dropped = metrics::counter!("ingot_bus_dropped_total", "subscriber" => name);
        while let Some(message) = sub.next().await {
            let Ok(value) = serde_json::from_slice::<T>(&message.payload) else { continue };
            match tx.try_send(Delivery { msg: Arc::new(value), ack: None, id: None }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => dropped.increment(1),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// `s` as one subject token: itself when it is made of `[A-Za-z0-9_-]` only (and not
/// empty), else `~` and the hex of its bytes, so that distinct ids stay distinct tokens.
pub fn token(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return s.to_string();
    }
    let mut out = String::with_capacity(1 + 2 * s.len());
    out.push('~');
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn send_data(&self, data: DeviceData) -> Result<Durable, BusError> {
        let subject = self.subject(Topic::Data, &[&data.tenant, &data.device_id]);
        self.send(Topic::Data, subject, &data).await
    }

    async fn publish_event(&self, event: DeviceEvent) -> Result<(), BusError> {
        let subject = self.subject(Topic::Events, &[&event.tenant]);
        self.publish(Topic::Events, subject, &event).await
    }

    fn subscribe_data(&self, name: &str, mode: Mode) -> Subscription<DeviceData> {
        self.subscribe(Topic::Data, name, mode)
    }

    fn subscribe_events(&self, name: &str, mode: Mode) -> Subscription<DeviceEvent> {
        self.subscribe(Topic::Events, name, mode)
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.consumers_made(Topic::Data).await?;
        self.consumers_made(Topic::Events).await
    }

    fn unreachable(&self) -> bool {
        self.inner.client.connection_state() != async_nats::connection::State::Connected
    }

    fn dead_groups(&self) -> Vec<String> {
        let groups = self.inner.groups.lock().expect("groups lock");
        groups.iter().filter(|(_, alive)| !alive.load(Ordering::Relaxed)).map(|(g, _)| g.clone()).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;
    use serde_json::json;

    use super::*;

    const VAR: &str = "INGOT_TEST_NATS_URL";

    /// The test server (scripts/test.sh starts one with scripts/nats.sh), or `None` after
    /// a loud SKIPPED; a failure under CI=true.
    fn server() -> Option<String> {
        match std::env::var(VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                let test = std::thread::current().name().unwrap_or("a NATS test").to_string();
                assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{test}: {VAR} is not set under CI=true");
                eprintln!("\n!!!!! SKIPPED {test}: {VAR} is not set (no nats-server); run scripts/test.sh !!!!!\n");
                None
            }
        }
    }

    /// A bus with a prefix of its own (tests share the server), or `None` without a server.
    pub(crate) async fn bus(prefix: &str) -> Option<NatsBus> {
        let url = server()?;
        let options = NatsOptions {
            url,
            prefix: prefix.into(),
            ack_wait: Duration::from_secs(2),
            max_bytes: 64 << 20,
            ..Default::default()
        };
        Some(NatsBus::connect(options).await.unwrap())
    }

    pub(crate) fn prefix(test: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        format!("t{test}{}x{nanos:x}", std::process::id())
    }

    fn reading(device: &str, seq: i64) -> DeviceData {
        let serde_json::Value::Object(attrs) = json!({"seq": seq}) else { unreachable!() };
        DeviceData::new("admin", device, Utc::now(), attrs)
    }

    async fn next<T>(sub: &mut Subscription<T>) -> Option<Delivery<T>> {
        tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.ok().flatten()
    }

    fn seq(d: &Delivery<DeviceData>) -> i64 {
        d.msg.attrs["seq"].as_i64().unwrap()
    }

    #[tokio::test]
    async fn acknowledged_readings_wait_in_the_stream_while_the_group_is_away() {
        let Some(bus) = bus(&prefix("away")).await else { return };
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        bus.publish_data(reading("d1", -1)).await.unwrap();
        next(&mut sub).await.expect("delivered").ack();
        // The group's consumer goes away (its node stops); readings keep coming.
        drop(sub);
        for i in 0..100 {
            bus.publish_data(reading("d1", i)).await.unwrap();
        }
        // Subscribed again: the stream kept them for the group. (Not all in order: the
        // first may have gone to the old consumer's last pull, and comes back after
        // `ack_wait`; history orders readings by their timestamps.)
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        let mut got = BTreeSet::new();
        for _ in 0..100 {
            let d = next(&mut sub).await.expect("every acknowledged reading is delivered");
            got.insert(seq(&d));
            d.ack();
        }
        assert_eq!(got, (0..100).collect(), "each once");
        assert!(bus.dead_groups().is_empty(), "{:?}", bus.dead_groups());
        bus.publish_data(reading("d1", 100)).await.unwrap();
        assert_eq!(seq(&next(&mut sub).await.unwrap()), 100, "acked ones do not come again");
    }

    #[tokio::test]
    async fn a_durable_group_gets_readings_in_publish_order() {
        let Some(bus) = bus(&prefix("order")).await else { return };
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        for i in 0..300 {
            bus.publish_data(reading("d1", i)).await.unwrap();
        }
        for i in 0..300 {
            let d = next(&mut sub).await.expect("delivered");
            assert_eq!(seq(&d), i);
            d.ack();
        }
    }

    #[tokio::test]
    async fn a_delivery_dropped_without_ack_comes_again() {
        let Some(bus) = bus(&prefix("nak")).await else { return };
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        bus.publish_data(reading("d1", 7)).await.unwrap();
        let first = next(&mut sub).await.unwrap();
        let id = first.id().expect("a NATS delivery has an id");
        drop(first); // the write failed
        let again = next(&mut sub).await.expect("redelivered after the NAK delay");
        assert_eq!(seq(&again), 7);
        assert_eq!(again.id(), Some(id), "the same id, so it is stored once");
        again.ack();
        bus.publish_data(reading("d1", 8)).await.unwrap();
        let other = next(&mut sub).await.unwrap();
        assert_ne!(other.id(), Some(id), "each message an id of its own");
        other.ack();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_share_a_durable_group_and_each_reading_goes_to_one() {
        let p = prefix("share");
        let (Some(a), Some(b)) = (bus(&p).await, bus(&p).await) else { return };
        let subs = [a.subscribe_data("history", Mode::Durable), b.subscribe_data("history", Mode::Durable)];
        for i in 0..200 {
            [&a, &b][i % 2].publish_data(reading("d", i as i64)).await.unwrap();
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                let seen = seen.clone();
                tokio::spawn(async move {
                    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), sub.recv()).await {
                        seen.lock().unwrap().push(seq(&d));
                        d.ack();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 200, "each reading once");
        assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_node_gets_every_event_of_an_each_node_group() {
        let p = prefix("each");
        let url = match server() {
            Some(url) => url,
            None => return,
        };
        let node = |name: &str| NatsOptions {
            url: url.clone(),
            prefix: p.clone(),
            node: name.into(),
            max_bytes: 64 << 20,
            ..Default::default()
        };
        let a = NatsBus::connect(node("a")).await.unwrap();
        let b = NatsBus::connect(node("b")).await.unwrap();
        let mut subs = [a.subscribe_events("mqtt", Mode::EachNode), b.subscribe_events("mqtt", Mode::EachNode)];
        // Each node's group starts when it is made: wait for both before publishing.
        a.ready().await.unwrap();
        b.ready().await.unwrap();
        let sent: Vec<DeviceEvent> =
            (0..10).map(|i| DeviceEvent::credentials("acme", &format!("d{i}"), Utc::now())).collect();
        for (i, e) in sent.iter().enumerate() {
            [&a, &b][i % 2].publish_event(e.clone()).await.unwrap();
        }
        for sub in &mut subs {
            for e in &sent {
                let d = next(sub).await.expect("every node gets every event");
                assert_eq!(&*d.msg, e, "in order");
                d.ack();
            }
        }
    }

    #[tokio::test]
    async fn lossy_subscribers_see_live_events_of_every_node() {
        let p = prefix("lossy");
        let (Some(a), Some(b)) = (bus(&p).await, bus(&p).await) else { return };
        let mut live = a.subscribe_events("ws", Mode::Lossy);
        a.ready().await.unwrap(); // the subscription reached the server
        let event = DeviceEvent::credentials("acme.corp", "d1", Utc::now());
        b.publish_event(event.clone()).await.unwrap();
        let got = next(&mut live).await.expect("a live event");
        assert_eq!(*got.msg, event);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = NatsOptions { url: format!("nats://127.0.0.1:{port}"), ..Default::default() };
        let err = NatsBus::connect(options).await.err().expect("nothing listens there");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redacted("nats://u:s3cret@h:4222"), "nats://h:4222");
        assert_eq!(redacted("nats://h:4222,nats://t0k3n@i:4222"), "nats://h:4222,nats://i:4222");
        assert_eq!(redacted("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn tokens_keep_ids_apart_and_subjects_valid() {
        assert_eq!(token("admin"), "admin");
        assert_eq!(token("a-b_c9"), "a-b_c9");
        assert_eq!(token("acme.corp"), "~61636d652e636f7270");
        assert_ne!(token("a.b"), token("a_b"));
        assert_eq!(token(""), "~");
        assert!(token("x *>").starts_with('~'));
    }
}
