//! Per-connection state, and what a device connection does whatever its protocol version.
//!
//! [`connect`] authenticates and attaches a session; the resulting [`Connection`] lives as
//! long as the network connection (the `connection` loop owns it) and handles publishes,
//! subscriptions and the outbound (actuation) queue. Dropping it ends the connection's
//! share of the session and, after an abnormal disconnect, publishes the will.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use model::DeviceRef;

use super::Shared;
use super::registry::{CloseReason, Credential, LiveSignal, NewConnection, Outbound, Qos};
use crate::{CertificateRefusal, DeviceAuth, DeviceAuthError, DeviceLogin, IngestError, Submitted};

/// The agent name readings and rejections are counted under.
pub(crate) const AGENT: &str = "mqtt";

/// MQTT protocol version of a connection, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    V3,
    V5,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Self::V3 => "3.1.1",
            Self::V5 => "5",
        }
    }
}

/// A will message, kept until the connection ends.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub topic: String,
    pub payload: Bytes,
}

/// What a CONNECT asks for, independent of protocol version.
pub(crate) struct ConnectParams<'a> {
    pub protocol: Protocol,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub clean_start: bool,
    /// How long the session should outlive the connection; 0: it ends with it.
    pub session_expiry_secs: u32,
    pub keep_alive_secs: u16,
    pub will: Option<Will>,
    /// The client certificate, on the mutual-TLS listener.
    pub certificate: Option<crate::ClientCertificate>,
}

/// Why a CONNECT was refused; each adapter maps it to its CONNACK code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Wrong or missing device secret.
    BadCredentials,
    /// A client certificate not (or no longer) valid for its device.
    BadCertificate(CertificateRefusal),
    /// No such device.
    UnknownDevice,
    /// The identity is not `tenant:device`; `from_client_id` when it came from the client id.
    BadIdentity { from_client_id: bool },
    /// A persistent session needs a client id.
    ClientIdRequired,
    /// The device directory could not be asked.
    Unavailable,
    /// `max_connections` reached.
    TooManyConnections,
    /// The device has `max_sessions_per_device` sessions, all of them live.
    TooManySessions,
    /// A protocol level other than 4 (3.1.1) or 5.
    UnsupportedVersion,
}

impl Refusal {
    /// Metric label: a fixed set, never anything the client sent.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadCredentials => "bad_credentials",
            Self::BadCertificate(why) => why.reason(),
            Self::UnknownDevice => "unknown_device",
            Self::BadIdentity { .. } => "bad_identity",
            Self::ClientIdRequired => "client_id_required",
            Self::Unavailable => "unavailable",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManySessions => "too_many_sessions",
            Self::UnsupportedVersion => "unsupported_version",
        }
    }

    fn from_auth(e: &DeviceAuthError, identity_from_client_id: bool) -> Self {
        match e {
            DeviceAuthError::BadSecret | DeviceAuthError::SecretRequired => Self::BadCredentials,
            DeviceAuthError::Certificate(why) => Self::BadCertificate(*why),
            DeviceAuthError::UnknownDevice => Self::UnknownDevice,
            DeviceAuthError::BadIdentity => Self::BadIdentity { from_client_id: identity_from_client_id },
            DeviceAuthError::Unavailable => Self::Unavailable,
        }
    }
}

/// An accepted CONNECT.
pub(crate) struct Accepted {
    pub conn: Connection,
    pub session_present: bool,
    /// Set when the client sent an empty client id and the server chose one.
    pub assigned_client_id: Option<String>,
    /// Keep-alive the server enforces (the client's, capped at `max_keep_alive_secs`).
    pub keep_alive_secs: u16,
    /// True when `keep_alive_secs` differs from what the client asked for.
    pub keep_alive_capped: bool,
    /// Session expiry granted (v5 CONNACK tells the client when it is lower than asked).
    pub session_expiry_secs: u32,
}

/// Holds one of the `max_connections` slots while a connection is up.
pub(crate) struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    fn acquire(shared: &Arc<Shared>) -> Option<Self> {
        let max = shared.config.max_connections;
        shared.connections.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        metrics::gauge!("ingot_mqtt_connections").increment(1.0);
        Some(Self(shared.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("ingot_mqtt_connections").decrement(1.0);
    }
}

/// Authenticates a CONNECT and attaches its session.
pub(crate) async fn connect(shared: &Arc<Shared>, params: ConnectParams<'_>) -> Result<Accepted, Refusal> {
    let outcome = try_connect(shared, &params).await;
    match &outcome {
        Ok(accepted) => {
            metrics::counter!("ingot_mqtt_connects_total", "protocol" => params.protocol.label()).increment(1);
            tracing::info!(
                device = %accepted.conn.device, client_id = %accepted.conn.client_id, protocol = params.protocol.label(),
                session_present = accepted.session_present, "mqtt device connected"
            );
        }
        Err(refusal) => {
            metrics::counter!("ingot_mqtt_connections_refused_total", "reason" => refusal.reason()).increment(1);
            // The password is never logged; the client id and username are what the client claims.
            tracing::warn!(
                client_id = params.client_id,
                username = params.username.unwrap_or(""),
                certificate = params.certificate.as_ref().map_or("", |c| c.fingerprint.as_str()),
                protocol = params.protocol.label(),
                reason = refusal.reason(),
                "mqtt connection refused"
            );
        }
    }
    outcome
}

async fn try_connect(shared: &Arc<Shared>, p: &ConnectParams<'_>) -> Result<Accepted, Refusal> {
    let protocol = p.protocol;
    let slot = ConnectionSlot::acquire(shared).ok_or(Refusal::TooManyConnections)?;
    let persistent = p.session_expiry_secs > 0 && !(protocol == Protocol::V3 && p.clean_start);
    if p.client_id.is_empty() && (persistent || !p.clean_start) {
        return Err(Refusal::ClientIdRequired);
    }
    let login = DeviceLogin {
        username: p.username,
        password: p.password,
        client_id: p.client_id,
        certificate: p.certificate.as_ref(),
    };
    let identity_from_client_id = p.username.is_none_or(str::is_empty);
    let (device, how) =
        shared.ingest.authenticate_how(login).await.map_err(|e| Refusal::from_auth(&e, identity_from_client_id))?;

    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let assigned_client_id = p.client_id.is_empty().then(|| format!("ingot-{conn_id}"));
    let client_id = assigned_client_id.clone().unwrap_or_else(|| p.client_id.to_string());
    let session_expiry_secs = if persistent { p.session_expiry_secs.min(shared.config.session_expiry_secs) } else { 0 };
    let expiry = (session_expiry_secs > 0).then(|| Duration::from_secs(session_expiry_secs.into()));
    let max_keep_alive = shared.config.max_keep_alive_secs.max(1);
    let keep_alive_secs = if p.keep_alive_secs == 0 { max_keep_alive } else { p.keep_alive_secs.min(max_keep_alive) };

    let signal = Arc::new(LiveSignal::default());
    let credential = match (how, &p.certificate) {
        (DeviceAuth::Certificate, Some(cert)) => Credential::Certificate(cert.fingerprint.clone()),
        (DeviceAuth::Unsecured, _) => Credential::Unsecured,
        _ => Credential::Secret,
    };
    let new = NewConnection { conn_id, signal: signal.clone(), credential };
    let attached = shared.registry.attach(&device, &client_id, new, p.clean_start, expiry).map_err(|_| {
        tracing::info!(device = %device, client_id = %client_id, "mqtt session refused: every session of the device is live");
        Refusal::TooManySessions
    })?;
    if attached.took_over {
        tracing::info!(device = %device, client_id = %client_id, "mqtt session taken over by a new connection");
    }
    super::announce_session(shared, &device, &client_id, p.clean_start);
    let conn = Connection {
        shared: shared.clone(),
        device,
        client_id,
        conn_id,
        protocol,
        keep_alive_secs,
        will: Mutex::new(p.will.clone()),
        clean_disconnect: AtomicBool::new(false),
        last_received_ms: AtomicI64::new(0),
        signal,
        _slot: slot,
    };
    Ok(Accepted {
        conn,
        session_present: attached.session_present,
        assigned_client_id,
        keep_alive_secs,
        keep_alive_capped: keep_alive_secs != p.keep_alive_secs,
        session_expiry_secs,
    })
}

/// One authenticated device connection, owned by its connection loop.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    pub device: DeviceRef,
    pub client_id: String,
    conn_id: u64,
    protocol: Protocol,
    /// Keep-alive in force (the client's, capped).
    keep_alive_secs: u16,
    will: Mutex<Option<Will>>,
    clean_disconnect: AtomicBool,
    /// The time (ms) this connection last stamped a reading with ([`Self::next_received_at`]).
    last_received_ms: AtomicI64,
    signal: Arc<LiveSignal>,
    _slot: ConnectionSlot,
}

/// How far [`Connection::next_received_at`] may run ahead of the clock: a device sending
/// more than a reading per millisecond for longer gets equal times again, not times drifting
/// into the future.
const MAX_STAMP_LEAD_MS: i64 = 1000;

impl Connection {
    /// How long the connection may go without a whole packet: 1.5 × keep-alive
    /// ([MQTT-3.1.2-24]). A packet that stops half-way counts as none.
    pub fn packet_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.keep_alive_secs) * 1500)
    }

    /// The time to stamp this connection's next reading with (one without a time of its
    /// own): now, or 1 ms after the previous one when the clock has not moved on. History
    /// orders a device's readings by time and breaks ties by commit order, which is arrival
    /// order on one node but not when two nodes write batches at once: distinct times keep
    /// a device's order in a cluster too.
    fn next_received_at(&self) -> chrono::DateTime<chrono::Utc> {
        let now = chrono::Utc::now().timestamp_millis();
        // Only the connection's own loop stamps, one reading at a time.
        let last = self.last_received_ms.load(Ordering::Relaxed);
        let ms = if last >= now && last - now < MAX_STAMP_LEAD_MS { last + 1 } else { now };
        self.last_received_ms.store(ms, Ordering::Relaxed);
        chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)
    }

    /// Handles a PUBLISH: only the device's own attrs topic, payload stored durably.
    /// Resolves once the reading is on the bus, after this connection's earlier ones; the
    /// [`Submitted`] resolves once it is durable. Pass either outcome to [`Self::published`].
    pub async fn submit(&self, topic: &str, payload: &[u8]) -> Result<Submitted, IngestError> {
        let ingest = &self.shared.ingest;
        // Deleted or re-keyed while connected: nothing more is accepted, even before the
        // connection loop has closed the connection.
        let revoked = self.signal.close_reason() == Some(CloseReason::NotAuthorized);
        let checked = if revoked { Err(IngestError::Revoked) } else { ingest.check_publish_topic(&self.device, topic) };
        match checked {
            Ok(()) => ingest.submit_payload(AGENT, &self.device, payload, self.next_received_at()).await,
            Err(e) => {
                // submit_payload counts its own rejections; topic refusals are counted here.
                ingest.count_rejected(AGENT, &self.device.tenant, e.reason());
                Err(e)
            }
        }
    }

    /// Counts (and logs, if refused) how a PUBLISH ended.
    pub fn published(&self, outcome: &Result<(), IngestError>) {
        let label = match outcome {
            Ok(()) => "accepted",
            Err(IngestError::Bus(_) | IngestError::Unavailable) => "failed",
            Err(_) => "refused",
        };
        metrics::counter!("ingot_mqtt_publishes_total", "outcome" => label).increment(1);
        if let Err(e) = outcome {
            tracing::debug!(device = %self.device, reason = e.reason(), error = %e, "mqtt publish not accepted");
        }
    }

    /// Handles one SUBSCRIBE filter: only the device's own config topic, in either form.
    /// Returns the granted QoS (at most 1).
    pub fn subscribe(&self, filter: &str, requested: Qos) -> Result<Qos, IngestError> {
        match self.shared.ingest.check_subscribe_topic(&self.device, filter) {
            Ok(topic) => {
                self.shared.registry.subscribe(&self.device, &self.client_id, self.conn_id, topic.form, requested);
                Ok(requested)
            }
            Err(e) => {
                tracing::info!(device = %self.device, filter, reason = e.reason(), "mqtt subscription refused");
                metrics::counter!("ingot_mqtt_subscriptions_refused_total").increment(1);
                Err(e)
            }
        }
    }

    /// Handles the filters of an UNSUBSCRIBE (only the device's own topics mean anything).
    pub fn unsubscribe_each<'a>(&self, filters: impl Iterator<Item = &'a str>) {
        for filter in filters {
            if let Ok(topic) = self.shared.ingest.check_subscribe_topic(&self.device, filter) {
                self.shared.registry.unsubscribe(&self.device, &self.client_id, self.conn_id, topic.form);
            }
        }
    }

    /// The client sent DISCONNECT: no will, unless it asked for it (v5 reason 0x04).
    pub fn disconnected_by_client(&self, keep_will: bool) {
        self.clean_disconnect.store(!keep_will, Ordering::Relaxed);
    }

    /// Why the connection must close, once it must (taken over, revoked, shutdown).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.signal.close_reason()
    }

    /// Resolves when actuation was queued for this connection or it must close.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.signal.notified()
    }

    /// The next actuation message queued for this connection's session.
    pub fn next_outbound(&self) -> Option<Outbound> {
        self.shared.registry.next_outbound(&self.device, &self.client_id, self.conn_id)
    }

    /// Counts how an actuation message ended; an undelivered QoS 1 one is queued again for
    /// the session's next connection when it is persistent.
    pub fn actuated(&self, msg: Outbound, delivered: bool) {
        let outcome = if delivered {
            "delivered"
        } else if msg.qos == Qos::AtLeastOnce && self.shared.registry.requeue(&self.device, &self.client_id, msg) {
            "requeued"
        } else {
            "dropped"
        };
        metrics::counter!("ingot_mqtt_actuations_total", "outcome" => outcome).increment(1);
    }

    fn publish_will(&self, will: Will) {
        if let Err(e) = self.shared.ingest.check_publish_topic(&self.device, &will.topic) {
            tracing::info!(device = %self.device, topic = %will.topic, reason = e.reason(), "mqtt will dropped: not the device's attrs topic");
            return;
        }
        let ingest = self.shared.ingest.clone();
        let device = self.device.clone();
        // The connection is gone; the reading is stored by the main runtime.
        self.shared.runtime.spawn(async move {
            match ingest.ingest_payload(AGENT, &device, &will.payload, chrono::Utc::now()).await {
                Ok(()) => tracing::info!(device = %device, "mqtt will stored as a reading"),
                Err(e) => tracing::info!(device = %device, reason = e.reason(), "mqtt will not stored"),
            }
        });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.signal.close(CloseReason::Ended);
        self.shared.registry.detach(&self.device, &self.client_id, self.conn_id);
        let abnormal = !self.clean_disconnect.load(Ordering::Relaxed);
        let will = self.will.get_mut().map_or(None, Option::take);
        if abnormal && let Some(will) = will {
            self.publish_will(will);
        }
        tracing::info!(
            device = %self.device, client_id = %self.client_id, protocol = self.protocol.label(), abnormal,
            "mqtt device disconnected"
        );
    }
}
