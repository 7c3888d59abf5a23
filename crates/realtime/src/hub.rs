//! The hub: one lossy bus subscription per node fanned out to every stream of that node.
//!
//! Why this shape:
//! - **Subscribers never block ingest.** The hub reads the bus as a lossy subscriber (on
//!   NATS a core subscription: every node sees every node's readings) and hands each
//!   message to each matching stream with `try_send` on that stream's bounded queue. A
//!   stream whose queue is full is ended ([`End::Slow`]) and counted, never waited for.
//! - **One serialisation per message.** A message is rendered once; streams without a
//!   filter share the same `Arc<str>`.
//! - **Order per device.** One task feeds readings, in bus order, and each stream is a
//!   FIFO queue.
//! - **Resumable.** Each tenant that has (or recently had) a stream keeps its last
//!   messages (bounded in count and age) so that a client reconnecting with the id of
//!   the last message it saw (SSE's `Last-Event-ID`) gets what it missed, or is told
//!   ([`Item::Gap`]) that the window no longer covers it. Ids are this hub's: a client
//!   that reconnects to another node (or after a restart) gets a gap, not wrong data.
//! - **Bounded.** Streams in all, per user, queue length and replay window are
//!   configuration ([`HubConfig`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bus::{Bus, Mode};
use model::{DeviceData, DeviceEvent};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::filter::Filter;
use crate::message;

/// Limits of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages queued per stream before it counts as too slow and is ended.
    pub queue: usize,
    /// Streams open at once on this node.
    pub max_streams: usize,
    /// Streams one user may have open at once on this node.
    pub max_streams_per_user: usize,
    /// Messages kept per tenant for resuming streams.
    pub replay: usize,
    /// How long a kept message can still be replayed.
    pub replay_age: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue: 256,
            max_streams: 10_000,
            max_streams_per_user: 32,
            replay: 1_000,
            replay_age: Duration::from_secs(300),
        }
    }
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Readings (`<tenant>.device-data`).
    DeviceData,
    /// Device lifecycle events (`<tenant>.dojot.device-manager.device`).
    Lifecycle,
    /// Readings and actuation requests in the reading's shape (data-broker's socket.io).
    DeviceDataAndActuation,
}

impl Topic {
    fn takes(self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Topic::DeviceData, Kind::Data)
                | (Topic::Lifecycle, Kind::Lifecycle)
                | (Topic::DeviceDataAndActuation, Kind::Data | Kind::Actuation)
        )
    }
}

/// A stream as asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub tenant: String,
    /// Who asks, for the per-user limit.
    pub user_id: i64,
    pub topic: Topic,
    /// Only this device's messages.
    pub device: Option<String>,
    pub filter: Filter,
    /// The id of the last message the client saw ([`EventId`]'s text), to resume after it.
    pub resume: Option<String>,
}

/// Why no stream was opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("too many streams open for this user (at most {0}); close one first")]
    UserLimit(usize),
    #[error("this server has {0} streams open, its limit; retry later")]
    Full(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why a stream ended (after its last queued item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its queue was full: the client did not read fast enough.
    Slow,
    /// The hub stopped (the server is shutting down).
    Shutdown,
}

impl End {
    /// Why the stream ended, in words for its client (every protocol says it).
    pub fn reason(self) -> &'static str {
        match self {
            End::Slow => "the client did not read fast enough: messages were queued past the stream's limit",
            End::Shutdown => "the server is shutting down",
        }
    }
}

/// A message's id: the hub that sent it and its place in that hub's sequence. Its text
/// form is what SSE sends as `id:` and takes back as `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub epoch: u32,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

impl EventId {
    fn parse(s: &str) -> Option<Self> {
        let (epoch, seq) = s.trim().split_once('-')?;
        Some(Self { epoch: u32::from_str_radix(epoch, 16).ok()?, seq: seq.parse().ok()? })
    }
}

/// One message for one stream.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: EventId,
    /// The device it is about.
    pub device: Arc<str>,
    /// The JSON text to send (after the stream's filter).
    pub json: Arc<str>,
}

/// What a stream yields.
#[derive(Debug, Clone)]
pub enum Item {
    Message(Message),
    /// Messages were missed before the next one: the resume point is older than what
    /// the hub keeps (or from another node or an earlier run).
    Gap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Lifecycle,
    Actuation,
}

/// A message as the hub keeps it for replay.
struct Entry {
    seq: u64,
    at: Instant,
    kind: Kind,
    device: Arc<str>,
    value: Value,
    json: Arc<str>,
}

struct Sub {
    id: u64,
    topic: Topic,
    device: Option<String>,
    filter: Filter,
    tx: mpsc::Sender<Item>,
    end: Arc<Mutex<Option<End>>>,
}

/// Where a stream is filed among its tenant's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    TenantWide,
    /// A stream of one device (SSE `/stream/devices/{id}`, the console).
    Device(String),
    /// A stream whose `where` selects devices whose id contains this text (kafka-ws's
    /// `metadata.deviceid=in:<text>;`): only a reading of such a device is tested.
    DevicePart(String),
}

/// Longest `in` value indexed as a [`Key::DevicePart`]; a reading's id is looked up by its
/// substrings up to this length.
const MAX_INDEXED_PART: usize = 16;

impl Key {
    fn of(device: Option<&str>, filter: &Filter) -> Self {
        match (device, filter.device_part()) {
            (Some(d), _) => Key::Device(d.to_string()),
            (None, Some(part)) if part.len() <= MAX_INDEXED_PART => Key::DevicePart(part.to_string()),
            (None, _) => Key::TenantWide,
        }
    }
}

/// A tenant's streams, filed so that a reading costs only the streams it may be for: its
/// device's, those whose device condition its id satisfies, and the tenant-wide ones,
/// however many devices are watched.
#[derive(Default)]
struct Subs {
    tenant_wide: Vec<Sub>,
    by_device: HashMap<String, Vec<Sub>>,
    by_part: HashMap<String, Vec<Sub>>,
}

impl Subs {
    fn push(&mut self, key: &Key, sub: Sub) {
        match key {
            Key::TenantWide => self.tenant_wide.push(sub),
            Key::Device(d) => self.by_device.entry(d.clone()).or_default().push(sub),
            Key::DevicePart(p) => self.by_part.entry(p.clone()).or_default().push(sub),
        }
    }

    /// Keeps the streams for which `keep` holds, among those a message of `device` reaches.
    fn retain_for(&mut self, device: &str, mut keep: impl FnMut(&Sub) -> bool) {
        self.tenant_wide.retain(&mut keep);
        retain_in(&mut self.by_device, device, &mut keep);
        if self.by_part.is_empty() {
            return;
        }
        // Every distinct substring of the id, up to the indexed length: each stream is
        // filed under one part, so it is reached once.
        let mut seen: Vec<&str> = Vec::new();
        for start in (0..device.len()).filter(|&i| device.is_char_boundary(i)) {
            for end in (start + 1..=device.len().min(start + MAX_INDEXED_PART)).filter(|&i| device.is_char_boundary(i))
            {
                let part = &device[start..end];
                if !seen.contains(&part) {
                    seen.push(part);
                    retain_in(&mut self.by_part, part, &mut keep);
                }
            }
        }
    }

    fn remove(&mut self, key: &Key, id: u64) {
        let keep = |s: &Sub| s.id != id;
        match key {
            Key::TenantWide => self.tenant_wide.retain(keep),
            Key::Device(d) => retain_in(&mut self.by_device, d, keep),
            Key::DevicePart(p) => retain_in(&mut self.by_part, p, keep),
        }
    }

    fn is_empty(&self) -> bool {
        self.tenant_wide.is_empty() && self.by_device.is_empty() && self.by_part.is_empty()
    }

    fn drain(&mut self) -> impl Iterator<Item = Sub> + '_ {
        let filed = self.by_device.drain().chain(self.by_part.drain()).flat_map(|(_, subs)| subs);
        self.tenant_wide.drain(..).chain(filed)
    }
}

/// `Vec::retain` on one list of an index, dropping the list once empty.
fn retain_in(index: &mut HashMap<String, Vec<Sub>>, key: &str, keep: impl FnMut(&Sub) -> bool) {
    if let Some(subs) = index.get_mut(key) {
        subs.retain(keep);
        if subs.is_empty() {
            index.remove(key);
        }
    }
}

#[derive(Default)]
struct TenantHub {
    subs: Subs,
    ring: VecDeque<Arc<Entry>>,
    /// The highest sequence number dropped from `ring`: a resume before it has a gap.
    dropped_upto: u64,
    /// Since when the tenant has had no stream (its ring goes after `replay_age`).
    idle_since: Option<Instant>,
}

/// The hub of one node; see the module docs.
pub struct Hub {
    config: HubConfig,
    epoch: u32,
    seq: AtomicU64,
    next_sub: AtomicU64,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantHub>>>>,
    open: AtomicUsize,
    per_user: Mutex<HashMap<(String, i64), usize>>,
    closed: AtomicBool,
}

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            epoch: rand::random(),
            // Ids start at 1: a resume from 0 means "from the start of the window".
            seq: AtomicU64::new(1),
            next_sub: AtomicU64::new(0),
            tenants: RwLock::default(),
            open: AtomicUsize::new(0),
            per_user: Mutex::default(),
            closed: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Subscribes to the bus (lossy) and feeds every stream from it until the bus ends or
    /// the hub is dropped. Call once, before the bus is `ready()`.
    pub fn start(self: &Arc<Self>, bus: &dyn Bus) {
        // Readings of tenants nobody watches (nor watched within the replay window) are
        // not even handed over.
        let hub = Arc::downgrade(self);
        let watched: bus::Interest = Arc::new(move |d| hub.upgrade().is_some_and(|hub| hub.watched(&d.tenant)));
        let mut data = bus.subscribe_data_where("realtime", Mode::Lossy, watched);
        let mut events = bus.subscribe_events("realtime", Mode::Lossy);
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while data.recv_many(&mut batch, 256).await > 0 {
                let Some(hub) = hub.upgrade() else { return };
                batch.drain(..).for_each(|d| hub.publish_data(&d.msg));
            }
        });
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(d) = events.recv().await {
                let Some(hub) = hub.upgrade() else { return };
                hub.publish_event(&d.msg);
            }
        });
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                hub.sweep();
            }
        });
    }

    /// Hands a reading to the streams of its tenant.
    pub fn publish_data(&self, d: &DeviceData) {
        let Some(tenant) = self.tenant(&d.tenant) else { return };
        self.publish(&tenant, Kind::Data, &d.device_id, message::device_data(d));
    }

    /// Hands a lifecycle event (and an actuation request as a reading) to its tenant's streams.
    pub fn publish_event(&self, e: &DeviceEvent) {
        let Some(tenant) = self.tenant(&e.tenant) else { return };
        let device = e.device_id().unwrap_or_default().to_string();
        if let Some(v) = message::lifecycle(e) {
            self.publish(&tenant, Kind::Lifecycle, &device, v);
        }
        if let Some(v) = message::actuation_as_device_data(e) {
            self.publish(&tenant, Kind::Actuation, &device, v);
        }
    }

    /// Whether `tenant` has streams, or had within the replay window. Asked by every
    /// publisher of a reading, so never a panic there, even on a poisoned lock (a map
    /// of tenants is left whole by a panic).
    fn watched(&self, tenant: &str) -> bool {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).contains_key(tenant)
    }

    fn tenant(&self, name: &str) -> Option<Arc<Mutex<TenantHub>>> {
        self.tenants.read().expect("hub lock").get(name).cloned()
    }

    fn publish(&self, tenant: &Mutex<TenantHub>, kind: Kind, device: &str, value: Value) {
        let entry = Arc::new(Entry {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at: Instant::now(),
            kind,
            device: device.into(),
            json: value.to_string().into(),
            value,
        });
        metrics::counter!("realtime_messages_total").increment(1);
        let mut t = tenant.lock().expect("tenant lock");
        t.ring.push_back(entry.clone());
        self.trim(&mut t);
        let epoch = self.epoch;
        t.subs.retain_for(device, |sub| offer(sub, &entry, epoch));
    }

    /// Drops kept messages beyond the window.
    fn trim(&self, t: &mut TenantHub) {
        while let Some(front) = t.ring.front() {
            if t.ring.len() <= self.config.replay && front.at.elapsed() <= self.config.replay_age {
                break;
            }
            t.dropped_upto = front.seq;
            t.ring.pop_front();
        }
    }

    /// Forgets tenants that have had no stream for the replay window.
    fn sweep(&self) {
        let mut tenants = self.tenants.write().expect("hub lock");
        tenants.retain(|_, t| {
            let t = t.lock().expect("tenant lock");
            !t.subs.is_empty() || t.idle_since.is_none_or(|since| since.elapsed() <= self.config.replay_age)
        });
    }

    /// Opens a stream, replaying what it missed if it resumes.
    pub fn subscribe(self: &Arc<Self>, req: Request) -> Result<Stream, HubError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HubError::ShuttingDown);
        }
        let user = (req.tenant.clone(), req.user_id);
        {
            let mut per_user = self.per_user.lock().expect("hub lock");
            let held = per_user.get(&user).copied().unwrap_or(0);
            if held >= self.config.max_streams_per_user {
                return Err(HubError::UserLimit(self.config.max_streams_per_user));
            }
            if self.open.fetch_add(1, Ordering::AcqRel) >= self.config.max_streams {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(HubError::Full(self.config.max_streams));
            }
            per_user.insert(user.clone(), held + 1);
        }
        metrics::gauge!("realtime_streams").increment(1.0);
        let tenant = {
            let mut tenants = self.tenants.write().expect("hub lock");
            let tenant = tenants.entry(req.tenant.clone()).or_default().clone();
            // Not idle from now on, before the map's lock is released: the sweep (which
            // takes the same two locks in the same order) cannot forget it under us.
            tenant.lock().expect("tenant lock").idle_since = None;
            tenant
        };
        let (tx, rx) = mpsc::channel(self.config.queue.max(2));
        let end = Arc::new(Mutex::new(None));
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        let key = Key::of(req.device.as_deref(), &req.filter);
        let sub = Sub { id, topic: req.topic, device: req.device, filter: req.filter, tx, end: end.clone() };
        {
            let mut t = tenant.lock().expect("tenant lock");
            self.trim(&mut t);
            if let Some(resume) = req.resume.as_deref() {
                self.replay(&t, &sub, resume);
            }
            t.subs.push(&key, sub);
            t.idle_since = None;
        }
        Ok(Stream { rx, end, _guard: Guard { hub: Arc::downgrade(self), tenant, user, key, id } })
    }

    /// Queues, for a new stream, the kept messages after `resume` (or a gap first).
    fn replay(&self, t: &TenantHub, sub: &Sub, resume: &str) {
        let after = match EventId::parse(resume) {
            Some(id) if id.epoch == self.epoch && id.seq >= t.dropped_upto => id.seq,
            _ => {
                let _ = sub.tx.try_send(Item::Gap);
                return;
            }
        };
        let missed: Vec<&Arc<Entry>> = t.ring.iter().filter(|e| e.seq > after).collect();
        // Leave room in the queue for live messages: beyond half of it, only the newest.
        let room = sub.tx.capacity() / 2;
        if missed.len() > room {
            let _ = sub.tx.try_send(Item::Gap);
        }
        for e in &missed[missed.len().saturating_sub(room)..] {
            offer(sub, e, self.epoch);
        }
    }

    /// Ends every stream (the server is stopping); new ones are refused.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        for t in self.tenants.read().expect("hub lock").values() {
            let mut t = t.lock().expect("tenant lock");
            for sub in t.subs.drain() {
                sub.end.lock().expect("end lock").get_or_insert(End::Shutdown);
            }
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Gives `entry` to `sub` if it is for it; false if the stream must go (too slow, gone).
fn offer(sub: &Sub, entry: &Entry, epoch: u32) -> bool {
    if !sub.topic.takes(entry.kind) || sub.device.as_deref().is_some_and(|d| d != &*entry.device) {
        return true;
    }
    let json = if sub.filter.is_empty() {
        entry.json.clone()
    } else {
        match sub.filter.apply(&entry.value) {
            Some(v) => v.to_string().into(),
            None => return true,
        }
    };
    let item = Item::Message(Message { id: EventId { epoch, seq: entry.seq }, device: entry.device.clone(), json });
    match sub.tx.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            sub.end.lock().expect("end lock").get_or_insert(End::Slow);
            metrics::counter!("realtime_slow_closed_total").increment(1);
            tracing::info!(tenant_stream = sub.id, "a stream's client did not keep up; closing it");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// An open stream: read it with [`Stream::next`]; dropping it unsubscribes.
#[derive(Debug)]
pub struct Stream {
    rx: mpsc::Receiver<Item>,
    end: Arc<Mutex<Option<End>>>,
    _guard: Guard,
}

impl Stream {
    /// The next item; `None` once the stream ended (see [`Stream::end`]).
    pub async fn next(&mut self) -> Option<Item> {
        self.rx.recv().await
    }

    /// Why the stream ended, once [`Stream::next`] returned `None`.
    pub fn end(&self) -> End {
        self.end.lock().expect("end lock").unwrap_or(End::Shutdown)
    }
}

struct Guard {
    hub: Weak<Hub>,
    tenant: Arc<Mutex<TenantHub>>,
    user: (String, i64),
    key: Key,
    id: u64,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("user", &self.user).field("id", &self.id).finish()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        {
            let mut t = self.tenant.lock().expect("tenant lock");
            t.subs.remove(&self.key, self.id);
            if t.subs.is_empty() {
                t.idle_since = Some(Instant::now());
            }
        }
        metrics::gauge!("realtime_streams").decrement(1.0);
        let Some(hub) = self.hub.upgrade() else { return };
        hub.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_user = hub.per_user.lock().expect("hub lock");
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn reading(tenant: &str, device: &str, t: i64) -> DeviceData {
        let attrs = json!({"temperature": t}).as_object().unwrap().clone();
        DeviceData::new(tenant, device, Utc::now(), attrs)
    }

    fn request(tenant: &str, user_id: i64) -> Request {
        Request {
            tenant: tenant.into(),
            user_id,
            topic: Topic::DeviceData,
            device: None,
            filter: Filter::default(),
            resume: None,
        }
    }

    fn message(item: Option<Item>) -> Message {
        match item {
            Some(Item::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn temperature(m: &Message) -> i64 {
        serde_json::from_str::<Value>(&m.json).unwrap()["attrs"]["temperature"].as_i64().unwrap()
    }

    #[tokio::test]
    async fn streams_get_their_tenants_messages_in_order_filtered() {
        let hub = Hub::new(HubConfig::default());
        let mut all = hub.subscribe(request("acme", 1)).unwrap();
        let mut one = hub.subscribe(Request { device: Some("d2".into()), ..request("acme", 1) }).unwrap();
        let mut hot = hub
            .subscribe(Request {
                filter: Filter::parse(None, Some("attrs.temperature=gt:5;")).unwrap(),
                ..request("acme", 2)
            })
            .unwrap();
        let mut other = hub.subscribe(request("globex", 1)).unwrap();
        for t in 0..10 {
            hub.publish_data(&reading("acme", if t % 2 == 0 { "d1" } else { "d2" }, t));
        }
        let got: Vec<i64> = (0..10).map(|_| temperature(&message(all.rx.try_recv().ok()))).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let got: Vec<i64> = (0..5).map(|_| temperature(&message(one.rx.try_recv().ok()))).collect();
        assert_eq!(got, [1, 3, 5, 7, 9]);
        let got: Vec<i64> = (0..4).map(|_| temperature(&message(hot.rx.try_recv().ok()))).collect();
        assert_eq!(got, [6, 7, 8, 9]);
        assert!(one.rx.try_recv().is_err() && hot.rx.try_recv().is_err());
        assert!(other.rx.try_recv().is_err(), "tenant isolation");
    }

    #[tokio::test]
    async fn device_conditions_are_indexed_and_mean_what_they_say() {
        let hub = Hub::new(HubConfig::default());
        let by = |w: &str| Request { filter: Filter::parse(None, Some(w)).unwrap(), ..request("acme", 1) };
        let mut part = hub.subscribe(by("metadata.deviceid=in:b2;")).unwrap();
        let mut a = hub.subscribe(by("metadata.deviceid=in:a;attrs.temperature=gt:1;")).unwrap();
        let mut two = hub.subscribe(by("metadata.deviceid=in:a1,b2;")).unwrap();
        for (device, t) in [("a1", 1), ("ab2c", 2), ("b2", 3), ("aa", 4), ("c3", 5)] {
            hub.publish_data(&reading("acme", device, t));
        }
        let got = |s: &mut Stream| {
            let mut seen = vec![];
            while let Ok(item) = s.rx.try_recv() {
                let Item::Message(m) = item else { panic!("gap") };
                seen.push(temperature(&m));
            }
            seen
        };
        assert_eq!(got(&mut part), [2, 3], "ids containing b2");
        assert_eq!(got(&mut a), [2, 4], "containing a, and the other condition; aa once");
        assert_eq!(got(&mut two), [1, 2, 3], "two values: tested for every reading");
        drop(part);
        hub.publish_data(&reading("acme", "b2", 6));
        assert_eq!(got(&mut two), [6]);
    }

    #[tokio::test]
    async fn a_slow_stream_is_ended_and_the_others_go_on() {
        let hub = Hub::new(HubConfig { queue: 4, ..HubConfig::default() });
        let mut slow = hub.subscribe(request("acme", 1)).unwrap();
        let mut fast = hub.subscribe(request("acme", 2)).unwrap();
        for t in 0..10 {
            hub.publish_data(&reading("acme", "d1", t));
            message(fast.next().await);
        }
        for _ in 0..4 {
            message(slow.next().await);
        }
        assert!(slow.next().await.is_none());
        assert_eq!(slow.end(), End::Slow);
        assert_eq!(hub.open_streams(), 2, "until dropped");
        drop(slow);
        assert_eq!(hub.open_streams(), 1);
    }

    #[tokio::test]
    async fn limits_per_user_and_in_all() {
        let hub = Hub::new(HubConfig { max_streams: 3, max_streams_per_user: 2, ..HubConfig::default() });
        let a = hub.subscribe(request("acme", 1)).unwrap();
        let _b = hub.subscribe(request("acme", 1)).unwrap();
        assert_eq!(hub.subscribe(request("acme", 1)).unwrap_err(), HubError::UserLimit(2));
        let _c = hub.subscribe(request("globex", 1)).unwrap();
        assert_eq!(hub.subscribe(request("globex", 2)).unwrap_err(), HubError::Full(3));
        drop(a);
        hub.subscribe(request("acme", 1)).unwrap();
    }

    #[tokio::test]
    async fn a_resumed_stream_gets_what_it_missed_or_a_gap() {
        let hub = Hub::new(HubConfig { replay: 3, ..HubConfig::default() });
        let mut first = hub.subscribe(request("acme", 1)).unwrap();
        for t in 0..3 {
            hub.publish_data(&reading("acme", "d1", t));
        }
        let seen = message(first.next().await).id.to_string();
        drop(first);
        hub.publish_data(&reading("acme", "d1", 3));
        let mut again = hub.subscribe(Request { resume: Some(seen.clone()), ..request("acme", 1) }).unwrap();
        let got: Vec<i64> = (0..3).map(|_| temperature(&message(again.rx.try_recv().ok()))).collect();
        assert_eq!(got, [1, 2, 3]);
        hub.publish_data(&reading("acme", "d1", 4));
        assert_eq!(temperature(&message(again.next().await)), 4, "then live, nothing twice");

        // Beyond the window (3 kept: 2, 3, 4), a foreign id or garbage: a gap first.
        for resume in [seen, "0000abcd-1".to_string(), "garbage".into()] {
            let mut late = hub.subscribe(Request { resume: Some(resume.clone()), ..request("acme", 2) }).unwrap();
            assert!(matches!(late.rx.try_recv(), Ok(Item::Gap)), "{resume}");
        }
    }

    #[tokio::test]
    async fn lifecycle_streams_get_only_dojots_events() {
        let hub = Hub::new(HubConfig::default());
        let mut life = hub.subscribe(Request { topic: Topic::Lifecycle, ..request("acme", 1) }).unwrap();
        let mut socketio =
            hub.subscribe(Request { topic: Topic::DeviceDataAndActuation, ..request("acme", 1) }).unwrap();
        let attrs = json!({"target": 3}).as_object().unwrap().clone();
        hub.publish_event(&DeviceEvent::credentials("acme", "d1", Utc::now()));
        hub.publish_event(&DeviceEvent::configure("acme", "d1", attrs, Utc::now()));
        hub.publish_data(&reading("acme", "d1", 7));
        let m = message(life.rx.try_recv().ok());
        assert_eq!(serde_json::from_str::<Value>(&m.json).unwrap()["event"], "configure");
        assert!(life.rx.try_recv().is_err(), "no reading, no Ingot-only event");
        let m = message(socketio.rx.try_recv().ok());
        assert_eq!(serde_json::from_str::<Value>(&m.json).unwrap()["attrs"]["target"], 3);
        assert_eq!(temperature(&message(socketio.rx.try_recv().ok())), 7);
    }

    #[tokio::test]
    async fn idle_tenants_are_forgotten_and_busy_ones_kept() {
        let hub = Hub::new(HubConfig { replay_age: Duration::ZERO, ..HubConfig::default() });
        let mut busy = hub.subscribe(request("acme", 1)).unwrap();
        drop(hub.subscribe(request("globex", 1)).unwrap());
        std::thread::sleep(Duration::from_millis(2));
        hub.sweep();
        assert!(hub.tenant("globex").is_none(), "idle beyond the window");
        hub.publish_data(&reading("acme", "d1", 1));
        assert_eq!(temperature(&message(busy.next().await)), 1, "a tenant with a stream stays");
        let mut again = hub.subscribe(request("globex", 1)).unwrap();
        hub.publish_data(&reading("globex", "d1", 2));
        assert_eq!(temperature(&message(again.next().await)), 2);
    }

    #[tokio::test]
    async fn shutdown_ends_every_stream() {
        let hub = Hub::new(HubConfig::default());
        let mut s = hub.subscribe(request("acme", 1)).unwrap();
        hub.shutdown();
        assert!(s.next().await.is_none());
        assert_eq!(s.end(), End::Shutdown);
        assert_eq!(hub.subscribe(request("acme", 1)).unwrap_err(), HubError::ShuttingDown);
    }

    #[tokio::test]
    async fn the_hub_reads_the_bus() {
        let bus = bus::MemoryBus::new(64);
        let hub = Hub::new(HubConfig::default());
        hub.start(&bus);
        let mut s = hub.subscribe(request("acme", 1)).unwrap();
        bus.publish_data(reading("acme", "d1", 42)).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), s.next()).await.unwrap();
        assert_eq!(temperature(&message(m)), 42);
    }
}
