//! `ingot serve`: builds every service and listener of the platform and runs them until
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bus::{Bus, MemoryBus, NatsBus, NatsOptions};
use clap::Args;
use ingest::mqtt::{MqttConfig, MqttServer};
use model::data::PayloadLimits;

/// Settings of `ingot serve`. Every flag can also be set with the `INGOT_*` variable shown.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the database (unless --store says otherwise), keys and certificates live.
    #[arg(long, env = "INGOT_DATA_DIR", default_value = "ingot-data")]
    pub data_dir: PathBuf,
    /// Where everything is stored: sqlite://PATH (default: <data-dir>/ingot.db, embedded)
    /// or postgres://USER[:PASSWORD]@HOST:PORT/DB (a PostgreSQL server).
    #[arg(long, env = "INGOT_STORE")]
    pub store: Option<store::StoreUrl>,
    /// Most connections to PostgreSQL at once (with a postgres:// store).
    #[arg(long, env = "INGOT_STORE_POOL_SIZE", default_value_t = 16)]
    pub store_pool_size: usize,
    /// HTTP API address (dojot's gateway port).
    #[arg(long, env = "INGOT_HTTP", default_value = "0.0.0.0:8000")]
    pub http: SocketAddr,
    /// MQTT device agent address.
    #[arg(long, env = "INGOT_MQTT", default_value = "0.0.0.0:1883")]
    pub mqtt: SocketAddr,
    /// MQTT over mutual TLS: devices present a certificate from Ingot's CA
    /// (`POST /x509/v1/certificates`) or from their tenant's own CA
    /// (`/x509/v1/trusted-cas`), which identifies them.
    #[arg(long, env = "INGOT_MQTTS", default_value = "0.0.0.0:8883")]
    pub mqtts: SocketAddr,
    /// Validity of the device certificates the CA issues, in days.
    #[arg(long, env = "INGOT_CERT_VALIDITY_DAYS", default_value_t = 90)]
    pub cert_validity_days: u32,
    /// Most flows a tenant may have (`/flows/v1/flow`).
    #[arg(long, env = "INGOT_MAX_FLOWS", default_value_t = 100)]
    pub max_flows: u64,
    /// Readings waiting for flows at most, in the flow backlog of the store (in-process
    /// bus; on NATS the stream holds them); past it a reading runs no flow (counted in
    /// `ingot_flow_readings_dropped_total`): the bound on the disk a stalled flow fills.
    #[arg(long, env = "INGOT_FLOW_BACKLOG", default_value_t = 1_000_000)]
    pub flow_backlog: usize,
    /// A reading made by this many flow outputs in a row runs no flow (a loop guard).
    #[arg(long, env = "INGOT_FLOW_MAX_HOPS", default_value_t = 8)]
    pub flow_max_hops: u8,
    /// Addresses that flows' http nodes may reach although they are not public
    /// (comma-separated addresses or networks: `127.0.0.1,10.0.0.0/8`). Loopback,
    /// private and link-local addresses are refused otherwise.
    #[arg(long, env = "INGOT_FLOW_HTTP_ALLOW", value_delimiter = ',')]
    pub flow_http_allow: Vec<String>,
    /// How long a flow's http request may take, in seconds.
    #[arg(long, env = "INGOT_FLOW_HTTP_TIMEOUT_SECS", default_value_t = 10)]
    pub flow_http_timeout_secs: u64,
    /// Largest answer a flow's http request reads, in bytes.
    #[arg(long, env = "INGOT_FLOW_HTTP_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub flow_http_max_bytes: usize,
    /// How long an auction token (`POST /v1/login`) is good for, in seconds.
    #[arg(long, env = "INGOT_MARKET_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub market_token_ttl_secs: u64,
    /// Auction bid writers (the bids of one offer always go to the same one).
    #[arg(long, env = "INGOT_MARKET_BID_SHARDS", default_value_t = 4)]
    pub market_bid_shards: usize,
    /// Auction bids waiting to be stored at most; beyond, a bid is answered 503.
    #[arg(long, env = "INGOT_MARKET_BID_QUEUE", default_value_t = 10_000)]
    pub market_bid_queue: usize,
    /// Signed-in auction WebSockets at most, per node.
    #[arg(long, env = "INGOT_MARKET_MAX_SOCKETS", default_value_t = 10_000)]
    pub market_max_sockets: usize,
    /// Messages waiting for one auction WebSocket at most; one further behind is closed.
    #[arg(long, env = "INGOT_MARKET_SOCKET_QUEUE", default_value_t = 64)]
    pub market_socket_queue: usize,
    /// An auction WebSocket must authenticate this many seconds after it opens.
    #[arg(long, env = "INGOT_MARKET_AUTH_DEADLINE_SECS", default_value_t = 10)]
    pub market_auth_deadline_secs: u64,
    /// Most CAs of its own a tenant may register (`/x509/v1/trusted-cas`).
    #[arg(long, env = "INGOT_MAX_TRUSTED_CAS", default_value_t = 10)]
    pub max_trusted_cas: u64,
    /// HTTPS address: the whole API over TLS, with a certificate from Ingot's CA
    /// (`<data-dir>/tls/ca.pem`) unless --tls-cert/--tls-key are given.
    #[arg(long, env = "INGOT_HTTPS", default_value = "0.0.0.0:8443")]
    pub https: SocketAddr,
    /// A PEM certificate chain to serve instead of the generated one (with --tls-key).
    #[arg(long, env = "INGOT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "INGOT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest HTTP request body in bytes (413 beyond).
    #[arg(long, env = "INGOT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest device payload (MQTT or HTTP) in bytes.
    #[arg(long, env = "INGOT_MAX_PAYLOAD_BYTES", default_value_t = 64 * 1024)]
    pub max_payload_bytes: usize,
    /// Most attributes in one device message.
    #[arg(long, env = "INGOT_MAX_ATTRS", default_value_t = 256)]
    pub max_attrs: usize,
    /// Most distinct attribute labels one device may have in history (readings that would
    /// add more are refused: MQTT v5 PUBACK 0x97, HTTP 400).
    #[arg(long, env = "INGOT_MAX_ATTRS_PER_DEVICE", default_value_t = ingest::DEFAULT_MAX_ATTRS_PER_DEVICE)]
    pub max_attrs_per_device: usize,
    /// Most MQTT connections at once.
    #[arg(long, env = "INGOT_MAX_MQTT_CONNECTIONS", default_value_t = 100_000)]
    pub max_mqtt_connections: usize,
    /// Longest MQTT keep-alive the server accepts, in seconds.
    #[arg(long, env = "INGOT_MQTT_MAX_KEEP_ALIVE_SECS", default_value_t = 300)]
    pub mqtt_max_keep_alive_secs: u16,
    /// Publishes of one MQTT connection in flight at once, received and not yet answered
    /// (v5 CONNACK's receive maximum); they share commits. The connection reads no further
    /// until one is answered.
    #[arg(long, env = "INGOT_MQTT_MAX_INFLIGHT", default_value_t = 32)]
    pub mqtt_max_inflight: u16,
    /// How long a persistent MQTT session outlives its connection, in seconds.
    #[arg(long, env = "INGOT_MQTT_SESSION_EXPIRY_SECS", default_value_t = 86_400)]
    pub mqtt_session_expiry_secs: u32,
    /// Actuation messages kept per offline persistent session (oldest dropped beyond).
    #[arg(long, env = "INGOT_MQTT_MAX_QUEUED", default_value_t = 100)]
    pub mqtt_max_queued: usize,
    /// MQTT sessions (live or persistent) per device; a new client id beyond evicts the
    /// one offline longest, or is refused when all are connected.
    #[arg(long, env = "INGOT_MQTT_MAX_SESSIONS_PER_DEVICE", default_value_t = 16)]
    pub mqtt_max_sessions_per_device: usize,
    /// Most seat-metering accounts one tenant may have (new accounts beyond get 429).
    #[arg(long, env = "INGOT_MAX_SEAT_ACCOUNTS", default_value_t = 1000)]
    pub max_seat_accounts: i64,
    /// `POST /metrics` requests per second per API token, bursts of as many (0: unlimited).
    #[arg(long, env = "INGOT_METRICS_RATE_PER_TOKEN", default_value_t = 1000.0)]
    pub metrics_rate_per_token: f64,
    /// Messages queued per real-time stream (WebSocket, socket.io, SSE); a client that
    /// falls this far behind is disconnected.
    #[arg(long, env = "INGOT_STREAM_QUEUE", default_value_t = 256)]
    pub stream_queue: usize,
    /// Real-time streams open at once on this node.
    #[arg(long, env = "INGOT_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Real-time streams one user may have open at once on this node.
    #[arg(long, env = "INGOT_MAX_STREAMS_PER_USER", default_value_t = 32)]
    pub max_streams_per_user: usize,
    /// Messages kept per tenant for resuming an SSE stream (Last-Event-ID).
    #[arg(long, env = "INGOT_STREAM_REPLAY", default_value_t = 1000)]
    pub stream_replay: usize,
    /// How long, in seconds, a kept message can be replayed.
    #[arg(long, env = "INGOT_STREAM_REPLAY_SECS", default_value_t = 300)]
    pub stream_replay_secs: u64,
    /// Longest life of a WebSocket or SSE stream, in seconds (kafka-ws closes with 4408).
    #[arg(long, env = "INGOT_STREAM_MAX_LIFE_SECS", default_value_t = 7200)]
    pub stream_max_life_secs: u64,
    /// How long a stream ticket stays valid, in seconds (kafka-ws: 60).
    #[arg(long, env = "INGOT_TICKET_TTL_SECS", default_value_t = 60)]
    pub ticket_ttl_secs: u64,
    /// Console sessions end after this many seconds without a request.
    #[arg(long, env = "INGOT_CONSOLE_IDLE_TIMEOUT_SECS", default_value_t = 1800)]
    pub console_idle_timeout_secs: u64,
    /// Console sessions end this many seconds after sign-in, however busy.
    #[arg(long, env = "INGOT_CONSOLE_SESSION_MAX_SECS", default_value_t = 12 * 3600)]
    pub console_session_max_secs: u64,
    /// JWT lifetime in seconds (dojot: 420).
    #[arg(long, env = "INGOT_TOKEN_TTL_SECS", default_value_t = 420)]
    pub token_ttl_secs: u64,
    /// Failed logins per user name or client address before a lock-out.
    #[arg(long, env = "INGOT_MAX_FAILED_LOGINS", default_value_t = 10)]
    pub max_failed_logins: u32,
    /// Length of the failed-login window, in seconds.
    #[arg(long, env = "INGOT_FAILED_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub failed_login_window_secs: u64,
    /// Most user names and client addresses the failed-login limiter tracks at once.
    #[arg(long, env = "INGOT_LOGIN_LIMITER_MAX_ENTRIES", default_value_t = 50_000)]
    pub login_limiter_max_entries: usize,
    /// Days of history kept for new tenants (per tenant: PUT /tenant/settings).
    #[arg(long, env = "INGOT_HISTORY_RETENTION_DAYS", default_value_t = 7)]
    pub history_retention_days: u32,
    /// How often expired history is removed, in seconds.
    #[arg(long, env = "INGOT_RETENTION_INTERVAL_SECS", default_value_t = 600)]
    pub retention_interval_secs: u64,
    /// Most readings written in one history transaction.
    #[arg(long, env = "INGOT_HISTORY_BATCH", default_value_t = 4096)]
    pub history_batch: usize,
    /// Most readings one history answer returns, over all its attributes.
    #[arg(long, env = "INGOT_MAX_HISTORY_POINTS", default_value_t = 10_000)]
    pub max_history_points: u32,
    /// History series (device, attribute) whose ids the writer keeps in memory.
    #[arg(long, env = "INGOT_HISTORY_SERIES_CACHE", default_value_t = 100_000)]
    pub history_series_cache: usize,
    /// Messages queued per bus consumer before publishers wait.
    #[arg(long, env = "INGOT_BUS_CAPACITY", default_value_t = 65_536)]
    pub bus_capacity: usize,
    /// The bus: `memory` (in-process, one node) or nats://HOST:PORT (NATS with JetStream:
    /// a device's reading is acknowledged once JetStream stored it; history follows).
    #[arg(long, env = "INGOT_BUS", default_value = "memory")]
    pub bus: String,
    /// Copies of each JetStream stream (with a nats:// bus on a NATS cluster).
    #[arg(long, env = "INGOT_BUS_REPLICAS", default_value_t = 1)]
    pub bus_replicas: usize,
    /// Prefix of Ingot's subjects, streams and consumers on NATS: installations sharing
    /// a NATS server need different ones; the nodes of one installation the same.
    #[arg(long, env = "INGOT_BUS_PREFIX", default_value = "ingot")]
    pub bus_prefix: String,
    /// This node's name in a cluster (names its own NATS consumers): unique per node,
    /// the same across its restarts. By default made once and kept in <data-dir>/node.id.
    #[arg(long, env = "INGOT_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds a node may hold a JetStream message unacknowledged before it goes to
    /// another (a node killed mid-batch: its readings are written after this).
    /// Redeliveries are stored once, so a short wait costs only duplicate work.
    #[arg(long, env = "INGOT_BUS_ACK_WAIT_SECS", default_value_t = 10)]
    pub bus_ack_wait_secs: u64,
    /// Most bytes each JetStream stream holds (readings not yet consumed); publishes
    /// beyond are refused, never dropped.
    #[arg(long, env = "INGOT_BUS_MAX_BYTES", default_value_t = 4 << 30)]
    pub bus_max_bytes: i64,
    /// With a nats:// bus: seconds a node answers a valid API token from memory. Other
    /// nodes' revocations reach it as events at once; this bounds a missed one (bus down).
    #[arg(long, env = "INGOT_CLUSTER_TOKEN_RECHECK_SECS", default_value_t = 30)]
    pub cluster_token_recheck_secs: u64,
    /// fsync every commit (survives power loss); "false" survives process crashes only
    /// (on PostgreSQL: synchronous_commit off for Ingot's sessions).
    #[arg(long, env = "INGOT_SYNC_FULL", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync_full: bool,
    /// SQLite: attribute values held in memory (and in history's append-only log) before
    /// they move into the history table; up to twice as many in memory, ~90 bytes each.
    #[arg(long, env = "INGOT_SQLITE_STAGE_VALUES", default_value_t = store::history::DEFAULT_STAGE_VALUES)]
    pub sqlite_stage_values: usize,
    /// SQLite: seconds after which those values move into the history table however few
    /// they are.
    #[arg(long, env = "INGOT_SQLITE_STAGE_SECS", default_value_t = store::history::DEFAULT_STAGE_SECS)]
    pub sqlite_stage_secs: u64,
    /// Threads for blocking work (SQLite reads and writes, password hashing) at most;
    /// more waits its turn.
    #[arg(long, env = "INGOT_BLOCKING_THREADS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub blocking_threads: u16,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;

    let location = args.store.clone().unwrap_or_else(|| store::StoreUrl::Sqlite(args.data_dir.join("ingot.db")));
    let sqlite_options = store::StoreOptions {
        readers: 4,
        sync_full: args.sync_full,
        stage_values: args.sqlite_stage_values,
        stage_secs: args.sqlite_stage_secs,
    };
    let pg_options =
        store::postgres::PgOptions { pool_size: args.store_pool_size, sync_full: args.sync_full, ..Default::default() };
    let store =
        location.open(sqlite_options, pg_options).await.with_context(|| format!("cannot open the store {location}"))?;
    store.set_series_cache_limit(args.history_series_cache);
    println!("ingot: store {location}");

    let auth_config = auth::AuthConfig {
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        max_failed_logins: args.max_failed_logins,
        failed_login_window: Duration::from_secs(args.failed_login_window_secs),
        max_tracked_logins: args.login_limiter_max_entries,
        default_retention_days: args.history_retention_days,
        token_recheck_ttl: (args.bus != "memory").then(|| Duration::from_secs(args.cluster_token_recheck_secs)),
        ..auth::AuthConfig::default()
    };
    let legacy_key = args.data_dir.join("jwt.secret");
    let auth = Arc::new(auth::AuthService::open(store.clone(), Some(&legacy_key), auth_config).await?);
    // The CA is in the store too (a file of an older installation is imported).
    let tls_dir = args.data_dir.join("tls");
    let ca = Arc::new(pki::CertificateAuthority::load_or_create(&store, &tls_dir).await?);
    let admin_password = std::env::var("INGOT_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    if let Some(generated) = auth.bootstrap(admin_password).await? {
        // Printed, not logged: the one time this password is shown.
        println!("ingot: created tenant 'admin' and user 'admin' with password: {generated}");
        println!("ingot: it is shown only this once; change it with POST /auth/password/update");
    }

    let bus: Arc<dyn Bus> = match args.bus.as_str() {
        "memory" => Arc::new(MemoryBus::new(args.bus_capacity)),
        url if url.starts_with("nats://") => {
            let node = match &args.node_id {
                Some(id) => id.clone(),
                None => node_id(&args.data_dir)?,
            };
            println!("ingot: node {node}");
            let options = NatsOptions {
                node,
                url: url.to_string(),
                replicas: args.bus_replicas,
                capacity: args.bus_capacity,
                prefix: args.bus_prefix.clone(),
                max_bytes: args.bus_max_bytes,
                ack_wait: Duration::from_secs(args.bus_ack_wait_secs.max(1)),
                ..NatsOptions::default()
            };
            let shown = bus::nats::redacted(url);
            let nats = NatsBus::connect(options).await.with_context(|| {
                format!("cannot use the bus {shown} (is nats-server running there, with JetStream: -js?)")
            })?;
            println!("ingot: bus {shown} (JetStream)");
            Arc::new(nats)
        }
        other => anyhow::bail!("--bus {}: use memory or nats://HOST:PORT", bus::nats::redacted(other)),
    };
    // The history writer subscribes before any device can connect, so no reading is
    // acknowledged without it; it is supervised (restarted if it dies).
    history::writer::spawn(bus.clone(), store.clone(), args.history_batch)
        .context("could not start the history writer thread")?;
    // Actuation is history too (as in dojot); a durable subscription never drops one.
    history::writer::spawn_configure(bus.clone(), store.clone(), args.history_batch);
    tokio::spawn(history::retention::run(store.clone(), Duration::from_secs(args.retention_interval_secs)));

    // On a NATS bus, other nodes may revoke tokens, change users and change the catalog:
    // follow their changes.
    if args.bus != "memory" {
        auth.follow(bus.clone()).await.context("cannot follow the other nodes' revocations")?;
    }
    let devices = if args.bus == "memory" {
        Arc::new(devices::DeviceService::load(store.clone(), bus.clone(), devices::DevicesConfig::default()).await?)
    } else {
        devices::DeviceService::load_following(store.clone(), bus.clone(), devices::DevicesConfig::default()).await?
    };
    // Flows run on the bus as a durable consumer; their definitions are in the store,
    // loaded before any device can connect (so flows run after a restart).
    let flow_engine = flows::FlowEngine::new(
        devices.clone(),
        bus.clone(),
        store.clone(),
        flows::EngineConfig {
            max_hops: args.flow_max_hops,
            backlog: args.flow_backlog,
            http: flows::nodes::http::HttpPolicy {
                allow: flows::nodes::http::HttpPolicy::parse_allow(&args.flow_http_allow)
                    .map_err(|e| anyhow::anyhow!("--flow-http-allow: {e}"))?,
                timeout: Duration::from_secs(args.flow_http_timeout_secs.max(1)),
                max_response_bytes: args.flow_http_max_bytes,
            },
        },
    );
    let flows = Arc::new(flows::FlowService::new(store.clone(), flow_engine.clone(), args.max_flows));
    if args.bus != "memory" {
        flows.follow(bus.clone()).await.context("cannot follow the other nodes' flow changes")?;
    }
    let loaded = flows.load().await.context("cannot load the flows")?;
    flow_engine.start(args.bus == "memory");
    tracing::info!(flows = loaded, "flows loaded");
    // Device certificates: the MQTTS listener trusts Ingot's CA and the tenants' own,
    // and asks the registry at every CONNECT.
    let cert_config = pki::certificates::CertificateConfig {
        validity_days: args.cert_validity_days,
        max_trusted_cas: args.max_trusted_cas,
    };
    let certificates = Arc::new(pki::certificates::CertificateService::new(store.clone(), ca.clone(), cert_config)?);
    certificates.reload_roots().await.context("cannot read the tenants' trusted CAs")?;
    if args.bus != "memory" {
        certificates.follow(bus.clone()).await.context("cannot follow the other nodes' trusted CAs")?;
    }
    let limits = PayloadLimits { max_attrs: args.max_attrs, ..PayloadLimits::default() };
    let ingest = Arc::new(
        ingest::IngestService::new(bus.clone(), devices.clone(), limits, args.max_payload_bytes)
            .with_max_attrs_per_device(args.max_attrs_per_device)
            .with_certificates(certificates.clone()),
    );

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => pki::TlsMaterial::from_files(cert, key)?,
        _ => pki::TlsMaterial::load_or_create(&tls_dir, &ca, &pki::default_server_names())?,
    };
    let mqtts =
        ingest::mqtt::MqttTls { listen: args.mqtts, config: tls.mutual_tls_config(certificates.client_roots())? };
    let mqtt_config = MqttConfig {
        listen: args.mqtt,
        tls: Some(mqtts),
        max_connections: args.max_mqtt_connections,
        max_keep_alive_secs: args.mqtt_max_keep_alive_secs,
        max_inflight: args.mqtt_max_inflight,
        session_expiry_secs: args.mqtt_session_expiry_secs,
        max_queued_per_session: args.mqtt_max_queued,
        max_sessions_per_device: args.mqtt_max_sessions_per_device,
        cluster: args.bus != "memory",
        ..MqttConfig::default()
    };
    let mqtt = MqttServer::start(mqtt_config, ingest.clone()).await.with_context(|| {
        format!(
            "cannot start the MQTT agent on {} and {} (is another broker using them? use --mqtt and --mqtts)",
            args.mqtt, args.mqtts
        )
    })?;
    println!("ingot: MQTT listening on {}", mqtt.local_addr());
    if let Some(addr) = mqtt.tls_local_addr() {
        println!("ingot: MQTTS (mutual TLS) listening on {addr}");
    }

    let seats = Arc::new(seats::SeatService::new(store.clone(), bus.clone(), args.max_seat_accounts));
    if args.bus != "memory" {
        seats.follow(bus.clone()).await.context("cannot follow the other nodes' seat accounts")?;
    }
    // Real-time streams read the bus as a lossy subscriber: subscribed before devices
    // connect, never slowing them down.
    let hub = realtime::Hub::new(realtime::HubConfig {
        queue: args.stream_queue,
        max_streams: args.max_streams,
        max_streams_per_user: args.max_streams_per_user,
        replay: args.stream_replay,
        replay_age: Duration::from_secs(args.stream_replay_secs),
    });
    hub.start(bus.as_ref());
    // The auction API (seed 003): its own users, offers and bids, and its socket hub.
    let market = market::MarketService::start(
        store.clone(),
        bus.clone(),
        market::MarketConfig {
            token_ttl: Duration::from_secs(args.market_token_ttl_secs.max(1)),
            bid_shards: args.market_bid_shards,
            bid_queue: args.market_bid_queue,
            max_sockets: args.market_max_sockets,
            socket_queue: args.market_socket_queue,
            auth_deadline: Duration::from_secs(args.market_auth_deadline_secs.max(1)),
            ..market::MarketConfig::default()
        },
    )
    .await
    .context("cannot start the auction market")?;
    let state = api::AppState {
        auth,
        market,
        collector: Arc::new(load::collector::Collector::new(store.clone())),
        devices,
        seats,
        ingest,
        history: Arc::new(history::HistoryService::new(store.clone(), args.max_history_points)),
        metrics: Some(prometheus),
        realtime: hub.clone(),
        certificates,
        flows,
        config: Arc::new(api::ApiConfig {
            max_body_bytes: args.max_body_bytes,
            ticket_ttl: Duration::from_secs(args.ticket_ttl_secs),
            stream_max_life: Duration::from_secs(args.stream_max_life_secs),
        }),
        token_limiter: Arc::new(api::ratelimit::RateLimiter::new(
            args.metrics_rate_per_token,
            args.metrics_rate_per_token,
        )),
    };
    let tls_config = tls.server_config(api::https::ALPN)?;

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (is another server using it? use --http)", args.http))?;
    let tls_listener = tokio::net::TcpListener::bind(args.https).await.with_context(|| {
        format!("cannot listen for HTTPS on {} (is another server using it? use --https)", args.https)
    })?;
    println!("ingot: HTTP API listening on http://{}", listener.local_addr()?);
    match &tls.ca_path {
        Some(ca) => println!(
            "ingot: HTTPS listening on https://{} (CA certificate: {})",
            tls_listener.local_addr()?,
            ca.display()
        ),
        None => println!("ingot: HTTPS listening on https://{}", tls_listener.local_addr()?),
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let console_config = console::ConsoleConfig {
        idle_timeout: Duration::from_secs(args.console_idle_timeout_secs),
        max_lifetime: Duration::from_secs(args.console_session_max_secs),
        ..console::ConsoleConfig::default()
    };
    let router = api::router(state.clone()).merge(console::router(state, console_config, store.clone()));
    let router = api::drain::drain_unread_bodies(router, api::drain::DrainLimits::new(args.max_body_bytes));
    let https = tokio::spawn(api::https::serve(tls_listener, router.clone(), tls_config, stopped(stop_rx.clone())));
    let http = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stopped(stop_rx));
    let http = tokio::spawn(async move { http.await });
    shutdown_signal().await;
    // Streams end first (WebSockets with 1001, SSE with a `close` event): an open SSE
    // response would hold the HTTP server's graceful shutdown forever.
    hub.shutdown();
    let _ = stop_tx.send(true);
    http.await??;
    https.await?;
    tracing::info!("HTTP and HTTPS stopped; closing MQTT connections");
    mqtt.shutdown().await;
    // Devices are disconnected: whatever is still queued was never acknowledged to them,
    // and the history writer thread ends with the process.
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

/// This node's id, made once (`node-` and 8 random hex digits) and kept in `dir/node.id`.
fn node_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("node-{}", model::secret::random_hex(4));
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}
