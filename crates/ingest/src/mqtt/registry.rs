//! Live sessions and the persistent session store.
//!
//! A session belongs to one device *and* one client id: keying by client id alone would let
//! a device of one tenant take over (or read the actuation queue of) a session of another
//! tenant that happens to use the same client id.
//!
//! A session holds the device's config subscriptions and its outbound queue. Every message
//! for a device goes through that queue, whether the device is connected or not: the
//! connection's loop drains it, and while a persistent session is offline it
//! fills up to `max_queued` (oldest dropped first, counted).
//!
//! The store is in memory: persistent sessions survive reconnects, not a restart.
//! One mutex guards it; it is touched on connect, subscribe, disconnect and actuation,
//! never on the publish path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use model::DeviceRef;
use model::topic::{DeviceTopic, TopicForm, TopicKind};
use tokio::sync::Notify;

/// The two QoS levels Ingot speaks (QoS 2 is refused at the protocol level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

/// One message waiting to go to a device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outbound {
    pub topic: String,
    pub qos: Qos,
    pub payload: Bytes,
}

/// What a persistent session carries from one node to the one that took it over
/// ([`Registry::hand_over`], [`Registry::adopt`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionState {
    pub subscriptions: Vec<(TopicForm, Qos)>,
    /// (topic, QoS, payload): actuation payloads are JSON text.
    pub queue: Vec<(String, Qos, String)>,
}

/// Why a connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Another connection with the same identity and client id took the session over.
    TakenOver,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection is already gone; nothing to send.
    Ended,
    /// The device was deleted, or its credentials were revoked or changed.
    NotAuthorized,
}

/// Wakes a connection's loop: a message was queued for it, or it must close.
///
/// `Send + Sync`, so the registry (any thread) can reach a connection's task on any
/// worker thread.
#[derive(Debug, Default)]
pub(crate) struct LiveSignal {
    notify: Notify,
    close: Mutex<Option<CloseReason>>,
}

impl LiveSignal {
    fn wake(&self) {
        // `notify_one` stores a permit when nobody waits, so a wake-up is never lost.
        self.notify.notify_one();
    }

    /// Asks the connection to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut close = self.close.lock().unwrap_or_else(|e| e.into_inner());
        close.get_or_insert(reason);
        drop(close);
        self.wake();
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next wake-up: a future the connection's loop keeps across its turns.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

struct Live {
    conn_id: u64,
    signal: Arc<LiveSignal>,
    credential: Credential,
}

/// How a connection proved who it is: what a revocation must match to end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// Nothing: its tenant was in unsecured mode.
    Unsecured,
    /// The device's secret.
    Secret,
    /// The client certificate with this fingerprint.
    Certificate(String),
}

struct Session {
    /// Config topic forms the device subscribed to, with the granted QoS.
    subscriptions: Vec<(TopicForm, Qos)>,
    queue: VecDeque<Outbound>,
    /// How long the session outlives its connection; `None`: it ends with it.
    expiry: Option<Duration>,
    live: Option<Live>,
    offline_since: Option<Instant>,
}

impl Session {
    fn new(expiry: Option<Duration>) -> Self {
        Self { subscriptions: Vec::new(), queue: VecDeque::new(), expiry, live: None, offline_since: None }
    }

    fn expired(&self, now: Instant) -> bool {
        match (self.expiry, self.offline_since) {
            (Some(expiry), Some(since)) => now.duration_since(since) >= expiry,
            _ => false,
        }
    }
}

/// The sessions of one device, by client id.
///
/// A `Vec` searched in order, not a map: a device has at most `max_sessions` (16 by
/// default) and nearly always one, and with 10,000 devices connected a one-entry hash
/// table (four buckets) cost about half a kilobyte more per connection than this.
#[derive(Default)]
struct Sessions(Vec<(String, Session)>);

impl Sessions {
    fn position(&self, client_id: &str) -> Option<usize> {
        self.0.iter().position(|(id, _)| id == client_id)
    }

    fn contains(&self, client_id: &str) -> bool {
        self.position(client_id).is_some()
    }

    fn get_mut(&mut self, client_id: &str) -> Option<&mut Session> {
        self.0.iter_mut().find(|(id, _)| id == client_id).map(|(_, s)| s)
    }

    fn remove(&mut self, client_id: &str) -> Option<Session> {
        self.position(client_id).map(|i| self.0.swap_remove(i).1)
    }

    /// Adds a session; the caller removed any session of the same client id first.
    fn insert(&mut self, client_id: &str, session: Session) {
        debug_assert!(!self.contains(client_id));
        // Exactly one more slot: a first `push` would otherwise allocate four.
        self.0.reserve_exact(1);
        self.0.push((client_id.to_string(), session));
    }

    fn retain(&mut self, keep: impl Fn(&Session) -> bool) {
        self.0.retain(|(_, s)| keep(s));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &Session> {
        self.0.iter().map(|(_, s)| s)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.0.iter_mut().map(|(_, s)| s)
    }

    /// The client id of the session that has been offline longest, if any is offline.
    fn oldest_offline(&self) -> Option<String> {
        self.0.iter().filter_map(|(id, s)| Some((s.offline_since?, id))).min().map(|(_, id)| id.clone())
    }
}

/// A connection being bound to a session by [`Registry::attach`].
pub(crate) struct NewConnection {
    pub conn_id: u64,
    pub signal: Arc<LiveSignal>,
    /// How it proved who it is (see [`Registry::revoke_credential`]).
    pub credential: Credential,
}

/// Asks the live connections of `sessions` that match `which` to close as not authorized.
fn close_live<'a>(sessions: impl Iterator<Item = &'a Session>, which: impl Fn(&Live) -> bool) -> usize {
    let mut closed = 0;
    for live in sessions.filter_map(|s| s.live.as_ref()).filter(|l| which(l)) {
        live.signal.close(CloseReason::NotAuthorized);
        closed += 1;
    }
    closed
}

/// What [`Registry::attach`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attached {
    /// A persistent session was resumed (CONNACK "session present").
    pub session_present: bool,
    /// A live connection of the same session was asked to close.
    pub took_over: bool,
}

/// What happened to one actuation request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Messages queued for a connected device.
    pub live: usize,
    /// Messages queued for an offline persistent session.
    pub offline: usize,
    /// Older messages dropped because a queue was full.
    pub dropped: usize,
}

/// [`Registry::attach`] found the device at its session cap with every session live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManySessions;

/// All sessions of this node.
pub(crate) struct Registry {
    devices: Mutex<HashMap<DeviceRef, Sessions>>,
    max_queued: usize,
    max_sessions: usize,
}

impl Registry {
    /// `max_queued` messages per offline session; `max_sessions` sessions (live or
    /// stored) per device: each client id a device invents with a persistent session
    /// would otherwise keep a queue for a day.
    pub fn new(max_queued: usize, max_sessions: usize) -> Self {
        Self { devices: Mutex::new(HashMap::new()), max_queued: max_queued.max(1), max_sessions: max_sessions.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceRef, Sessions>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds connection `conn_id` to the session `(device, client_id)`.
    ///
    /// `clean_start` discards any stored state; otherwise a stored session is resumed
    /// (subscriptions and queued messages). A live connection of the same session is
    /// asked to close ([`CloseReason::TakenOver`]). A new session beyond the device's
    /// cap evicts the session that has been offline longest, or is refused when every
    /// session of the device is live.
    pub fn attach(
        &self,
        device: &DeviceRef,
        client_id: &str,
        conn: NewConnection,
        clean_start: bool,
        expiry: Option<Duration>,
    ) -> Result<Attached, TooManySessions> {
        let NewConnection { conn_id, signal, credential } = conn;
        let now = Instant::now();
        let mut devices = self.lock();
        let sessions = devices.entry(device.clone()).or_default();
        sessions.retain(|s| !s.expired(now));
        if !sessions.contains(client_id) && sessions.len() >= self.max_sessions {
            match sessions.oldest_offline() {
                Some(id) => {
                    sessions.remove(&id);
                    metrics::counter!("ingot_mqtt_sessions_evicted_total").increment(1);
                }
                None => return Err(TooManySessions),
            }
        }
        let mut session = sessions.remove(client_id);
        let mut took_over = false;
        if let Some(live) = session.as_mut().and_then(|s| s.live.take()) {
            live.signal.close(CloseReason::TakenOver);
            took_over = true;
        }
        let resumable = session.filter(|s| !clean_start && s.expiry.is_some() && !s.expired(now));
        let session_present = resumable.is_some();
        let mut session = resumable.unwrap_or_else(|| Session::new(expiry));
        session.expiry = expiry;
        session.offline_since = None;
        if !session.queue.is_empty() {
            signal.wake();
        }
        session.live = Some(Live { conn_id, signal, credential });
        sessions.insert(client_id, session);
        Ok(Attached { session_present, took_over })
    }

    /// Another node bound a connection to session `(device, client_id)`: this node's
    /// connection of it (if any) closes as taken over, and the session leaves this node.
    /// Returns what the other node continues with: a persistent session's subscriptions
    /// and queued messages, unless the new connection asked for a clean start.
    pub fn hand_over(&self, device: &DeviceRef, client_id: &str, clean_start: bool) -> Option<SessionState> {
        let mut devices = self.lock();
        let sessions = devices.get_mut(device)?;
        let session = sessions.remove(client_id)?;
        if sessions.is_empty() {
            devices.remove(device);
        }
        drop(devices);
        if let Some(live) = &session.live {
            live.signal.close(CloseReason::TakenOver);
        }
        if clean_start || session.expiry.is_none() || session.expired(Instant::now()) {
            return None;
        }
        let queue = session
            .queue
            .into_iter()
            .map(|m| (m.topic, m.qos, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect();
        Some(SessionState { subscriptions: session.subscriptions, queue })
    }

    /// Takes over what another node handed over ([`Self::hand_over`]) into session
    /// `(device, client_id)` if it is here: its subscriptions are added, its messages go
    /// before the ones queued since. Returns false when there is no such session any more.
    pub fn adopt(&self, device: &DeviceRef, client_id: &str, state: SessionState) -> bool {
        let mut devices = self.lock();
        let Some(session) = devices.get_mut(device).and_then(|s| s.get_mut(client_id)) else { return false };
        for (form, qos) in state.subscriptions {
            if !session.subscriptions.iter().any(|(f, _)| *f == form) {
                session.subscriptions.push((form, qos));
            }
        }
        for (topic, qos, payload) in state.queue.into_iter().rev() {
            if session.queue.len() >= self.max_queued {
                break;
            }
            session.queue.push_front(Outbound { topic, qos, payload: Bytes::from(payload) });
        }
        if let Some(live) = &session.live
            && !session.queue.is_empty()
        {
            live.signal.wake();
        }
        true
    }

    /// Ends every live connection of `device` ([`CloseReason::NotAuthorized`]) and drops
    /// its stored sessions: the device was deleted. Returns the number of connections
    /// told to close.
    pub fn revoke_device(&self, device: &DeviceRef) -> usize {
        let mut devices = self.lock();
        let Some(sessions) = devices.remove(device) else { return 0 };
        close_live(sessions.values(), |_| true)
    }

    /// Ends the live connections of `device` that a withdrawn credential let in: with a
    /// `certificate` (fingerprint), those that presented it; without, those that did not
    /// come in with a certificate (the device got a new secret). Returns how many were
    /// told to close.
    pub fn revoke_credential(&self, device: &DeviceRef, certificate: Option<&str>) -> usize {
        let devices = self.lock();
        let Some(sessions) = devices.get(device) else { return 0 };
        close_live(sessions.values(), |l| match (&l.credential, certificate) {
            (Credential::Certificate(used), Some(withdrawn)) => used == withdrawn,
            (Credential::Certificate(_), None) | (_, Some(_)) => false,
            (_, None) => true,
        })
    }

    /// Ends the live connections of `tenant` that came in without a secret (the tenant
    /// left unsecured mode). Returns how many were told to close.
    pub fn revoke_unsecured(&self, tenant: &str) -> usize {
        let devices = self.lock();
        devices
            .iter()
            .filter(|(d, _)| d.tenant == tenant)
            .map(|(_, sessions)| close_live(sessions.values(), |l| l.credential == Credential::Unsecured))
            .sum()
    }

    /// Unbinds connection `conn_id`; a persistent session stays, any other one ends.
    /// Does nothing when the session was taken over by another connection meanwhile.
    pub fn detach(&self, device: &DeviceRef, client_id: &str, conn_id: u64) {
        let mut devices = self.lock();
        let Some(sessions) = devices.get_mut(device) else { return };
        let Some(session) = sessions.get_mut(client_id) else { return };
        if session.live.as_ref().is_none_or(|l| l.conn_id != conn_id) {
            return;
        }
        session.live = None;
        if session.expiry.is_some() {
            session.offline_since = Some(Instant::now());
        } else {
            sessions.remove(client_id);
            if sessions.is_empty() {
                devices.remove(device);
            }
        }
    }

    /// Runs `f` on the session if `conn_id` is still its live connection.
    fn with_live<R>(
        &self,
        device: &DeviceRef,
        client_id: &str,
        conn_id: u64,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut devices = self.lock();
        let session = devices.get_mut(device)?.get_mut(client_id)?;
        if session.live.as_ref().is_some_and(|l| l.conn_id == conn_id) { Some(f(session)) } else { None }
    }

    /// Records a subscription to the device's config topic in `form`.
    pub fn subscribe(&self, device: &DeviceRef, client_id: &str, conn_id: u64, form: TopicForm, qos: Qos) {
        self.with_live(device, client_id, conn_id, |s| match s.subscriptions.iter_mut().find(|(f, _)| *f == form) {
            Some(existing) => existing.1 = qos,
            None => s.subscriptions.push((form, qos)),
        });
    }

    pub fn unsubscribe(&self, device: &DeviceRef, client_id: &str, conn_id: u64, form: TopicForm) {
        self.with_live(device, client_id, conn_id, |s| s.subscriptions.retain(|(f, _)| *f != form));
    }

    /// Takes the next message for connection `conn_id`.
    pub fn next_outbound(&self, device: &DeviceRef, client_id: &str, conn_id: u64) -> Option<Outbound> {
        self.with_live(device, client_id, conn_id, |s| s.queue.pop_front()).flatten()
    }

    /// Puts back a message whose delivery did not complete, for the next connection of a
    /// persistent session. Returns false when it was dropped (no persistent session, or
    /// its queue is full).
    pub fn requeue(&self, device: &DeviceRef, client_id: &str, msg: Outbound) -> bool {
        let mut devices = self.lock();
        let Some(session) = devices.get_mut(device).and_then(|s| s.get_mut(client_id)) else { return false };
        if session.expiry.is_none() || session.queue.len() >= self.max_queued {
            return false;
        }
        session.queue.push_front(msg);
        true
    }

    /// Queues `payload` on every config topic the device's sessions subscribed to.
    pub fn deliver(&self, device: &DeviceRef, payload: &Bytes) -> Delivery {
        let now = Instant::now();
        let mut outcome = Delivery::default();
        let mut devices = self.lock();
        let Some(sessions) = devices.get_mut(device) else { return outcome };
        sessions.retain(|s| !s.expired(now));
        for session in sessions.values_mut() {
            for &(form, qos) in &session.subscriptions {
                if session.queue.len() >= self.max_queued {
                    session.queue.pop_front();
                    outcome.dropped += 1;
                }
                let topic = DeviceTopic::format(device, TopicKind::Config, form);
                session.queue.push_back(Outbound { topic, qos, payload: payload.clone() });
                if session.live.is_some() {
                    outcome.live += 1;
                } else {
                    outcome.offline += 1;
                }
            }
            if let Some(live) = &session.live
                && !session.subscriptions.is_empty()
            {
                live.signal.wake();
            }
        }
        if sessions.is_empty() {
            devices.remove(device);
        }
        outcome
    }

    /// Asks every live connection to close (server shutdown).
    pub fn close_all(&self) {
        for session in self.lock().values().flat_map(Sessions::values) {
            if let Some(live) = &session.live {
                live.signal.close(CloseReason::ServerShutdown);
            }
        }
    }

    /// Forgets offline sessions whose expiry passed.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let mut devices = self.lock();
        devices.retain(|_, sessions| {
            sessions.retain(|s| !s.expired(now));
            !sessions.is_empty()
        });
    }

    #[cfg(test)]
    fn session_count(&self) -> usize {
        self.lock().values().map(Sessions::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceRef {
        DeviceRef::new("t", "d").unwrap()
    }

    const DAY: Option<Duration> = Some(Duration::from_secs(86_400));

    fn conn(conn_id: u64, signal: Arc<LiveSignal>) -> NewConnection {
        NewConnection { conn_id, signal, credential: Credential::Secret }
    }

    #[test]
    fn clean_session_ends_with_its_connection() {
        let reg = Registry::new(10, 4);
        let a = reg.attach(&dev(), "c", conn(1, Arc::default()), true, None).unwrap();
        assert_eq!(a, Attached { session_present: false, took_over: false });
        reg.subscribe(&dev(), "c", 1, TopicForm::Colon, Qos::AtLeastOnce);
        reg.detach(&dev(), "c", 1);
        assert_eq!(reg.session_count(), 0);
        assert_eq!(reg.deliver(&dev(), &Bytes::from_static(b"{}")), Delivery::default());
    }

    #[test]
    fn persistent_session_queues_while_offline_and_drops_oldest() {
        let reg = Registry::new(2, 4);
        reg.attach(&dev(), "c", conn(1, Arc::default()), false, DAY).unwrap();
        reg.subscribe(&dev(), "c", 1, TopicForm::Mosca, Qos::AtLeastOnce);
        reg.detach(&dev(), "c", 1);
        for n in 0..3 {
            reg.deliver(&dev(), &Bytes::from(format!("{{\"n\":{n}}}")));
        }
        let a = reg.attach(&dev(), "c", conn(2, Arc::default()), false, DAY).unwrap();
        assert!(a.session_present);
        assert!(reg.next_outbound(&dev(), "c", 1).is_none(), "not for a stale connection");
        let got: Vec<_> = std::iter::from_fn(|| reg.next_outbound(&dev(), "c", 2)).collect();
        assert_eq!(got.iter().map(|o| &o.payload[..]).collect::<Vec<_>>(), [&b"{\"n\":1}"[..], b"{\"n\":2}"]);
        assert_eq!(got[0].topic, "/t/d/config");
    }

    #[test]
    fn clean_start_discards_a_stored_session() {
        let reg = Registry::new(10, 4);
        reg.attach(&dev(), "c", conn(1, Arc::default()), false, DAY).unwrap();
        reg.subscribe(&dev(), "c", 1, TopicForm::Colon, Qos::AtMostOnce);
        reg.detach(&dev(), "c", 1);
        let a = reg.attach(&dev(), "c", conn(2, Arc::default()), true, None).unwrap();
        assert!(!a.session_present);
        assert_eq!(reg.deliver(&dev(), &Bytes::from_static(b"{}")), Delivery::default());
    }

    #[test]
    fn takeover_closes_the_old_connection_and_ignores_its_detach() {
        let reg = Registry::new(10, 4);
        let old = Arc::new(LiveSignal::default());
        reg.attach(&dev(), "c", conn(1, old.clone()), true, None).unwrap();
        let a = reg.attach(&dev(), "c", conn(2, Arc::default()), true, None).unwrap();
        assert!(a.took_over);
        assert_eq!(old.close_reason(), Some(CloseReason::TakenOver));
        reg.detach(&dev(), "c", 1);
        assert_eq!(reg.session_count(), 1, "the new connection keeps the session");
    }

    #[test]
    fn expired_sessions_are_purged() {
        let reg = Registry::new(10, 4);
        reg.attach(&dev(), "c", conn(1, Arc::default()), false, Some(Duration::ZERO)).unwrap();
        reg.detach(&dev(), "c", 1);
        reg.purge_expired();
        assert_eq!(reg.session_count(), 0);
    }

    #[test]
    fn sessions_per_device_are_capped_evicting_the_oldest_offline() {
        let reg = Registry::new(10, 2);
        reg.attach(&dev(), "a", conn(1, Arc::default()), false, DAY).unwrap();
        reg.detach(&dev(), "a", 1);
        reg.attach(&dev(), "b", conn(2, Arc::default()), false, DAY).unwrap();
        reg.detach(&dev(), "b", 2);
        reg.attach(&dev(), "c", conn(3, Arc::default()), false, DAY).unwrap();
        assert_eq!(reg.session_count(), 2);
        // "a" (offline longest) went; "b" is still there to resume.
        assert!(reg.attach(&dev(), "b", conn(4, Arc::default()), false, DAY).unwrap().session_present);
        // Both sessions live now: a third client id is refused, not let in.
        assert_eq!(reg.attach(&dev(), "d", conn(5, Arc::default()), false, DAY), Err(TooManySessions));
        assert!(reg.attach(&dev(), "a", conn(6, Arc::default()), true, None).is_err());
        // Another device has its own cap.
        let other = DeviceRef::new("t", "other").unwrap();
        assert!(reg.attach(&other, "a", conn(7, Arc::default()), false, DAY).is_ok());
    }

    /// Node A held a persistent session with queued actuation; the device connects to
    /// node B: A's connection closes as taken over, and B ends up with A's subscriptions
    /// and queue before what B queued since.
    #[test]
    fn a_persistent_session_moves_to_the_node_that_took_it_over() {
        let (node_a, node_b) = (Registry::new(10, 4), Registry::new(10, 4));
        let on_a = Arc::new(LiveSignal::default());
        node_a.attach(&dev(), "c", conn(1, on_a.clone()), false, DAY).unwrap();
        node_a.subscribe(&dev(), "c", 1, TopicForm::Colon, Qos::AtLeastOnce);
        node_a.detach(&dev(), "c", 1);
        node_a.deliver(&dev(), &Bytes::from_static(b"{\"fan\":1}"));

        node_b.attach(&dev(), "c", conn(2, Arc::default()), false, DAY).unwrap();
        node_b.deliver(&dev(), &Bytes::from_static(b"{\"fan\":2}")); // not subscribed on B yet: nothing
        let state = node_a.hand_over(&dev(), "c", false).expect("a persistent session's state");
        assert_eq!(node_a.session_count(), 0, "the session left node A");
        assert!(node_b.adopt(&dev(), "c", state));
        node_b.deliver(&dev(), &Bytes::from_static(b"{\"fan\":3}"));
        let got: Vec<_> = std::iter::from_fn(|| node_b.next_outbound(&dev(), "c", 2)).collect();
        assert_eq!(got.iter().map(|o| &o.payload[..]).collect::<Vec<_>>(), [&b"{\"fan\":1}"[..], b"{\"fan\":3}"]);
        assert_eq!((got[0].topic.as_str(), got[0].qos), ("t:d/config", Qos::AtLeastOnce));

        // A live connection on the old node is closed; a clean start takes nothing along.
        let live = Arc::new(LiveSignal::default());
        node_a.attach(&dev(), "c", conn(3, live.clone()), false, DAY).unwrap();
        assert_eq!(node_a.hand_over(&dev(), "c", true), None);
        assert_eq!(live.close_reason(), Some(CloseReason::TakenOver));
        assert_eq!(node_a.hand_over(&dev(), "other", false), None, "a session it never had");
        assert!(!node_a.adopt(&dev(), "gone", SessionState::default()), "a session that ended meanwhile");
    }

    #[test]
    fn revocation_closes_live_connections_and_drops_a_deleted_devices_sessions() {
        let reg = Registry::new(10, 4);
        let (s1, s2) = (Arc::new(LiveSignal::default()), Arc::new(LiveSignal::default()));
        reg.attach(&dev(), "a", conn(1, s1.clone()), false, DAY).unwrap();
        let unsecured = NewConnection { conn_id: 2, signal: s2.clone(), credential: Credential::Unsecured };
        reg.attach(&dev(), "b", unsecured, false, DAY).unwrap();
        assert_eq!(reg.revoke_unsecured("other-tenant"), 0);
        assert_eq!(reg.revoke_unsecured("t"), 1);
        assert_eq!((s1.close_reason(), s2.close_reason()), (None, Some(CloseReason::NotAuthorized)));
        assert_eq!(reg.revoke_credential(&dev(), None), 2);
        assert_eq!(s1.close_reason(), Some(CloseReason::NotAuthorized));
        assert_eq!(reg.session_count(), 2, "a new secret keeps the stored sessions");
        reg.revoke_device(&dev());
        assert_eq!(reg.session_count(), 0, "a deleted device keeps nothing");
    }

    #[test]
    fn a_withdrawn_credential_ends_only_the_connections_it_let_in() {
        let reg = Registry::new(10, 4);
        let signals: Vec<_> = (0..4).map(|_| Arc::new(LiveSignal::default())).collect();
        let credentials = [
            Credential::Secret,
            Credential::Certificate("AA:01".into()),
            Credential::Certificate("AA:02".into()),
            Credential::Unsecured,
        ];
        for (i, credential) in credentials.into_iter().enumerate() {
            let conn = NewConnection { conn_id: i as u64, signal: signals[i].clone(), credential };
            reg.attach(&dev(), &format!("c{i}"), conn, false, DAY).unwrap();
        }
        let closed = || signals.iter().map(|s| s.close_reason().is_some()).collect::<Vec<_>>();
        assert_eq!(reg.revoke_credential(&DeviceRef::new("t", "other").unwrap(), Some("AA:01")), 0);
        assert_eq!(reg.revoke_credential(&dev(), Some("AA:01")), 1, "that certificate's connection");
        assert_eq!(closed(), [false, true, false, false]);
        assert_eq!(reg.revoke_credential(&dev(), None), 2, "a new secret: the secret's and the unsecured one");
        assert_eq!(closed(), [true, true, false, true], "the other certificate's connection stays");
    }
}
