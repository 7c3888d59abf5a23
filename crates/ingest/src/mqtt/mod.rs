//! The MQTT device agent: an MQTT 3.1.1 and 5 server for devices.
//!
//! Each connection is a task running [`connection`]'s loop on the MQTT server's own tokio
//! runtime (`workers` threads, "ingot-mqtt"): a bulkhead, so that device traffic and the
//! HTTP API each get the CPU by the kernel's fair share rather than by waiting behind the
//! other's tasks (sharing the API's runtime, `lastN=1` p99 went from 8.2 to 12.1 ms and
//! PUBACK p99 from 17 to 47 ms under a mixed load; BENCHMARKS.md, lever 11). rumqttc's
//! codecs read and write the packets (`v3`, `v5`). [`MqttServer::start`] binds the
//! listeners and accepts; [`MqttHandle::shutdown`] ends every connection.
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
//! the connection (v5 DISCONNECT 0x9B QoS not supported, v3 plain close). Downgrading
//! silently would acknowledge with weaker guarantees than the device asked for.
//!
//! Modules: [`connection`] the per-connection loop, [`session`] what a connection does,
//! [`registry`] live and persistent sessions, `wire` packets whatever the version, and
//! `v3`/`v5` the versions' encodings.
//!
//! In a cluster ([`MqttConfig::cluster`]) a node announces each session it binds; the
//! node that held it closes its connection and hands a persistent session over (see
//! `hand_over`), so one session has one connection across nodes.
//!
//! Limits worth knowing: persistent sessions are kept in memory only; v5 will delay,
//! message expiry and enhanced authentication (AUTH) are not implemented (a will is
//! published at once); passwords must be UTF-8 (rumqttc's codec reads them as text).

mod connection;
mod registry;
mod session;
mod tls;
mod v3;
mod v5;
mod wire;

pub use tls::MqttTls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use bus::{Mode, Subscription};
use bytes::Bytes;
use model::{DeviceEvent, DeviceRef, EventKind};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::IngestService;
use connection::Transport;
use registry::Registry;

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
    /// Publishes of one connection in flight at once, not yet answered (v5 "receive
    /// maximum"): they share commits, and the connection reads no further until one is
    /// answered. Default 32.
    pub max_inflight: u16,
    /// Threads of the MQTT server's runtime. Default: the number of CPUs.
    pub workers: usize,
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

impl MqttConfig {
    /// The largest packet accepted: `max_payload` plus [`PACKET_HEADROOM`].
    pub(crate) fn max_packet(&self) -> usize {
        self.max_payload.saturating_add(PACKET_HEADROOM)
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

/// Sockets open at once beyond `max_connections`: connections still to authenticate.
/// Beyond them, new sockets are closed at once (counted as refused, reason "sockets").
const UNAUTHENTICATED_SOCKETS: usize = 1024;

impl MqttServer {
    /// Binds `config.listen`, starts the server and the actuation relay, and returns once
    /// it accepts connections. Must be called from a tokio runtime, which runs the relay
    /// and stores wills; the connections run on the server's own runtime.
    pub async fn start(mut config: MqttConfig, ingest: Arc<IngestService>) -> Result<MqttHandle, MqttError> {
        if config.max_payload == 0 {
            config.max_payload = ingest.max_payload();
        }
        validate(&config)?;
        let runtime = Handle::try_current().map_err(|_| MqttError::NoRuntime)?;
        let own = OwnRuntime::new(config.workers)?;
        // Listeners belong to the runtime that polls them.
        let bind = |addr: SocketAddr| {
            let std = std::net::TcpListener::bind(addr).map_err(|source| MqttError::Bind { addr, source })?;
            std.set_nonblocking(true).map_err(|source| MqttError::Bind { addr, source })?;
            let local = std.local_addr().map_err(|source| MqttError::Bind { addr, source })?;
            let _in = own.enter();
            Ok::<_, MqttError>((TcpListener::from_std(std).map_err(|source| MqttError::Bind { addr, source })?, local))
        };
        let (listener, local_addr) = bind(config.listen)?;
        let tls_listener = match &config.tls {
            Some(tls) => {
                let (l, addr) = bind(tls.listen)?;
                Some((l, addr, tokio_rustls::TlsAcceptor::from(tls.config.clone())))
            }
            None => None,
        };
        let tls_local_addr = tls_listener.as_ref().map(|(_, a, _)| *a);

        // Subscribed before accepting connections, so no actuation request slips by;
        // durable, so that no revocation (device deleted, secret changed) is ever dropped;
        // every node gets every event (each holds its own sessions).
        let events = ingest.bus().subscribe_events("mqtt", Mode::EachNode);
        // On NATS the relay's consumer is made after subscribing: wait for it, so that no
        // other node's revocation or actuation slips by before the first connection.
        ingest.bus().ready().await?;
        let sockets = Arc::new(Semaphore::new(config.max_connections.saturating_add(UNAUTHENTICATED_SOCKETS)));
        let shared = Arc::new(Shared {
            registry: Registry::new(config.max_queued_per_session, config.max_sessions_per_device),
            ingest,
            config,
            connections: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            runtime: runtime.clone(),
            instance: model::secret::random_hex(8),
        });
        let stop = CancellationToken::new();
        let server = Server {
            shared: shared.clone(),
            sockets,
            tasks: TaskTracker::new(),
            listening: stop.child_token(),
            stop,
            runtime: own.handle().clone(),
        };
        server.tasks.spawn_on(server.clone().accept(listener, None), &server.runtime);
        if let Some((l, _, acceptor)) = tls_listener {
            server.tasks.spawn_on(server.clone().accept(l, Some(acceptor)), &server.runtime);
        }
        let relay = runtime.spawn(relay_events(shared.clone(), events));
        tracing::info!(%local_addr, tls = ?tls_local_addr, "mqtt server listening");
        Ok(MqttHandle { local_addr, tls_local_addr, server, _runtime: own, relay, shared })
    }
}

/// The MQTT server's runtime. Dropped, it stops in the background: a runtime cannot be
/// dropped in async code, and `start` may fail after making it.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn new(workers: usize) -> Result<Self, MqttError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("ingot-mqtt")
            .enable_all()
            .build()
            .map_err(|e| MqttError::Start(e.to_string()))?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }

    fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle().enter()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
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
    if config.max_packet() > u32::MAX as usize {
        return Err(MqttError::Config("max_payload is too large"));
    }
    Ok(())
}

/// The accepting side of a running server: its listeners' tasks and every connection's.
#[derive(Clone)]
struct Server {
    shared: Arc<Shared>,
    /// Open sockets, authenticated or not (see [`UNAUTHENTICATED_SOCKETS`]).
    sockets: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Cancelled to stop accepting.
    listening: CancellationToken,
    /// Cancelled to end every connection at once (the handle was dropped); also stops
    /// accepting.
    stop: CancellationToken,
    /// The MQTT server's runtime, where listeners and connections run.
    runtime: Handle,
}

impl Server {
    /// Accepts connections on `listener` until stopped; `tls` for the mutual-TLS one.
    async fn accept(self, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        loop {
            let (stream, _) = tokio::select! {
                () = self.listening.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait, rather than spin.
                        tracing::warn!(error = %e, "mqtt listener cannot accept; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.sockets.clone().try_acquire_owned() else {
                metrics::counter!("ingot_mqtt_connections_refused_total", "reason" => "sockets").increment(1);
                continue;
            };
            // PUBACKs are small and waited for: send each batch at once.
            let _ = stream.set_nodelay(true);
            let (shared, stop, tls) = (self.shared.clone(), self.stop.clone(), tls.clone());
            self.tasks.spawn_on(
                async move {
                    let _permit = permit;
                    let serve = async {
                        let (transport, certificate) = match tls {
                            None => (Transport::Plain(stream), None),
                            // Boxed: the handshake's state would otherwise take room in
                            // every connection's task, plain ones too.
                            Some(acceptor) => match Box::pin(tls::accept(&acceptor, stream)).await {
                                Some(accepted) => accepted,
                                None => return,
                            },
                        };
                        connection::serve(shared, transport, certificate).await;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = serve => {}
                    }
                },
                &self.runtime,
            );
        }
    }
}

/// A running MQTT server. Dropping it stops the server abruptly; prefer [`MqttHandle::shutdown`].
pub struct MqttHandle {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    server: Server,
    /// Stopped when the handle is dropped.
    _runtime: OwnRuntime,
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
    /// 0x8B), and waits for them (at most a few seconds).
    pub async fn shutdown(self) {
        self.server.listening.cancel();
        self.shared.registry.close_all();
        let tasks = &self.server.tasks;
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, tasks.wait()).await.is_err() {
            tracing::warn!(left = tasks.len(), "mqtt connections still open after the shutdown timeout; ending them");
        }
        tracing::info!(local_addr = %self.local_addr, "mqtt server stopped");
        // Dropping the handle ends whatever is left, and the runtime.
    }
}

impl Drop for MqttHandle {
    fn drop(&mut self) {
        self.server.stop.cancel();
        self.relay.abort();
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
