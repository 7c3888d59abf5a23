//! The MQTT device agent: an MQTT 3.1.1 and 5 server for devices.
//!
//! Built on [ntex-mqtt], which owns the wire format, handshakes, keep-alive and packet
//! ids. The server runs its own ntex system on a dedicated thread (plus `workers` worker
//! threads, each a tokio current-thread runtime); [`MqttServer::start`] and
//! [`MqttHandle::shutdown`] are called from the rest of Ingot's tokio runtime.
//!
//! What a device may do (dojot's VerneMQ and mosca agents):
//! - connect as `tenant:device` (username + device secret as password, or, mosca style,
//!   no username and client id `tenant:device`) — see [`crate::IngestService::authenticate`];
//! - publish JSON readings to its own `tenant:device/attrs` or `/tenant/device/attrs`, QoS 0
//!   or 1. A QoS 1 PUBACK is sent only once the reading is durable;
//! - subscribe to its own `…/config` topic(s) and receive actuation (`configure` events
//!   from the bus) there, at the QoS it subscribed with.
//!
//! A device that is deleted, gets a new secret, or (having connected without one) whose
//! tenant leaves unsecured mode is disconnected at once (v5 DISCONNECT 0x87, v3 close):
//! the event relay consumes device events durably and asks its connections to close, and
//! a connection told so accepts no further PUBLISH.
//!
//! QoS 2 is not offered: v5 CONNACK advertises maximum QoS 1, and a QoS 2 PUBLISH ends
//! the connection (v5 DISCONNECT 0x9B QoS not supported, v3 plain close; ntex-mqtt
//! enforces both). Downgrading silently would acknowledge with weaker guarantees than
//! the device asked for.
//!
//! Modules: [`session`] per-connection logic, [`registry`] live and persistent sessions,
//! `v3`/`v5` thin protocol adapters, `in_order` per-connection ordering.
//!
//! In a cluster ([`MqttConfig::cluster`]) a node announces each session it binds; the
//! node that held it closes its connection and hands a persistent session over (see
//! `hand_over`), so one session has one connection across nodes.
//!
//! Limits worth knowing: persistent sessions are kept in memory only; the publishes of
//! one connection are handled one at a time (see `in_order`); v5 will delay and
//! message expiry are not implemented (a will is published at once).
//!
//! [ntex-mqtt]: https://docs.rs/ntex-mqtt

mod in_order;
mod registry;
mod session;
mod tls;
mod v3;
mod v5;

pub use tls::MqttTls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use bus::{Mode, Subscription};
use bytes::Bytes;
use model::{DeviceEvent, DeviceRef, EventKind};
use ntex_mqtt::{v3 as mqtt3, v5 as mqtt5};
use ntex_service::cfg::SharedCfg;
use ntex_service::fn_service;
use tokio::runtime::Handle;

use crate::IngestService;
use in_order::InOrder;
use registry::Registry;
use session::Connection;

/// Room for the topic, packet id and v5 properties on top of the largest payload.
pub const PACKET_HEADROOM: usize = 1024;

/// How long [`MqttHandle::shutdown`] waits for connections to finish.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of the MQTT server.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Address to listen on. Default `0.0.0.0:1883`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Authenticated connections at once; more are refused (v3 ServiceUnavailable,
    /// v5 0x97 QuotaExceeded). Default 100 000.
    pub max_connections: usize,
    /// Largest payload in bytes; 0 (the default) means [`IngestService::max_payload`].
    /// Packets larger than this plus [`PACKET_HEADROOM`] close the connection
    /// (v5 DISCONNECT 0x95).
    pub max_payload: usize,
    /// Keep-alive the server enforces at most, in seconds; a client asking for more (or
    /// none) gets this (v5 tells it in CONNACK "server keep alive"). Default 300.
    pub max_keep_alive_secs: u16,
    /// Unacknowledged QoS 1 messages in flight per connection, each way (v5 "receive
    /// maximum"). Default 32.
    pub max_inflight: u16,
    /// Longest life of a persistent session after its connection ended, in seconds
    /// (v3 `clean_session=false` gets exactly this). Default 86 400 (1 day).
    pub session_expiry_secs: u32,
    /// Actuation messages kept per session while its device is offline; the oldest is
    /// dropped (and counted) beyond. Default 100.
    pub max_queued_per_session: usize,
    /// Sessions (live or stored) per device. A new client id beyond it evicts the session
    /// offline longest, or is refused (v3 ServerUnavailable, v5 0x97) when all are live.
    /// Default 16.
    pub max_sessions_per_device: usize,
    /// ntex worker threads. Default: the number of CPUs.
    pub workers: usize,
    /// One node of several on a shared bus: a session bound here is announced, so that
    /// another node holding it closes its connection and hands its state over. Default
    /// false (one node: nothing to announce).
    pub cluster: bool,
    /// MQTT over mutual TLS (client certificates identify devices); none by default.
    pub tls: Option<MqttTls>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 100_000,
            max_payload: 0,
            max_keep_alive_secs: 300,
            max_inflight: 32,
            session_expiry_secs: 86_400,
            max_queued_per_session: 100,
            max_sessions_per_device: 16,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            cluster: false,
            tls: None,
        }
    }
}

/// Why the MQTT server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid MQTT configuration: {0}")]
    Config(&'static str),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("MqttServer::start must be called from a tokio runtime")]
    NoRuntime,
    #[error("the MQTT server failed to start: {0}")]
    Start(String),
    #[error("the bus is not ready for the MQTT relay: {0}")]
    Bus(#[from] bus::BusError),
}

/// Why ntex-mqtt must close a connection (logged by ntex-mqtt, never sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    #[error("could not store a reading: {0}")]
    Storage(String),
    #[error("the device's credentials were revoked")]
    Revoked,
    #[error("could not read a payload: {0}")]
    Payload(String),
    #[error("connection service failed to start")]
    Init,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

// ntex-mqtt's service plumbing converts initialisation errors of `fn_service` (`()`).
impl From<()> for ConnectionError {
    fn from((): ()) -> Self {
        Self::Init
    }
}

// v5 publish errors would become PUBACKs through this; the v5 adapter never returns one.
impl TryFrom<ConnectionError> for mqtt5::PublishAck {
    type Error = ConnectionError;

    fn try_from(err: ConnectionError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    ingest: Arc<IngestService>,
    registry: Registry,
    config: MqttConfig,
    /// Authenticated connections now.
    connections: AtomicUsize,
    next_conn_id: AtomicU64,
    /// The caller's tokio runtime: wills are stored there once their connection is gone.
    runtime: Handle,
    /// This server among the nodes of a cluster (random): tells its own session
    /// announcements from other nodes'.
    instance: String,
}

/// Starts MQTT servers.
pub struct MqttServer;

impl MqttServer {
    /// Binds `config.listen`, starts the server and the actuation relay, and returns once
    /// it accepts connections. Must be called from a tokio runtime.
    pub async fn start(mut config: MqttConfig, ingest: Arc<IngestService>) -> Result<MqttHandle, MqttError> {
        if config.max_payload == 0 {
            config.max_payload = ingest.max_payload();
        }
        validate(&config)?;
        let runtime = Handle::try_current().map_err(|_| MqttError::NoRuntime)?;
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|source| MqttError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| MqttError::Bind { addr: config.listen, source })?;
        let tls_listener = match &config.tls {
            Some(tls) => {
                let l = std::net::TcpListener::bind(tls.listen)
                    .map_err(|source| MqttError::Bind { addr: tls.listen, source })?;
                let addr = l.local_addr().map_err(|source| MqttError::Bind { addr: tls.listen, source })?;
                Some((l, addr))
            }
            None => None,
        };
        let tls_local_addr = tls_listener.as_ref().map(|(_, a)| *a);

        // Subscribed before accepting connections, so no actuation request slips by;
        // durable, so that no revocation (device deleted, secret changed) is ever dropped;
        // every node gets every event (each holds its own sessions).
        let events = ingest.bus().subscribe_events("mqtt", Mode::EachNode);
        // On NATS the relay's consumer is made after subscribing: wait for it, so that no
        // other node's revocation or actuation slips by before the first connection.
        ingest.bus().ready().await?;
        let shared = Arc::new(Shared {
            registry: Registry::new(config.max_queued_per_session, config.max_sessions_per_device),
            ingest,
            config,
            connections: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            runtime: runtime.clone(),
            instance: model::secret::random_hex(8),
        });

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ingot-mqtt".into())
            .spawn(move || run_server(thread_shared, listener, tls_listener.map(|(l, _)| l), ready_tx))
            .map_err(|e| MqttError::Start(e.to_string()))?;
        let server = match ready_rx.await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => return Err(MqttError::Start(e.to_string())),
            Err(_) => return Err(MqttError::Start("the server thread ended early".into())),
        };
        let relay = runtime.spawn(relay_events(shared.clone(), events));
        tracing::info!(%local_addr, tls = ?tls_local_addr, "mqtt server listening");
        Ok(MqttHandle { local_addr, tls_local_addr, server: Some(server), thread: Some(thread), relay, shared })
    }
}

fn validate(config: &MqttConfig) -> Result<(), MqttError> {
    if config.workers == 0 {
        return Err(MqttError::Config("workers must be at least 1"));
    }
    if config.max_connections == 0 {
        return Err(MqttError::Config("max_connections must be at least 1"));
    }
    if config.max_sessions_per_device == 0 {
        return Err(MqttError::Config("max_sessions_per_device must be at least 1"));
    }
    if config.max_payload.saturating_add(PACKET_HEADROOM) > u32::MAX as usize {
        return Err(MqttError::Config("max_payload is too large"));
    }
    Ok(())
}

/// A running MQTT server. Dropping it stops the server abruptly; prefer [`MqttHandle::shutdown`].
pub struct MqttHandle {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    server: Option<ntex_server::Server<ntex_server::net::Connection>>,
    thread: Option<std::thread::JoinHandle<()>>,
    relay: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl MqttHandle {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The mutual-TLS listener's address, if there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// Authenticated connections now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Graceful shutdown: stops accepting, asks every connection to close (v5 DISCONNECT
    /// 0x8B), waits for them (at most a few seconds) and stops the server's threads.
    pub async fn shutdown(mut self) {
        self.shared.registry.close_all();
        if let Some(server) = self.server.take() {
            server.stop(true).await;
        }
        self.relay.abort();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!(local_addr = %self.local_addr, "mqtt server stopped");
    }
}

impl Drop for MqttHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // `stop` sends its command at once; the returned future only waits for it.
            drop(server.stop(false));
            self.relay.abort();
        }
    }
}

type StartResult = Result<ntex_server::Server<ntex_server::net::Connection>, std::io::Error>;

/// The server thread: an ntex system running the MQTT service until it is stopped.
fn run_server(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tls_listener: Option<std::net::TcpListener>,
    ready: tokio::sync::oneshot::Sender<StartResult>,
) {
    let workers = shared.config.workers;
    // ntex's limit is per worker and process-wide; ours (at CONNECT) is the one that
    // answers with a CONNACK, so ntex's only has to be above it.
    let maxconn = shared.config.max_connections.saturating_add(1024);
    let packet_limit = u32::try_from(shared.config.max_payload + PACKET_HEADROOM).unwrap_or(u32::MAX);
    let max_inflight = shared.config.max_inflight.max(1);
    ntex_rt::System::new("ingot-mqtt", ntex_net::DefaultRuntime).block_on(async move {
        let mqtt_cfg: SharedCfg = SharedCfg::new("mqtt")
            .add(
                ntex_mqtt::MqttServiceConfig::new()
                    .set_max_qos(ntex_mqtt::QoS::AtLeastOnce)
                    .set_max_size(packet_limit)
                    // Payloads are handed over whole when they arrived whole; a PUBLISH split
                    // across reads still comes in chunks (see in_order).
                    .set_min_chunk_size(packet_limit)
                    .set_max_receive(max_inflight)
                    .set_max_send(max_inflight)
                    .set_connect_timeout(ntex_util::time::Seconds(10)),
            )
            .into();
        let tls_shared = shared.clone();
        let built = ntex_server::net::build()
            .workers(workers)
            .disable_signals()
            .maxconn(maxconn)
            .shutdown_timeout(SHUTDOWN_TIMEOUT)
            .stop_runtime()
            .listen("mqtt", listener, async move |_| mqtt_service(shared.clone()))
            .map(|builder| builder.config("mqtt", mqtt_cfg.clone()))
            .and_then(|builder| match (tls_listener, tls_shared.config.tls.clone()) {
                (Some(l), Some(tls)) => builder
                    .listen("mqtts", l, async move |_| {
                        ntex_service::chain_factory(ntex_tls::rustls::TlsAcceptor::new(tls.config.clone()))
                            .map_err(|e| {
                                // No certificate, another CA's, expired, or not TLS at all.
                                metrics::counter!("ingot_mqtt_connections_refused_total", "reason" => "tls")
                                    .increment(1);
                                tracing::warn!(error = %e, "mqtts connection refused at the TLS handshake");
                                ntex_mqtt::MqttError::Service(ConnectionError::Tls(e))
                            })
                            .and_then(mqtt_service(tls_shared.clone()))
                    })
                    .map(|builder| builder.config("mqtts", mqtt_cfg)),
                _ => Ok(builder),
            });
        match built {
            Ok(builder) => {
                let server = builder.run();
                if ready.send(Ok(server.clone())).is_ok() {
                    let _ = server.await;
                } else {
                    server.stop(false).await;
                }
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
}

/// What ntex-mqtt needs for one protocol version (a named bound keeps signatures short).
trait ProtocolService:
    ntex_service::ServiceFactory<
        ntex_io::IoBoxed,
        SharedCfg,
        Response = (),
        Error = ntex_mqtt::MqttError<ConnectionError>,
        InitError = (),
    > + 'static
{
}

impl<T> ProtocolService for T where
    T: ntex_service::ServiceFactory<
            ntex_io::IoBoxed,
            SharedCfg,
            Response = (),
            Error = ntex_mqtt::MqttError<ConnectionError>,
            InitError = (),
        > + 'static
{
}

/// The per-worker MQTT service: v3 and v5 adapters around [`Connection`].
fn mqtt_service(
    shared: Arc<Shared>,
) -> ntex_mqtt::MqttServer<impl ProtocolService, impl ProtocolService, ConnectionError, ()> {
    let v3_shared = shared.clone();
    let v5_shared = shared;
    ntex_mqtt::MqttServer::new()
        .v3(mqtt3::MqttServer::new(fn_service(async move |h: mqtt3::Handshake| v3::handshake(&v3_shared, h).await))
            .replace_middlewares(InOrder)
            .protocol(ntex_service::fn_factory_with_config(async |conn: mqtt3::Session<Connection>| {
                Ok::<_, ConnectionError>(fn_service(async move |msg| v3::protocol(&conn, msg).await))
            }))
            .publish(ntex_service::fn_factory_with_config(async |conn: mqtt3::Session<Connection>| {
                Ok::<_, ConnectionError>(fn_service(async move |msg| v3::publish(&conn, msg).await))
            })))
        .v5(mqtt5::MqttServer::new(fn_service(async move |h: mqtt5::Handshake| v5::handshake(&v5_shared, h).await))
            .replace_middlewares(InOrder)
            .protocol(ntex_service::fn_factory_with_config(async |conn: mqtt5::Session<Connection>| {
                Ok::<_, ConnectionError>(fn_service(async move |msg| v5::protocol(&conn, msg).await))
            }))
            .publish(ntex_service::fn_factory_with_config(async |conn: mqtt5::Session<Connection>| {
                Ok::<_, ConnectionError>(fn_service(async move |msg| v5::publish(&conn, msg).await))
            })))
}

/// One subscription of a SUBSCRIBE packet, whatever its protocol version: the adapters
/// implement it for ntex-mqtt's v3 and v5 types, [`subscribe_each`] holds the logic.
trait SubscriptionRequest {
    fn filter(&self) -> &str;
    fn requested(&self) -> ntex_mqtt::QoS;
    fn grant(&mut self, qos: ntex_mqtt::QoS);
    fn refuse(&mut self);
}

/// Grants each subscription to the device's own config topic (at most QoS 1) and refuses
/// every other one.
fn subscribe_each<S: SubscriptionRequest>(conn: &Connection, subscriptions: impl Iterator<Item = S>) {
    for mut sub in subscriptions {
        match conn.subscribe(sub.filter(), qos_in(sub.requested())) {
            Ok(granted) => sub.grant(qos_out(granted)),
            Err(_) => sub.refuse(),
        }
    }
}

/// Reads a PUBLISH's payload (`read`: ntex-mqtt's `read_all`), refusing what no honest
/// packet does. Found by `fuzz/mqtt_server`, see FUZZING.md:
/// - a payload longer than its packet: ntex-mqtt 8.2.1's codecs compute the payload length
///   as remaining length minus header length unchecked, so a header (topic, packet id, v5
///   properties) claiming more bytes than the packet wraps it to nearly 4 GiB (and panics
///   where overflow checks are on), which `read_all` would buffer whatever the packet limit;
/// - a payload that stops coming: ntex-mqtt does not count a connection whose handler
///   waits as idle, so keep-alive never ends it; the wait is bounded by 1.5 × keep-alive,
///   the time a connection may go without a whole packet ([MQTT-3.1.2-24]).
async fn read_payload<F>(
    conn: &Connection,
    payload_size: usize,
    packet_size: u32,
    read: F,
) -> Result<ntex_bytes::Bytes, ConnectionError>
where
    F: Future<Output = Result<ntex_bytes::Bytes, ntex_mqtt::error::PayloadError>>,
{
    if payload_size > packet_size as usize {
        return Err(ConnectionError::Payload(format!(
            "malformed PUBLISH: a {payload_size}-byte payload in a {packet_size}-byte packet"
        )));
    }
    match ntex_util::time::timeout(conn.packet_timeout(), read).await {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(e)) => Err(ConnectionError::Payload(e.to_string())),
        Err(()) => Err(ConnectionError::Payload("the rest of the payload did not come in time".into())),
    }
}

/// A requested QoS as the session keeps it: QoS 2 subscriptions are granted QoS 1.
/// (ntex-mqtt's `QoS` is one type for v3 and v5.)
fn qos_in(qos: ntex_mqtt::QoS) -> registry::Qos {
    match qos {
        ntex_mqtt::QoS::AtMostOnce => registry::Qos::AtMostOnce,
        ntex_mqtt::QoS::AtLeastOnce | ntex_mqtt::QoS::ExactlyOnce => registry::Qos::AtLeastOnce,
    }
}

/// The session's QoS on the wire.
fn qos_out(qos: registry::Qos) -> ntex_mqtt::QoS {
    match qos {
        registry::Qos::AtMostOnce => ntex_mqtt::QoS::AtMostOnce,
        registry::Qos::AtLeastOnce => ntex_mqtt::QoS::AtLeastOnce,
    }
}

/// Relays `configure` events from the bus to the devices' config topics, and ends the
/// sessions of devices that were deleted or whose credentials changed.
async fn relay_events(shared: Arc<Shared>, mut events: Subscription<DeviceEvent>) {
    let mut purge = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            delivery = events.recv() => {
                let Some(delivery) = delivery else { break };
                match delivery.msg.kind {
                    EventKind::Configure => relay_one(&shared, &delivery.msg),
                    EventKind::Remove | EventKind::Credentials | EventKind::TenantSecured => revoke(&shared, &delivery.msg),
                    EventKind::MqttSession => hand_over(&shared, &delivery.msg).await,
                    EventKind::MqttSessionState => adopt(&shared, &delivery.msg),
                    EventKind::Create
                    | EventKind::Update
                    | EventKind::TemplateUpdate
                    | EventKind::TemplateCreate
                    | EventKind::TemplateRemove
                    | EventKind::TokenRevoked
                    | EventKind::UserChanged
                    | EventKind::SeatAccount
                    | EventKind::TrustedCas
                    | EventKind::FlowsChanged
                    | EventKind::Market => {}
                }
                delivery.ack();
            }
            _ = purge.tick() => shared.registry.purge_expired(),
        }
    }
}

/// Ends the connections an event makes unauthorised: a deleted device's (and its stored
/// sessions), a re-keyed device's, those of a withdrawn certificate, or a tenant's
/// unsecured ones.
fn revoke(shared: &Shared, event: &DeviceEvent) {
    let closed = if event.kind == EventKind::TenantSecured {
        shared.registry.revoke_unsecured(&event.tenant)
    } else {
        let Some(device) = event.device_id().and_then(|id| DeviceRef::new(&event.tenant, id).ok()) else { return };
        if event.kind == EventKind::Remove {
            shared.ingest.forget_device(&device);
            shared.registry.revoke_device(&device)
        } else {
            shared.registry.revoke_credential(&device, event.certificate())
        }
    };
    if closed > 0 {
        metrics::counter!("ingot_mqtt_connections_revoked_total").increment(closed as u64);
        tracing::info!(tenant = %event.tenant, event = event.kind.as_str(), closed, "mqtt connections revoked");
    }
}

/// Announces (cluster only) that this node bound a connection to session
/// `(device, client_id)`: see [`hand_over`].
pub(crate) fn announce_session(shared: &Arc<Shared>, device: &DeviceRef, client_id: &str, clean_start: bool) {
    if !shared.config.cluster {
        return;
    }
    let data = serde_json::json!({
        "device": device.device_id, "client": client_id, "node": shared.instance, "clean": clean_start,
    });
    let event =
        DeviceEvent { kind: EventKind::MqttSession, tenant: device.tenant.clone(), data, ts: chrono::Utc::now() };
    let bus = shared.ingest.bus().clone();
    shared.runtime.spawn(async move {
        if let Err(e) = bus.publish_event(event).await {
            tracing::warn!(error = %e, "could not tell the other nodes of an MQTT session; an older connection of it may stay open");
        }
    });
}

/// The device and client id a session event names.
fn session_of(event: &DeviceEvent) -> Option<(DeviceRef, &str, &str)> {
    let device = DeviceRef::new(&event.tenant, event.data.get("device")?.as_str()?).ok()?;
    let client = event.data.get("client")?.as_str()?;
    let node = event.data.get("node")?.as_str()?;
    Some((device, client, node))
}

/// Another node bound a connection to a session this node may hold: MQTT allows one
/// connection per session, so this node's closes (v5 DISCONNECT 0x8E), and a persistent
/// session's subscriptions and queued actuation go to that node.
async fn hand_over(shared: &Shared, event: &DeviceEvent) {
    let Some((device, client, node)) = session_of(event) else { return };
    if node == shared.instance {
        return;
    }
    let clean = event.data.get("clean").and_then(serde_json::Value::as_bool).unwrap_or(true);
    let Some(state) = shared.registry.hand_over(&device, client, clean) else { return };
    tracing::info!(device = %device, client_id = client, queued = state.queue.len(), "mqtt session handed over to another node");
    let mut data = serde_json::json!({"device": device.device_id, "client": client, "node": node});
    data["state"] = serde_json::to_value(&state).unwrap_or_default();
    let event =
        DeviceEvent { kind: EventKind::MqttSessionState, tenant: device.tenant.clone(), data, ts: chrono::Utc::now() };
    if let Err(e) = shared.ingest.bus().publish_event(event).await {
        tracing::warn!(device = %device, error = %e, "a session's queued actuation could not be handed over");
    }
}

/// A session's state handed over by the node that held it ([`hand_over`]), for this node.
fn adopt(shared: &Shared, event: &DeviceEvent) {
    let Some((device, client, node)) = session_of(event) else { return };
    if node != shared.instance {
        return;
    }
    let Some(state) = event.data.get("state").and_then(|s| serde_json::from_value(s.clone()).ok()) else { return };
    if !shared.registry.adopt(&device, client, state) {
        tracing::debug!(device = %device, client_id = client, "a handed-over session ended before it arrived");
    }
}

fn relay_one(shared: &Shared, event: &DeviceEvent) {
    let (Some(attrs), Some(device_id)) = (event.configure_attrs(), event.device_id()) else { return };
    let Ok(device) = DeviceRef::new(&event.tenant, device_id) else { return };
    let payload = match serde_json::to_vec(attrs) {
        Ok(json) => Bytes::from(json),
        Err(e) => {
            tracing::warn!(device = %device, error = %e, "actuation payload could not be encoded");
            return;
        }
    };
    let outcome = shared.registry.deliver(&device, &payload);
    if outcome.dropped > 0 {
        metrics::counter!("ingot_mqtt_actuations_total", "outcome" => "dropped").increment(outcome.dropped as u64);
    }
    tracing::debug!(device = %device, live = outcome.live, offline = outcome.offline, dropped = outcome.dropped, "actuation relayed");
}
